"""Tests for the `Channel` object and the newer channels: Rician, block
fading, OFDM with LS/LMMSE estimation, their capacities; closed forms,
statistics and a time-domain OFDM reference."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import special

from gjscc_jax import channel as channel_lib
from gjscc_jax.channels import fading
from gjscc_jax.channels import ofdm
from gjscc_jax.channels import tdl
from gjscc_jax.separation import capacity


def _unit_symbols(key, batch, k):
  return channel_lib.power_normalize(
      channel_lib.complex_normal(key, (batch, k)))


# --- the object ---------------------------------------------------------------


def test_old_config_blocks_build_the_same_channel_and_name():
  old = ml_collections.ConfigDict(dict(kind="rayleigh", fading="slow",
                                       equalization="mmse", power=1.0))
  link = channel_lib.from_config(old)
  assert link == channel_lib.Channel("rayleigh", "slow", "mmse", 1.0)
  assert link.name == "rayleigh-slow-mmse"  # as the old TestChannel's
  assert link.label(receiver=False) == "rayleigh-slow"
  assert channel_lib.from_config({"kind": "awgn", "fading": None}).name == "awgn"
  # Hashable, so a static jit argument: equal channels are one cache entry.
  assert hash(link) == hash(channel_lib.from_config(old.to_dict()))
  # The older transmit() keywords give the same realisation as the object.
  latents = jax.random.normal(jax.random.key(0), (2, 2, 2, 4))
  old_form = channel_lib.transmit(jax.random.key(1), latents, 3.0,
                                  channel="rayleigh", fading="fast")
  new_form, csi = channel_lib.Channel("rayleigh", "fast").transmit(
      jax.random.key(1), latents, 3.0)
  np.testing.assert_array_equal(old_form, new_form)
  assert csi["gain"].shape == (2, 8) and csi["noise_var"].shape == (2, 1)


def test_parse_and_errors_name_the_field():
  link = channel_lib.parse("rician:k_factor=10,fading=block,coherence=16")
  assert (link.k_factor, link.coherence) == (10.0, 16)
  assert link.name == "rician-k10-block16-mmse"
  assert channel_lib.parse("ofdm:pdp=tdl-a,csi=ls").name == (
      "ofdm-tdl-a-slow-ls-mmse")
  with pytest.raises(ValueError, match="channel.doppler is not"):
    channel_lib.parse("rayleigh:doppler=3")
  with pytest.raises(ValueError, match="csi='ls'.*kind='ofdm'"):
    channel_lib.Channel("rayleigh", csi="ls").validate()
  with pytest.raises(ValueError, match="cyclic_prefix=2"):
    channel_lib.parse("ofdm:pdp=tdl-c,cyclic_prefix=2")


def test_every_kind_has_a_capacity_entry():
  assert set(capacity.CAPACITIES) == set(channel_lib.KINDS)


# --- Rician and block fading --------------------------------------------------


@pytest.mark.parametrize("k_factor", [0.5, 4.0])
def test_rician_unit_power_and_k_factor_from_moments(k_factor):
  h = np.asarray(fading.block_gains(jax.random.key(1), 4, 2**17, 1,
                                    k_factor)).ravel()
  m2, m4 = np.mean(np.abs(h) ** 2), np.mean(np.abs(h) ** 4)
  assert abs(m2 - 1) < 0.01
  # Moment estimator (phase-blind): K = sqrt(2 m2^2 - m4) / (m2 - sqrt(...)).
  root = np.sqrt(2 * m2**2 - m4)
  assert abs(root / (m2 - root) - k_factor) < 0.05 * k_factor + 0.02
  # Line-of-sight mean: |E h|^2 = K / (K + 1).
  assert abs(abs(np.mean(h)) ** 2 - k_factor / (k_factor + 1)) < 0.01


def _marcum_q1(a, b, terms=200):
  """Q_1(a, b) = exp(-(a^2 + b^2)/2) sum_k (a/b)^k I_k(ab) (series)."""
  k = np.arange(terms)[:, None]
  return np.sum((a / b) ** k * special.ive(k, a * b) * np.exp(
      a * b - (a**2 + b**2) / 2), axis=0).reshape(np.shape(b))


def test_rician_outage_is_the_marcum_q_closed_form():
  k_factor, x = 3.0, np.array([0.05, 0.2, 0.6, 1.0, 2.0])
  expected = 1 - _marcum_q1(np.sqrt(2 * k_factor),
                            np.sqrt(2 * (k_factor + 1) * x))
  np.testing.assert_allclose(capacity.rician_gain_cdf(x, k_factor), expected,
                             rtol=1e-8)
  # And the sampled gains follow it (slow: one gain per image).
  h = np.asarray(fading.block_gains(jax.random.key(2), 100_000, 3, 3,
                                    k_factor))
  gains = np.abs(h[:, 0]) ** 2
  np.testing.assert_allclose([np.mean(gains < t) for t in x], expected,
                             atol=0.005)
  # Outage of a rate: P(k log2(1 + g snr) < b).
  k, snr_db, bits = 100, 5.0, 150
  link = channel_lib.Channel("rician", k_factor=k_factor)
  threshold = (2 ** (bits / k) - 1) / 10 ** (snr_db / 10)
  assert capacity.outage_of(link, bits, k, snr_db) == pytest.approx(
      1 - _marcum_q1(np.sqrt(2 * k_factor),
                     np.sqrt(2 * (k_factor + 1) * threshold)), rel=1e-8)
  rate = capacity.rate_for_outage(k, snr_db, 0.1, link)
  assert capacity.outage_of(link, rate, k, snr_db) <= 0.1 + 1e-9
  assert capacity.outage_of(link, rate + 2, k, snr_db) > 0.1


def test_rician_ergodic_capacity():
  assert capacity.rician_ergodic(3.0, 0.0) == pytest.approx(
      capacity.ergodic_capacity(3.0))
  h = np.asarray(fading.block_gains(jax.random.key(3), 8, 2**15, 1, 4.0))
  monte_carlo = np.mean(np.log2(1 + np.abs(h) ** 2 * 10 ** 0.3))
  assert capacity.rician_ergodic(3.0, 4.0) == pytest.approx(monte_carlo,
                                                            abs=0.005)
  # More line of sight, less fading loss: between Rayleigh and AWGN.
  assert (capacity.ergodic_capacity(3.0) < capacity.rician_ergodic(3.0, 4.0)
          < capacity.awgn_capacity(3.0))


def test_block_fading_constant_within_blocks_independent_across():
  length, k = 16, 100  # 7 blocks, the last one partial (4 symbols).
  h = np.asarray(fading.block_gains(jax.random.key(4), 20_000, k, length))
  blocks = [h[:, i:i + length] for i in range(0, k, length)]
  for block in blocks:
    np.testing.assert_array_equal(block, block[:, :1] * np.ones_like(block))
  firsts = np.stack([b[:, 0] for b in blocks], axis=1)  # (B, 7)
  corr = np.abs(np.mean(firsts[:, 1:] * np.conj(firsts[:, :-1]), axis=0))
  assert np.all(corr < 0.03)  # std of the estimate 0.007
  assert abs(np.mean(np.abs(firsts) ** 2) - 1) < 0.02
  # The extremes are fast and slow fading, draw for draw.
  z = _unit_symbols(jax.random.key(5), 3, 40)
  for coherence, old in ((1, "fast"), (40, "slow")):
    new, _ = channel_lib.Channel("rayleigh", "block", coherence=coherence)(
        jax.random.key(6), z, 4.0)
    np.testing.assert_array_equal(new, channel_lib.rayleigh(
        jax.random.key(6), z, 4.0, fading=old))


# --- OFDM ---------------------------------------------------------------------


def test_tdl_tables_have_unit_normalised_delay_spread():
  for profile in tdl.TABLES:
    delays, powers = tdl.power_delay_profile(profile, delay_spread=1.0)
    assert powers.sum() == pytest.approx(1.0)
    assert tdl.rms_delay_spread(delays, powers) == pytest.approx(1.0,
                                                                 abs=1e-3)


def test_ofdm_one_tap_with_perfect_csi_is_flat_fading_exactly():
  link = channel_lib.Channel("ofdm", pdp="exponential", taps=1)
  z = _unit_symbols(jax.random.key(7), 4, 300)
  grid = link.grid
  noise_var = channel_lib.noise_variance(jnp.full((4, 1), 2.0))
  out, gain = jax.jit(lambda key, z, nv: ofdm.link(
      key, z, nv, grid=grid, delays=np.zeros(1), powers=np.ones(1),
      coherence=99, csi="perfect", equalization="mmse", power=1.0))(
          jax.random.key(8), z, noise_var)
  tap_key, noise_key = jax.random.split(jax.random.key(8))
  h = ofdm.tap_gains(tap_key, 4, 1, 1, np.ones(1), z.dtype)[:, 0]  # (B, 1)
  x = ofdm.to_grid(z, grid, 1.0)
  noise = ofdm.from_grid(
      fading.complex_normal(noise_key, x.shape, z.dtype), grid, 300)
  y = h * z + jnp.sqrt(noise_var) * noise
  np.testing.assert_allclose(out, channel_lib.equalize(y, h, noise_var),
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(gain, jnp.broadcast_to(h, gain.shape),
                             rtol=1e-6)
  # Through the object: one gain per image, and rho pays for the overhead.
  received, csi = link(jax.random.key(9), z, 2.0)
  assert received.shape == z.shape
  np.testing.assert_allclose(csi["gain"], csi["gain"][:, :1] * np.ones(
      (1, 300)), rtol=1e-6)
  assert link.channel_uses(300) == math.ceil(300 / 39) * (64 + 16)


def test_ofdm_equals_the_time_domain_chain_with_cyclic_prefix():
  grid = ofdm.Grid(fft_size=16, subcarriers=12, cyclic_prefix=4,
                   pilot_spacing=3)
  delays, powers = tdl.power_delay_profile("exponential", 4, 1.5)
  rng = np.random.default_rng(0)
  x_used = rng.standard_normal((2, 12)) + 1j * rng.standard_normal((2, 12))
  taps = rng.standard_normal((2, 4)) + 1j * rng.standard_normal((2, 4))
  # Time domain: centred bins -> IFFT (unitary) -> prefix -> convolution.
  bins = np.zeros((2, 16), complex)
  bins[:, grid.used()] = x_used
  samples = np.fft.ifft(np.fft.ifftshift(bins, axes=-1), norm="ortho")
  sent = np.concatenate([samples[:, -4:], samples], axis=-1)
  received = np.stack([np.convolve(sent[b], taps[b])[:20] for b in range(2)])
  y_bins = np.fft.fftshift(np.fft.fft(received[:, 4:], norm="ortho"), axes=-1)
  h = ofdm.frequency_response(jnp.asarray(taps, jnp.complex64), delays,
                              grid.frequencies())
  np.testing.assert_allclose(y_bins[:, grid.used()], h * x_used, atol=1e-5)


def _received_pilots(key, batch, snr_db, link):
  grid = link.grid
  delays, powers = link.profile()
  tap_key, noise_key = jax.random.split(key)
  taps = ofdm.tap_gains(tap_key, batch, 1, 1, powers, jnp.complex64)
  h = ofdm.frequency_response(taps, delays, grid.frequencies())  # (B,1,U)
  noise_var = channel_lib.noise_variance(jnp.full((batch, 1), snr_db))
  noise = fading.complex_normal(noise_key, h.shape)
  y = h + jnp.sqrt(noise_var)[:, :, None] * noise  # unit pilots everywhere
  return h, y[:, :, grid.pilots()], noise_var


def test_ls_and_lmmse_estimation_error_match_their_closed_forms():
  link = channel_lib.Channel("ofdm", pdp="tdl-a", csi="lmmse")
  delays, powers = link.profile()
  grid = link.grid
  snr_db = 5.0

  @jax.jit
  def run(key):
    h, y_p, noise_var = _received_pilots(key, 3000, snr_db, link)
    return (h,) + ofdm.ls_estimate(y_p, 1.0, grid, noise_var[:, :, None]) + (
        ofdm.lmmse_estimate(y_p, 1.0, grid, noise_var, delays, powers))

  h, h_ls, err_ls, h_mmse, err = run(jax.random.key(10))
  pilots = grid.pilots()
  mse_ls = np.mean(np.abs(np.asarray(h_ls - h))[..., pilots] ** 2)
  assert mse_ls == pytest.approx(10 ** (-snr_db / 10), rel=0.02)
  np.testing.assert_allclose(err_ls[0, 0, pilots], 10 ** (-snr_db / 10),
                             rtol=1e-5)
  mse = np.mean(np.abs(np.asarray(h_mmse - h)) ** 2, axis=(0, 1))
  np.testing.assert_allclose(mse, err[0, 0], rtol=0.08)
  # Closed form: the trace of R_uu - R_up (R_pp + sigma^2 I)^-1 R_pu.
  r = ofdm.frequency_correlation(delays, powers, grid.frequencies(),
                                 grid.frequencies())
  r_up, r_pp = r[:, pilots], r[np.ix_(pilots, pilots)]
  sigma2 = 10 ** (-snr_db / 10)
  closed = np.real(np.diag(r - r_up @ np.linalg.solve(
      r_pp + sigma2 * np.eye(len(pilots)), r_up.conj().T)))
  np.testing.assert_allclose(err[0, 0], closed, rtol=1e-4, atol=1e-6)
  assert np.mean(closed) < mse_ls  # LMMSE beats LS


def test_sionna_resource_grid_ls_estimation_and_lmmse_equaliser():
  torch = pytest.importorskip("torch")
  sionna_ofdm = pytest.importorskip("sionna.phy.ofdm")
  from sionna.phy.mimo import StreamManagement  # pylint: disable=import-outside-toplevel
  link = channel_lib.Channel("ofdm", pdp="tdl-b", csi="ls")
  grid, k, batch, snr_db = link.grid, 100, 3, 3.0
  s = grid.num_ofdm_symbols(k)
  guards = (grid.first_used, grid.fft_size - grid.subcarriers -
            grid.first_used)
  mask = np.zeros((1, 1, s, grid.subcarriers), bool)
  mask[..., grid.pilots()] = True
  pilot = 1.0  # Sionna's equalisers assume unit-power symbols: P = 1.
  pattern = sionna_ofdm.PilotPattern(
      mask, np.full((1, 1, int(mask.sum())), pilot, np.complex64),
      normalize=False)
  rg = sionna_ofdm.ResourceGrid(
      num_ofdm_symbols=s, fft_size=grid.fft_size, subcarrier_spacing=15e3,
      num_guard_carriers=guards, dc_null=False, pilot_pattern=pattern,
      cyclic_prefix_length=grid.cyclic_prefix)
  assert rg.num_data_symbols == s * grid.data_per_symbol
  z = np.asarray(_unit_symbols(jax.random.key(11), batch, k))
  padded = np.pad(z, ((0, 0), (0, s * grid.data_per_symbol - k)))
  theirs = sionna_ofdm.ResourceGridMapper(rg)(
      torch.as_tensor(padded[:, None, None]))[:, 0, 0].numpy()
  ours = np.asarray(ofdm.to_grid(jnp.asarray(z), grid, pilot))
  np.testing.assert_allclose(theirs[..., grid.used()], ours, atol=1e-6)
  # The same received grid through both receivers.
  delays, powers = link.profile()
  taps = ofdm.tap_gains(jax.random.key(12), batch, s, 1, powers,
                        jnp.complex64)
  h = ofdm.frequency_response(taps, delays, grid.frequencies())
  noise_var = channel_lib.noise_variance(jnp.full((batch, 1), snr_db))
  y = h * ours + jnp.sqrt(noise_var)[:, :, None] * fading.complex_normal(
      jax.random.key(13), ours.shape)
  y_full = np.zeros((batch, 1, 1, s, grid.fft_size), np.complex64)
  y_full[:, 0, 0][..., grid.used()] = np.asarray(y)
  no = torch.as_tensor(np.array(noise_var)[:, 0])
  h_ls, err_ls = sionna_ofdm.LSChannelEstimator(rg, interpolation_type="lin")(
      torch.as_tensor(y_full), no)
  our_h, our_err = ofdm.ls_estimate(y[:, :, grid.pilots()], pilot, grid,
                                    noise_var[:, :, None])
  np.testing.assert_allclose(h_ls[:, 0, 0, 0, 0].numpy(), our_h, atol=1e-5)
  np.testing.assert_allclose(err_ls[:, 0, 0, 0, 0].numpy(),
                             np.broadcast_to(our_err, our_h.shape), atol=1e-5)
  x_hat, no_eff = sionna_ofdm.LMMSEEqualizer(
      rg, StreamManagement(np.ones([1, 1]), 1))(
          torch.as_tensor(y_full), h_ls, err_ls, no)
  # Sionna's LMMSE output is unbiased; ours is the MMSE estimate, the
  # unbiased one times |h|^2 / (|h|^2 + e + sigma^2) = 1 / (1 + no_eff).
  ours_eq = ofdm.equalize(y, our_h, our_err, noise_var[:, :, None], 1.0,
                          "mmse")
  theirs_eq = x_hat[:, 0, 0].numpy() / (1 + no_eff[:, 0, 0].numpy())
  np.testing.assert_allclose(
      np.asarray(ours_eq)[:, :, grid.data()].reshape(batch, -1), theirs_eq,
      atol=1e-5)


def test_ofdm_channel_trains_through_the_object():
  link = channel_lib.Channel("ofdm", pdp="tdl-c", csi="lmmse",
                             fading="block", coherence=2,
                             side_info="snr+gain")
  latents = jax.random.normal(jax.random.key(14), (2, 4, 4, 8))
  # One compilation: the output, the CSI and the gradient at 40 dB.
  loss = lambda x: (lambda out: (jnp.sum(out[0]), out))(
      link.transmit(jax.random.key(15), x, 40.0))
  (_, (out, csi)), grad = jax.value_and_grad(loss, has_aux=True)(latents)
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)
  scale = np.sqrt(np.mean(np.asarray(latents).reshape(2, -1) ** 2, axis=1) * 2)
  np.testing.assert_allclose(out, latents / scale[:, None, None, None],
                             atol=0.15)
  side = link.side_features(csi, 40.0, 2)
  assert side.shape == (2, 1 + channel_lib.SIDE_GAIN_SLICES)


def test_ofdm_capacity_is_the_data_share_of_the_rayleigh_ergodic():
  link = channel_lib.Channel("ofdm", pdp="tdl-a", fading="fast")
  share = 39 / 80
  assert capacity.ergodic(link, 5.0) == pytest.approx(
      share * capacity.ergodic_capacity(5.0))
  slow = link.replace(fading="slow")
  draws = capacity.realised_draws(slow, 0, 1, 5.0, 2000, 1000)
  # Each subcarrier gain is CN(0, 1): the mean realised capacity is ergodic.
  assert np.mean(capacity.realised_capacity(slow, draws, 5.0)) == (
      pytest.approx(capacity.ergodic(link, 5.0), rel=0.02))
  bits = capacity.rate_for_outage(1000, 5.0, 0.1, slow)
  assert 0.05 < capacity.outage_of(slow, bits, 1000, 5.0) <= 0.1 + 1e-3


def test_configs_build_the_channel_and_old_blocks_still_load():
  from experiments.configs import deepjscc_ffhq  # pylint: disable=import-outside-toplevel
  from gjscc_jax.schemes import registry  # pylint: disable=import-outside-toplevel
  config = deepjscc_ffhq.get_config("demo")
  config.channel = ml_collections.ConfigDict(dict(  # a run from before
      kind="rayleigh", fading="fast", equalization="zf", power=1.0))
  scheme = registry.build_scheme(config)
  assert scheme.model.link == channel_lib.Channel("rayleigh", "fast", "zf")
  assert scheme.bandwidth_ratio == pytest.approx(1 / 192)
  # OFDM pays for its pilots, guards, padding and prefixes in rho:
  # k = 64 symbols in 2 OFDM symbols of 64 + 16 samples.
  config.channel = channel_lib.parse("ofdm:pdp=tdl-a").to_config()
  scheme = registry.build_scheme(config)
  assert scheme.bandwidth_ratio == pytest.approx(160 / (3 * 64 * 64))


def test_decoder_af_modules_get_the_gains_with_side_info():
  from gjscc_jax.models.deepjscc import DeepJSCC  # pylint: disable=import-outside-toplevel
  link = channel_lib.Channel("rayleigh", "fast", side_info="snr+gain")
  model = DeepJSCC(arch="small", num_filters=8, latent_channels=4,
                   downsampling=4, snr_adaptive=True, channel=link)
  images = jnp.zeros((2, 16, 16, 3))
  params = jax.eval_shape(model.init, jax.random.key(0), images,
                          jnp.zeros(2), jax.random.key(1))["params"]
  # Encoder AF: features + SNR; decoder AF: features + SNR + 8 gain slices.
  assert params["encoder"]["af_0"]["fc1"]["kernel"].shape[0] == 4 + 1
  assert params["decoder"]["af_0"]["fc1"]["kernel"].shape[0] == 8 + 1 + 8
