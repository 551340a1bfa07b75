"""Tests of the ILO optimiser, its projections and the data terms.

A tiny randomly initialised StyleGAN2 (16x16, 3 blocks) stands in for the
pretrained generator: the tests check the optimiser's mechanics (vmap vs
loop, sharding, projections, recovery of an image the generator can make),
which do not depend on what the generator has learned.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gjscc_jax import metrics
from gjscc_jax.inverse import forward_operators
from gjscc_jax.inverse import generator as generator_lib
from gjscc_jax.inverse import ilo
from gjscc_jax.inverse import latent_proxy
from gjscc_jax.inverse import latents as latents_lib
from gjscc_jax.inverse import projections
from gjscc_jax.inverse import search
from gjscc_jax.losses import PerceptualLoss
from gjscc_jax import sharding

RES = 16


#: Samples of the tiny generator's z_proxy fit (its statistics are stable to
#: well under 1% at this count; see test_proxy_matches_the_mapping_network).
PROXY_SAMPLES = 2 ** 16


@pytest.fixture(scope="module")
def prior():
  module, variables = generator_lib.random_stylegan2(
      resolution=RES, z_dim=16, w_dim=16, channel_base=256, channel_max=16,
      seed=3, w_avg_samples=512)
  return generator_lib.from_stylegan2(module), module, variables


@pytest.fixture(scope="module")
def proxy(prior):
  return latent_proxy.fit(prior[0], prior[2], samples=PROXY_SAMPLES)


def _targets(prior, n, seed=11):
  """Images the generator itself makes: W+ from the mapping network at
  truncation 0.5 (so pixels stay in the checked range), random noise."""
  layered, module, variables = prior
  z = jax.random.normal(jax.random.PRNGKey(seed), (n, module.z_dim))
  ws = module.apply(variables, z, truncation_psi=0.5, method=module.map)
  keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(
      layered.noise_blocks))
  noises = tuple(jax.random.normal(k, (n,) + s)
                 for k, s in zip(keys, layered.noise_shapes()))
  return layered.apply(variables, ws, noises, 0, layered.num_blocks, None,
                       None)


_IDENTITY = forward_operators.DataTerms(
    "identity", PerceptualLoss(lambda_lpips=0.0, check_inputs=False),
    generator_resolution=RES, image_resolution=RES)


def _prepare(prior, targets, proxy=None):
  frozen = dict(generator=prior[2])
  if proxy is not None:
    frozen["latent_proxy"] = proxy
  n = len(targets)
  return frozen, _IDENTITY.prepare_targets(
      frozen, targets, jnp.zeros(n), jax.random.split(jax.random.PRNGKey(0), n))


def _jittered_objective(frozen, image, target, key):
  """MSE plus a term that depends on every step's key (smooth)."""
  terms = _IDENTITY(frozen, image, target, key)
  jitter = 0.1 * jax.random.normal(key, image.shape)
  terms["lpips"] = jnp.mean(jnp.square(image - target["received"] + jitter))
  return terms


#: Every feature at once, for a few steps: two rounds (z_proxy latents and
#: noise, then also block 1's input features), geocross in both rounds, the
#: sphere projections of z rows and noise maps, an L1 ball on the features,
#: and a data term that uses every step's key.
_SHORT = ilo.ILOConfig(
    steps=(6, 4), learning_rates=(0.1, 0.05), lambda_lpips=0.5,
    geocross_weight=0.01, geocross_rounds="all",
    feature_radius=(50.0, 50.0))


@pytest.fixture(scope="module")
def short_run(prior, proxy):
  """The batched, unsharded short search for 8 generator images, stepwise
  (one vmapped program per round step)."""
  frozen, targets = _prepare(prior, _targets(prior, 8), proxy)
  keys = jax.random.split(jax.random.PRNGKey(5), 8)
  result = search.inverter(prior[0], _SHORT, _jittered_objective,
                           loop="stepwise")(frozen, targets, keys)
  return frozen, targets, keys, result


def _max_abs(a, b):
  return float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))))


def test_learning_rate_is_ilos_schedule():
  steps, peak = 50, 0.1
  for step in range(steps):
    t = step / steps
    ramp = min(1.0, (1 - t) / 0.75)
    expected = peak * (0.5 - 0.5 * math.cos(ramp * math.pi)) * min(1, t / 0.05)
    assert float(ilo.learning_rate(step, steps, peak)) == pytest.approx(
        expected, rel=1e-5, abs=1e-9)
  assert float(ilo.learning_rate(0, steps, peak)) == 0.0
  assert float(ilo.learning_rate(10, steps, peak)) == pytest.approx(peak)


def _l1_projection_by_bisection(v, radius):
  """Reference: soft-threshold at the theta with sum max(|v| - theta, 0) = r."""
  a = np.abs(v).astype(np.float64)
  if a.sum() <= radius:
    return v
  lo, hi = 0.0, a.max()
  for _ in range(200):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if np.maximum(a - mid, 0).sum() > radius else (lo, mid)
  return np.sign(v) * np.maximum(a - (lo + hi) / 2, 0)


@pytest.mark.parametrize("radius", [0.3, 2.0, 10.0, 1e3])
def test_l1_ball_projection_matches_reference(radius):
  v = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
  got = np.asarray(optax.projections.projection_l1_ball(jnp.asarray(v), radius))
  want = _l1_projection_by_bisection(v, radius)
  np.testing.assert_allclose(got, want, atol=1e-5)
  assert np.abs(got).sum() <= radius * (1 + 1e-5)
  anchor = np.ones_like(v)
  moved = projections.project_deviation(jnp.asarray(v), anchor, radius)
  np.testing.assert_allclose(
      np.asarray(moved), anchor + _l1_projection_by_bisection(
          v - anchor, radius), atol=1e-5)


def test_geocross_closed_form_and_preserve_norm():
  d, angle = 4, 0.7
  ws = jnp.array([[1.0, 0, 0, 0], [math.cos(angle), math.sin(angle), 0, 0]])
  # Mean of the squared angles over the 2x2 pairs (two are 0), times d / 8.
  assert float(projections.geocross(3.0 * ws)) == pytest.approx(
      angle**2 / 2 * d / 8, rel=1e-4)
  assert float(projections.geocross(jnp.ones((5, d)))) == pytest.approx(
      0.0, abs=1e-6)
  assert float(projections.geocross(ws[:1])) == 0.0
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 6, 1))
  norms = projections.vector_norms(x, (0, 1))
  out = projections.preserve_norm(3.0 * x + 1.0, norms, (0, 1))
  np.testing.assert_allclose(projections.vector_norms(out, (0, 1)), norms,
                             rtol=1e-5)


def test_block_runs_compose_to_the_full_image(prior):
  """Round r's input (features and skip image of block r-1) is exact."""
  layered, _, variables = prior
  v = ilo.initial_variables(layered, ilo.ILOConfig(latent_space="w_plus"),
                            dict(generator=variables), jax.random.PRNGKey(0))
  ws = v.latents + 0.3 * jax.random.normal(jax.random.PRNGKey(1),
                                           v.latents.shape)

  @jax.jit
  def full_and_split(ws, noises):
    full = layered.synthesize_one(variables, ws, noises)
    x, img = layered.blocks_one(variables, ws, noises, 0, 1)
    x, img = layered.blocks_one(variables, ws, noises, 1, 2, x, img)
    return full, layered.synthesize_one(variables, ws, noises, 2, x, img)

  full, split = full_and_split(ws, v.noises)
  assert full.shape == (RES, RES, 3)
  assert _max_abs(full, split) < 1e-5


def test_vmapped_search_equals_per_image_loop(prior, short_run):
  """Batched stepwise search == `invert_one` (lax.scan) image by image."""
  layered, _, _ = prior
  frozen, targets, keys, result = short_run
  one = jax.jit(lambda f, t, k: ilo.invert_one(
      layered, _SHORT, _jittered_objective, f, t, k))
  for i in range(len(keys)):
    single = one(frozen, jax.tree.map(lambda a, i=i: a[i], targets), keys[i])
    assert _max_abs(result.image[i], single.image) <= 5e-5
    for name in ("mse", "lpips", "loss", "objective"):
      np.testing.assert_allclose(result.terms[name][i], single.terms[name],
                                 rtol=1e-5, atol=1e-7)
    for got, want in zip(jax.tree.leaves(result.variables),
                         jax.tree.leaves(single.variables)):
      assert _max_abs(got[i], want) <= 1e-4 * max(1.0, float(
          jnp.max(jnp.abs(want))))


def test_sharded_over_8_devices_equals_unsharded(prior, short_run):
  """The search as one program (lax.scan), its batch split over 8 devices,
  equals the unsharded stepwise search."""
  assert jax.device_count() == 8
  layered, _, _ = prior
  frozen, targets, keys, result = short_run
  mesh = sharding.make_mesh()
  sharded = search.inverter(layered, _SHORT, _jittered_objective, mesh,
                            loop="scan")(frozen, targets, keys)
  assert len(sharded.image.sharding.device_set) == 8
  assert _max_abs(sharded.image, result.image) <= 5e-5
  np.testing.assert_allclose(sharded.terms["objective"],
                             result.terms["objective"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("space", ["z_proxy", "w_plus"])
def test_search_recovers_a_generator_image(prior, proxy, space):
  """A = identity, targets made by G: the objective falls by orders of
  magnitude and G(.) matches the targets closely (ILO defaults but for the
  step counts and LPIPS, which a 16x16 image is too small for), in either
  latent space. The whole batch search is one program here (vmapped
  lax.scan)."""
  frozen, targets = _prepare(prior, _targets(prior, 8, seed=21), proxy)
  config = ilo.ILOConfig(steps=(100, 100), lambda_lpips=0.0,
                         latent_space=space)
  result = search.inverter(prior[0], config, _IDENTITY, loop="scan")(
      frozen, targets, jax.random.split(jax.random.PRNGKey(1), 8))
  mse = np.asarray(result.terms["mse"])
  assert mse.shape == (8, config.total_steps)
  ratio = mse.min(1) / mse[:, 0]
  psnr = np.asarray(metrics.psnr(result.image, targets["received"]))
  print(f"{space}: MSE {mse[:, 0].mean():.4g} -> {mse.min(1).mean():.4g} "
        f"(ratio {ratio.max():.3g} at worst), PSNR {psnr.min():.1f} dB at "
        "worst")
  assert np.all(ratio < 1e-2)
  assert np.all(psnr > 34.0)
  # The best iterate is the lowest MSE over every step of every round, and
  # the returned image is that iterate re-rendered from its variables.
  np.testing.assert_allclose(result.best, mse.min(1), rtol=1e-6)
  np.testing.assert_array_equal(result.best_step, mse.argmin(1))
  chosen_mse = np.mean(np.square(np.asarray(result.image - targets[
      "received"])), axis=(1, 2, 3))
  np.testing.assert_allclose(chosen_mse, mse.min(1), rtol=1e-4)


def test_projections_hold(prior, proxy, short_run):
  """ILO's SphericalOptimizer: every z row and noise map keeps its initial
  norm (to float precision) while moving."""
  assert _SHORT.project_latents and _SHORT.latent_space == "z_proxy"
  layered, _, variables = prior
  frozen = dict(generator=variables, latent_proxy=proxy)
  _, _, keys, result = short_run
  for i in range(len(keys)):
    start = ilo.initial_variables(layered, _SHORT, frozen,
                                  jax.random.split(keys[i])[0])
    np.testing.assert_allclose(
        np.linalg.norm(np.asarray(result.variables.latents[i]), axis=-1),
        np.linalg.norm(np.asarray(start.latents), axis=-1), rtol=2e-6)
    assert _max_abs(result.variables.latents[i], start.latents) > 0.05
    for got, want in zip(result.variables.noises, start.noises):
      np.testing.assert_allclose(projections.vector_norms(got[i], (0, 1)),
                                 projections.vector_norms(want, (0, 1)),
                                 rtol=2e-6)
    assert _max_abs(result.variables.noises[0][i], start.noises[0]) > 1e-3


def _ilo_geocross_numpy(latent):
  """ILO's `loss_geocross` (ilo_stylegan.py) in numpy, for `latent` of
  shape (batch, n, d) (ILO hard-codes d = 512)."""
  _, n, d = latent.shape
  x = latent.reshape(-1, 1, n, d).astype(np.float64)
  y = latent.reshape(-1, n, 1, d).astype(np.float64)
  a = np.sqrt(np.square(x - y).sum(-1) + 1e-9)
  b = np.sqrt(np.square(x + y).sum(-1) + 1e-9)
  angles = 2 * np.arctan2(a, b)
  return ((np.square(angles) * d).mean((1, 2)) / 8.0).mean()


def test_geocross_matches_ilos_formula():
  rows = np.random.default_rng(1).normal(size=(18, 512)).astype(np.float32)
  assert float(projections.geocross(jnp.asarray(rows))) == pytest.approx(
      _ilo_geocross_numpy(rows[None]), rel=1e-5)
  # Weighted by ILO's 0.01, it starts near 1.5 for z_proxy's independent
  # Gaussian rows (18 x 512, as for FFHQ-1024): a real regulariser;
  # identical rows (w_plus at w_avg) give 0.
  assert 1.2 < 0.01 * float(projections.geocross(jnp.asarray(rows))) < 1.8
  same = np.broadcast_to(rows[:1], rows.shape)
  assert float(projections.geocross(jnp.asarray(same))) == pytest.approx(
      0.0, abs=1e-3)


def test_proxy_fit_is_the_statistics_of_the_pre_activations(prior, proxy):
  """The fit equals numpy's mean and unbiased std of lrelu_5(mapping(z))
  over the same latents, and is identical across runs."""
  layered, _, variables = prior
  chunks = [jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(
      latent_proxy.PROXY_SEED), c), (latent_proxy.CHUNK, layered.z_dim))
            for c in range(PROXY_SAMPLES // latent_proxy.CHUNK)]
  w = np.concatenate([np.asarray(layered.map(variables, z)[:, 0], np.float64)
                      for z in chunks])
  pre = np.where(w >= 0, w, 5.0 * w)
  np.testing.assert_allclose(proxy["mean"], pre.mean(0), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(proxy["std"], pre.std(0, ddof=1), rtol=1e-5)
  again = latent_proxy.fit(layered, variables, samples=PROXY_SAMPLES)
  for name in ("mean", "std"):
    np.testing.assert_array_equal(again[name], proxy[name])


def test_proxy_matches_the_mapping_network():
  """lrelu_0.2(std * z + mean) for fresh z has, coordinate by coordinate,
  about the mean and standard deviation of real mapping outputs, for a
  random mapping network of the demo prior's size (64 wide, 2 layers). The
  proxy is Gaussian in the pre-activation, which is not exactly Gaussian
  (skewness up to ~0.2 here), so the worst coordinate's std is off by a
  few percent."""
  module, variables = generator_lib.random_stylegan2(
      resolution=4, z_dim=64, w_dim=64, channel_base=64, channel_max=8,
      seed=3, w_avg_samples=512)
  layered = generator_lib.from_stylegan2(module)
  fit = latent_proxy.fit(layered, variables, samples=PROXY_SAMPLES)
  z = jax.random.normal(jax.random.PRNGKey(123), (2 ** 16, layered.z_dim))
  real = np.asarray(layered.map(variables, z)[:, 0])
  fresh = jax.random.normal(jax.random.PRNGKey(456), (2 ** 16,
                                                      layered.w_dim))
  proxied = np.asarray(latent_proxy.to_w(fresh, fit))
  scale = real.std(0)
  mean_error = np.abs(proxied.mean(0) - real.mean(0)) / scale
  std_error = np.abs(proxied.std(0) / scale - 1)
  print(f"proxy vs mapping: mean off by {mean_error.max():.3f} std, std by "
        f"{np.median(std_error):.3f} (median), {std_error.max():.3f} (worst "
        "coordinate)")
  assert mean_error.max() < 0.05
  assert np.median(std_error) < 0.02 and std_error.max() < 0.08


def test_proxy_cache_is_reused_only_when_it_matches(prior, proxy, tmp_path):
  layered, _, variables = prior
  path = str(tmp_path / latent_proxy.FILE_NAME)
  (tmp_path / "blocker").write_text("")  # Not a directory: not writable.
  got, info, written = latent_proxy.load_or_fit(
      [str(tmp_path / "blocker" / "x.npz"), path], layered, variables,
      samples=PROXY_SAMPLES)
  assert written == path and info["samples"] == PROXY_SAMPLES
  np.testing.assert_array_equal(got["mean"], proxy["mean"])
  latent_proxy.write(path, dict(mean=proxy["mean"] + 1, std=proxy["std"]),
                     info)
  reused, _, _ = latent_proxy.load_or_fit([path], layered, variables,
                                          samples=PROXY_SAMPLES)
  np.testing.assert_array_equal(reused["mean"], proxy["mean"] + 1)
  # Other weights: the cached fit is not theirs.
  _, other = generator_lib.random_stylegan2(
      resolution=RES, z_dim=16, w_dim=16, channel_base=256, channel_max=16,
      seed=4, w_avg_samples=512)
  refit, other_info, _ = latent_proxy.load_or_fit(
      [path], layered, other, samples=PROXY_SAMPLES)
  assert other_info["mapping_sha256"] != info["mapping_sha256"]
  assert not np.array_equal(refit["mean"], proxy["mean"] + 1)


def _noisy_operator_terms():
  """DataTerms of a stochastic operator A(G) = 0.8 G + 0.3 n, n ~ N(0, I)
  from the step's key: DeepJSCC's structure (a fresh channel per step)."""
  def reconstruct(params, images, snr_db, key):
    del params, snr_db
    return 0.8 * images + 0.3 * jax.random.normal(key, images.shape)
  return forward_operators.DataTerms(
      "deepjscc", PerceptualLoss(lambda_lpips=0.0, check_inputs=False),
      generator_resolution=RES, image_resolution=RES, channel_noise="fresh",
      reconstruct=reconstruct)


class _Salted:
  """The same data terms with other fresh channel noise at every step: the
  step key is folded with `target['salt']` (traced, so runs with other
  salts share one compiled search)."""

  def __init__(self, terms):
    self.terms = terms

  def __call__(self, frozen, image, target, key):
    return self.terms(frozen, image, target,
                      jax.random.fold_in(key, target["salt"]))

  def selection_terms(self, *args, **kwargs):
    return self.terms.selection_terms(*args, **kwargs)


def test_selection_ignores_the_step_channel_noise(prior, proxy):
  """With fresh channel noise, the score is recomputed with the image's
  fixed keys (the mean over `best_by_draws` of them): the recorded best
  equals that recomputation of the returned image and is the minimum of the
  per-step scores, and two runs whose step noise differs (nothing else)
  score their identical first iterate identically."""
  layered, _, variables = prior
  terms, draws = _noisy_operator_terms(), 2
  frozen = dict(generator=variables, deepjscc={}, latent_proxy=proxy)
  received = jnp.clip(0.8 * _targets(prior, 3, seed=8), -1, 1)
  targets = terms.prepare_targets(frozen, received, jnp.zeros(3),
                                  jax.random.split(jax.random.PRNGKey(2), 3))
  keys = jax.random.split(jax.random.PRNGKey(9), 3)
  config = ilo.ILOConfig(steps=(6, 4), lambda_lpips=0.0, best_by_draws=draws)
  find = search.inverter(layered, config, _Salted(terms))
  results = [find(frozen, dict(targets, salt=jnp.full(3, salt, jnp.uint32)),
                  keys) for salt in (0, 1)]
  for result in results:
    score = np.asarray(result.terms["score"])
    np.testing.assert_allclose(result.best, score.min(1), rtol=1e-6)
    np.testing.assert_array_equal(result.best_step, score.argmin(1))
    for i in range(3):
      target = jax.tree.map(lambda a, i=i: a[i], targets)
      measured = [terms.measure(frozen, result.image[i], 0.0, k)
                  for k in terms.selection_keys(target, draws)]
      assert len(measured) == draws
      recomputed = np.mean([np.mean(np.square(np.asarray(
          m - target["received"]))) for m in measured])
      assert float(result.best[i]) == pytest.approx(recomputed, rel=1e-4)
  first, second = results
  # Step 0 is the same image in both runs: same score, other step noise.
  np.testing.assert_allclose(first.terms["score"][:, 0],
                             second.terms["score"][:, 0], rtol=1e-6)
  assert np.all(np.abs(np.asarray(first.terms["mse"][:, 0] -
                                  second.terms["mse"][:, 0])) > 1e-6)


def test_start_block_is_rounds_of_zero_steps(prior, proxy):
  """ILO's start_layer: starting at block 1 equals a round of 0 steps at
  block 0 followed by the same rounds (geocross on the same rows, the same
  L1 ball on the z rows). With best_by='last' the final variables are
  returned, rendered."""
  layered, _, variables = prior
  frozen, targets = _prepare(prior, _targets(prior, 2, seed=5), proxy)
  keys = jax.random.split(jax.random.PRNGKey(3), 2)
  common = dict(lambda_lpips=0.0, geocross_rounds="all", latent_radius=3.0,
                best_by="last")
  skipped = ilo.ILOConfig(steps=(0, 4, 3), **common)
  started = ilo.ILOConfig(steps=(4, 3), start_block=1, **common)
  a = search.inverter(layered, skipped, _IDENTITY)(frozen, targets, keys)
  b = search.inverter(layered, started, _IDENTITY)(frozen, targets, keys)
  assert a.terms["mse"].shape == (2, 7) and "score" not in a.terms
  assert _max_abs(a.image, b.image) <= 1e-5
  np.testing.assert_allclose(a.terms["objective"], b.terms["objective"],
                             rtol=1e-5)
  np.testing.assert_array_equal(b.best_step, [started.total_steps] * 2)
  assert np.all(np.isnan(np.asarray(b.best)))
  rendered = jax.vmap(lambda v: ilo.render(layered, started, frozen, v))(
      b.variables)
  assert _max_abs(rendered, b.image) <= 1e-6
  for i in range(2):
    start = ilo.initial_variables(layered, started, frozen,
                                  jax.random.split(keys[i])[0])
    moved = float(jnp.sum(jnp.abs(b.variables.latents[i] - start.latents)))
    assert 0.1 < moved <= 2 * 3.0 * (1 + 1e-5)
  with pytest.raises(ValueError, match="start_block"):
    ilo.check_rounds(layered, ilo.ILOConfig(steps=(1, 1), start_block=2))


def test_saved_latents_rerender_the_returned_image(prior, proxy, short_run):
  layered, _, variables = prior
  frozen, targets, keys, result = short_run
  arrays = latents_lib.latent_arrays(_SHORT, frozen, result.variables)
  assert set(arrays) >= {"ws", "z", "x", "img", "noise_0"}
  for i in range(len(keys)):
    saved = latents_lib.file_arrays(
        _SHORT, proxy, {k: np.asarray(v[i]) for k, v in arrays.items()},
        image_resolution=RES)
    assert int(saved["block"]) == 1
    image = latents_lib.render(layered, variables, saved)
    assert _max_abs(image, result.image[i]) <= 1e-6
    # The z rows map to the saved W+ through the saved proxy.
    np.testing.assert_allclose(latent_proxy.to_w(
        saved["z"], dict(mean=saved["proxy_mean"], std=saved["proxy_std"])),
                               saved["ws"], rtol=1e-6)


def test_config_errors_name_the_problem():
  with pytest.raises(ValueError, match="one value per round"):
    ilo.ILOConfig(steps=(5, 5), learning_rates=(0.1, 0.1, 0.1))
  with pytest.raises(ValueError, match="at least one > 0"):
    ilo.ILOConfig(steps=(0, 0))
  with pytest.raises(ValueError, match="latent_space"):
    ilo.ILOConfig(latent_space="w")
  with pytest.raises(ValueError, match="geocross_rounds"):
    ilo.ILOConfig(geocross_rounds="last")
  with pytest.raises(ValueError, match="best_by_draws"):
    ilo.ILOConfig(best_by_draws=0)
  assert not ilo.ILOConfig(latent_space="w_plus").project_latents
  assert ilo.ILOConfig().project_latents
  with pytest.raises(ValueError, match="best_by"):
    ilo.ILOConfig(best_by="psnr")
  with pytest.raises(ValueError, match="Unknown ILO settings"):
    ilo.ILOConfig.from_config(dict(steps=(1,), lr=0.1))


def test_bfloat16_generator_search(prior):
  """A bf16 StyleGAN2 (`generator_dtype='bfloat16'`): the search's variables,
  Adam's state, the skip image and the result stay float32, also the
  feature map a bf16 block hands to the next round, and the search follows
  the float32 one.

  Tolerances: a bf16 feature map carries a relative rounding error of up to
  2^-9 per layer (the styles, demodulation and skip image are float32), so
  the image of the same variables differs by about 1 % (RMS, relative;
  checked < 3 %), and the first step's MSE by a few %. After the steps the
  two searches have taken slightly different paths; their best MSEs agree
  to 25 % and both fall by more than half.
  """
  layered, module, variables = prior
  layered16 = generator_lib.from_stylegan2(module.clone(dtype=jnp.bfloat16))
  config = ilo.ILOConfig(steps=(6, 6), lambda_lpips=0.0,
                         latent_space="w_plus")
  frozen, targets = _prepare(prior, _targets(prior, 2))
  keys = jax.random.split(jax.random.PRNGKey(7), 2)

  def state_after_a_step_of_round_1(g):
    search_state, run_key = ilo.start_search(g, config, frozen, keys[0])
    target = jax.tree.map(lambda a: a[0], targets)
    state = ilo.start_round(g, config, 0, search_state)
    state, _ = ilo.round_step(g, config, _IDENTITY, 0, frozen, target,
                              run_key, state, 0)
    search_state = ilo.end_round(g, config, 0, frozen, state)
    state = ilo.start_round(g, config, 1, search_state)
    return ilo.round_step(g, config, _IDENTITY, 1, frozen, target, run_key,
                          state, 1)[0]

  state = jax.eval_shape(lambda: state_after_a_step_of_round_1(layered16))
  assert state.trainable["x"].shape == layered16.feature_shape(0)
  floats = [(jax.tree_util.keystr(p), l.dtype) for p, l in
            jax.tree_util.tree_leaves_with_path(state)
            if jnp.issubdtype(l.dtype, jnp.floating)]
  assert floats and all(d == jnp.float32 for _, d in floats), floats

  start = ilo.initial_variables(layered, config, frozen, keys[0])
  images = [jax.jit(g.synthesize_one)(variables, start.latents, start.noises)
            for g in (layered, layered16)]
  assert images[1].dtype == jnp.float32
  rel = float(jnp.linalg.norm(images[1] - images[0]) /
              jnp.linalg.norm(images[0]))
  results = [search.inverter(g, config, _IDENTITY, loop="scan")(
      frozen, targets, keys) for g in (layered, layered16)]
  f32, bf16 = results
  assert bf16.image.dtype == jnp.float32
  assert all(l.dtype == jnp.float32 for l in jax.tree.leaves(bf16.variables))
  assert all(bool(jnp.all(jnp.isfinite(l))) for l in jax.tree.leaves(bf16))
  mse32, mse16 = np.asarray(f32.terms["mse"]), np.asarray(bf16.terms["mse"])
  print(f"bf16 vs f32: image {rel:.2%} (relative RMS); first MSE "
        f"{mse16[:, 0]} vs {mse32[:, 0]}; best {mse16.min(1)} vs "
        f"{mse32.min(1)}")
  assert rel < 0.03
  np.testing.assert_allclose(mse16[:, 0], mse32[:, 0], rtol=0.05)
  np.testing.assert_allclose(mse16.min(1), mse32.min(1), rtol=0.25)
  assert np.all(mse16.min(1) < 0.5 * mse16[:, 0])
