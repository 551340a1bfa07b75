"""Tests for gjscc_jax.channel: pairing, power, AWGN, Rayleigh fading, BCR."""

import fractions

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gjscc_jax import channel


def _symbols(key, batch, k, scale=3.0):
  """Random complex symbols with arbitrary (non-unit) power."""
  return channel.complex_normal(key, (batch, k)) * scale + (0.5 - 0.25j)


def _measured_snr_db(clean, noisy, power):
  noise_power = np.mean(np.abs(np.asarray(noisy) - np.asarray(clean)) ** 2,
                        axis=-1)
  return 10 * np.log10(power / noise_power)


# --- pairing ---------------------------------------------------------------


def test_pairing_convention_and_round_trip():
  latents = jax.random.normal(jax.random.key(0), (2, 3, 5, 6))
  z = channel.pair_symbols(latents)
  assert z.shape == (2, 3 * 5 * 6 // 2) and z.dtype == jnp.complex64
  # Channel 2i is the real part, 2i + 1 the imaginary part, row-major order.
  np.testing.assert_array_equal(np.real(z[1, 7]), latents[1, 0, 2, 2])
  np.testing.assert_array_equal(np.imag(z[1, 7]), latents[1, 0, 2, 3])
  np.testing.assert_array_equal(channel.unpair_symbols(z, latents.shape),
                                latents)


def test_odd_channels_raise():
  with pytest.raises(ValueError, match="C must be even"):
    channel.pair_symbols(jnp.zeros((1, 2, 2, 3)))
  with pytest.raises(ValueError, match="C must be even"):
    channel.transmit(jax.random.key(0), jnp.zeros((1, 2, 2, 3)), 10.0)


# --- power -------------------------------------------------------------------


@pytest.mark.parametrize("power", [1.0, 0.3, 4.0])
def test_power_normalize_gives_exact_power(power):
  z = _symbols(jax.random.key(1), 5, 1000)
  out = channel.power_normalize(z, power)
  np.testing.assert_allclose(np.mean(np.abs(out) ** 2, axis=1), power,
                             rtol=1e-5)
  # Direction is unchanged: a positive rescaling of each image.
  ratio = np.asarray(out / z)
  np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones_like(ratio),
                             rtol=1e-5)
  assert np.all(np.real(ratio) > 0)


def test_power_normalize_zero_image_stays_finite():
  out = channel.power_normalize(jnp.zeros((1, 8), jnp.complex64))
  assert np.all(np.asarray(out) == 0)


# --- AWGN --------------------------------------------------------------------


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 7.5, 20.0])
def test_awgn_measured_snr_matches_setting(snr_db):
  # 4 x 2^18 > 10^6 complex symbols; the estimate's std is ~0.004 dB.
  z = channel.power_normalize(_symbols(jax.random.key(2), 4, 2**18))
  y = channel.awgn(jax.random.key(3), z, snr_db)
  measured = _measured_snr_db(z.reshape(1, -1), y.reshape(1, -1), 1.0)
  assert abs(measured[0] - snr_db) < 0.05
  # Noise is circular: equal power in I and Q, uncorrelated.
  noise = np.asarray(y - z).ravel()
  np.testing.assert_allclose(np.var(noise.real), np.var(noise.imag),
                             rtol=0.01)
  assert abs(np.mean(noise.real * noise.imag)) < 0.01 * np.var(noise.real)


def test_awgn_per_image_snr_and_power():
  snrs = jnp.array([-5.0, 0.0, 3.0, 10.0])
  power = 2.5
  z = channel.power_normalize(_symbols(jax.random.key(4), 4, 2**18), power)
  y = channel.awgn(jax.random.key(5), z, snrs, power)
  np.testing.assert_allclose(_measured_snr_db(z, y, power), snrs, atol=0.05)


def test_awgn_rejects_bad_snr_shape():
  z = channel.power_normalize(_symbols(jax.random.key(0), 4, 8))
  with pytest.raises(ValueError, match="one value per image"):
    channel.awgn(jax.random.key(0), z, jnp.zeros((3,)))


def test_sample_snr_db_uniform_in_range():
  s = np.asarray(channel.sample_snr_db(jax.random.key(6), 100_000, -5.0, 5.0))
  assert s.shape == (100_000,) and s.min() >= -5.0 and s.max() <= 5.0
  assert abs(s.mean()) < 0.05 and abs(s.var() - 100 / 12) < 0.15
  with pytest.raises(ValueError, match="empty"):
    channel.sample_snr_db(jax.random.key(0), 4, 5.0, -5.0)


def test_same_key_same_noise_different_key_different():
  latents = jax.random.normal(jax.random.key(7), (3, 2, 2, 4))
  snr = jnp.array([0.0, 5.0, 10.0])
  a = channel.transmit(jax.random.key(8), latents, snr)
  b = channel.transmit(jax.random.key(8), latents, snr)
  c = channel.transmit(jax.random.key(9), latents, snr)
  np.testing.assert_array_equal(a, b)
  assert np.mean(np.abs(np.asarray(a - c))) > 0.1


# --- Rayleigh fading ----------------------------------------------------------


def test_fast_fading_gain_statistics():
  h = np.asarray(channel.rayleigh_gains(jax.random.key(10), 4, 2**18, "fast"))
  assert abs(np.mean(np.abs(h) ** 2) - 1) < 0.01  # std of estimate 0.001
  assert abs(np.mean(h)) < 0.01 and abs(np.mean(h**2)) < 0.01  # circular
  # Varies per symbol: neighbouring symbols are uncorrelated.
  assert abs(np.mean(h[:, 1:] * np.conj(h[:, :-1]))) < 0.01


def test_slow_fading_constant_per_image_with_unit_power():
  h = np.asarray(channel.rayleigh_gains(jax.random.key(11), 200_000, 3,
                                        "slow"))
  np.testing.assert_array_equal(h, np.repeat(h[:, :1], 3, axis=1))
  gains = np.abs(h[:, 0]) ** 2
  assert abs(gains.mean() - 1) < 0.015  # std of estimate 0.0022
  # |h|^2 ~ Exp(1): P(|h|^2 < 0.1) = 1 - exp(-0.1).
  assert abs(np.mean(gains < 0.1) - (1 - np.exp(-0.1))) < 0.005


@pytest.mark.parametrize("fading", ["slow", "fast"])
def test_zero_forcing_recovers_symbols_at_very_high_snr(fading):
  z = channel.power_normalize(_symbols(jax.random.key(12), 8, 512))
  out = channel.rayleigh(jax.random.key(13), z, 200.0, fading=fading,
                         equalization="zf")
  np.testing.assert_allclose(out, z, rtol=1e-4, atol=1e-4)


def test_fading_actually_rotates_before_equalisation():
  z = channel.power_normalize(_symbols(jax.random.key(12), 8, 512))
  h = channel.rayleigh_gains(jax.random.key(14), 8, 512, "fast")
  y = channel.awgn(jax.random.key(15), h * z, 200.0)
  assert np.mean(np.abs(np.asarray(y - z))) > 0.5
  np.testing.assert_allclose(channel.equalize(y, h, 1e-20, 1.0, "zf"), z,
                             rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fading", ["slow", "fast"])
def test_mmse_error_not_above_zero_forcing_at_low_snr(fading):
  z = channel.power_normalize(_symbols(jax.random.key(16), 256, 256))
  errors = {}
  for eq in ("zf", "mmse"):
    # Same key: same fading and noise realisation for both receivers.
    out = channel.rayleigh(jax.random.key(17), z, 0.0, fading=fading,
                           equalization=eq)
    errors[eq] = float(np.mean(np.abs(np.asarray(out - z)) ** 2))
  assert errors["mmse"] <= errors["zf"]
  # MMSE error per symbol is E[sigma^2 / (|h|^2 + sigma^2)] < 1 at 0 dB.
  assert errors["mmse"] < 1.0


def test_mmse_matches_closed_form_on_known_gains():
  y = jnp.array([[1 + 1j, -2 + 0.5j]], jnp.complex64)
  h = jnp.array([[0.5 - 0.5j, 2j]], jnp.complex64)
  out = channel.equalize(y, h, 0.25, power=0.5, equalization="mmse")
  expected = np.conj(h) * y / (np.abs(h) ** 2 + 0.5)
  np.testing.assert_allclose(out, expected, rtol=1e-6)


# --- transmit -----------------------------------------------------------------


_TRANSMIT_OPTIONS = [
    dict(channel="awgn"),
    dict(channel="rayleigh", fading="slow", equalization="mmse"),
    dict(channel="rayleigh", fading="fast", equalization="zf"),
]


@pytest.mark.parametrize("kwargs", _TRANSMIT_OPTIONS)
def test_transmit_shape_and_dtype(kwargs):
  latents = jax.random.normal(jax.random.key(18), (3, 2, 2, 4))
  out = channel.transmit(jax.random.key(19), latents,
                         jnp.array([0.0, 5.0, 10.0]), **kwargs)
  assert out.shape == latents.shape and out.dtype == latents.dtype
  assert np.all(np.isfinite(out))


def test_transmit_under_jit_vmap_and_grad():
  kwargs = dict(channel="rayleigh", fading="fast", equalization="mmse")
  latents = jax.random.normal(jax.random.key(18), (3, 2, 2, 4))
  key, snr = jax.random.key(19), jnp.array([0.0, 5.0, 10.0])
  # jit(vmap) over single-image calls equals the per-image loop.
  keys = jax.random.split(key, 3)
  single = lambda k, x, s: channel.transmit(k, x[None], s, **kwargs)[0]
  batched = jax.jit(jax.vmap(single))(keys, latents, snr)
  looped = [single(keys[i], latents[i], snr[i]) for i in range(3)]
  np.testing.assert_allclose(batched, np.stack(looped), rtol=1e-5, atol=1e-5)
  grad = jax.grad(lambda x: jnp.sum(channel.transmit(key, x, snr, **kwargs)))(
      latents)
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_transmit_awgn_at_huge_snr_returns_power_normalised_latents():
  latents = 5.0 * jax.random.normal(jax.random.key(20), (2, 4, 4, 2))
  out = channel.transmit(jax.random.key(21), latents, 300.0, power=2.0)
  # Per-image mean square of real values = P / 2 (half the power per part).
  np.testing.assert_allclose(np.mean(np.asarray(out) ** 2, axis=(1, 2, 3)),
                             1.0, rtol=1e-5)
  scale = np.asarray(out) / np.asarray(latents)
  np.testing.assert_allclose(scale, scale[:, :1, :1, :1] * np.ones_like(scale),
                             rtol=1e-4)


def test_transmit_keeps_bfloat16():
  latents = jax.random.normal(jax.random.key(0), (1, 2, 2, 4), jnp.bfloat16)
  assert channel.transmit(jax.random.key(1), latents, 5.0).dtype == jnp.bfloat16


@pytest.mark.parametrize("kwargs,match", [
    (dict(channel="nakagami"), "channel='nakagami'"),
    (dict(channel="rayleigh", fading="medium"), "fading='medium'"),
    (dict(channel="rayleigh", equalization="ml"), "equalization='ml'"),
])
def test_transmit_rejects_unknown_options(kwargs, match):
  with pytest.raises(ValueError, match=match):
    channel.transmit(jax.random.key(0), jnp.ones((1, 2, 2, 2)), 0.0, **kwargs)


# --- bandwidth ratio ----------------------------------------------------------


def test_bandwidth_ratio_values():
  assert channel.bandwidth_ratio((256, 256, 3), (16, 16, 8)) == 1 / 192
  assert channel.bandwidth_ratio((4, 512, 512, 3), (4, 32, 32, 2)) == 1 / 768
  assert channel.bandwidth_ratio((32, 32, 3), (8, 8, 4)) == 1 / 24
  with pytest.raises(ValueError, match="C must be even"):
    channel.bandwidth_ratio((32, 32, 3), (2, 2, 3))


@pytest.mark.parametrize("rho,downsampling,expected", [
    ("1/768", 16, 2), ("1/384", 16, 4), ("1/192", 16, 8), (1 / 192, 16, 8),
    (fractions.Fraction(1, 768), 16, 2), ("1 / 12", 4, 8), (1 / 48, 4, 2),
])
def test_latent_channels_for_bcr(rho, downsampling, expected):
  channels = channel.latent_channels_for_bcr(rho, downsampling)
  assert channels == expected
  side = 8 * downsampling
  assert channel.bandwidth_ratio(
      (side, side, 3), (8, 8, channels)) == float(channel.parse_ratio(rho))


@pytest.mark.parametrize("rho,match", [
    ("1/1536", "C must be an even integer"),  # C = 1, odd
    (0.0052, "C must be an even integer"),  # C = 7.99
    ("1/1000", "C must be an even integer"),
    ("one/192", "Cannot parse"),
    ("1/0", "Cannot parse"),
    (-0.5, "positive"),
])
def test_latent_channels_for_bcr_errors(rho, match):
  with pytest.raises(ValueError, match=match):
    channel.latent_channels_for_bcr(rho)


def test_parse_ratio():
  assert channel.parse_ratio("1/192") == fractions.Fraction(1, 192)
  assert channel.parse_ratio(1 / 192) == fractions.Fraction(1, 192)
  assert channel.parse_ratio("0.25") == fractions.Fraction(1, 4)
  assert channel.parse_ratio(2) == 2
