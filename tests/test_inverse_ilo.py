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
from gjscc_jax.inverse import projections
from gjscc_jax.inverse import search
from gjscc_jax.losses import PerceptualLoss
from gjscc_jax import sharding

RES = 16


@pytest.fixture(scope="module")
def prior():
  module, variables = generator_lib.random_stylegan2(
      resolution=RES, z_dim=16, w_dim=16, channel_base=256, channel_max=16,
      seed=3, w_avg_samples=512)
  return generator_lib.from_stylegan2(module), module, variables


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


def _prepare(prior, targets):
  frozen = dict(generator=prior[2])
  n = len(targets)
  return frozen, _IDENTITY.prepare_targets(
      frozen, targets, jnp.zeros(n), jax.random.split(jax.random.PRNGKey(0), n))


def _jittered_objective(frozen, image, target, key):
  """MSE plus a term that depends on every step's key (smooth)."""
  terms = _IDENTITY(frozen, image, target, key)
  jitter = 0.1 * jax.random.normal(key, image.shape)
  terms["lpips"] = jnp.mean(jnp.square(image - target["received"] + jitter))
  return terms


#: Every feature at once, for a few steps: two rounds (W+ and noise, then
#: also block 1's input features), geocross, sphere and L1 projections, and a
#: data term that uses every step's key.
_SHORT = ilo.ILOConfig(
    steps=(6, 4), learning_rates=(0.1, 0.05), lambda_lpips=0.5,
    geocross_weight=0.01, project_latents=True, latent_radius=4.0,
    feature_radius=(50.0, 50.0))


@pytest.fixture(scope="module")
def short_run(prior):
  """The batched, unsharded short search for 8 generator images, stepwise
  (one vmapped program per round step)."""
  frozen, targets = _prepare(prior, _targets(prior, 8))
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
  v = ilo.initial_variables(layered, variables, jax.random.PRNGKey(0))
  ws = v.ws + 0.3 * jax.random.normal(jax.random.PRNGKey(1), v.ws.shape)

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
    assert _max_abs(result.image[i], single.image) <= 1e-5
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
  assert _max_abs(sharded.image, result.image) <= 1e-5
  np.testing.assert_allclose(sharded.terms["objective"],
                             result.terms["objective"], rtol=1e-5, atol=1e-7)


def test_search_recovers_a_generator_image(prior):
  """A = identity, targets made by G: the objective falls by orders of
  magnitude and G(.) matches the targets closely (ILO defaults but for the
  step counts and LPIPS, which a 16x16 image is too small for). The whole
  batch search is one program here (vmapped lax.scan)."""
  frozen, targets = _prepare(prior, _targets(prior, 8, seed=21))
  config = ilo.ILOConfig(steps=(100, 100), lambda_lpips=0.0)
  result = search.inverter(prior[0], config, _IDENTITY, loop="scan")(
      frozen, targets, jax.random.split(jax.random.PRNGKey(1), 8))
  mse = np.asarray(result.terms["mse"])
  assert mse.shape == (8, config.total_steps)
  ratio = mse.min(1) / mse[:, 0]
  psnr = np.asarray(metrics.psnr(result.image, targets["received"]))
  print(f"MSE {mse[:, 0].mean():.4g} -> {mse.min(1).mean():.4g} (ratio "
        f"{ratio.max():.3g} at worst), PSNR {psnr.min():.1f} dB at worst")
  assert np.all(ratio < 1e-2)
  assert np.all(psnr > 34.0)
  # The best iterate is the lowest MSE over every step of every round.
  np.testing.assert_allclose(result.best, mse.min(1), rtol=1e-6)


def test_projections_hold(prior, short_run):
  layered, _, variables = prior
  _, _, keys, result = short_run
  for i in range(len(keys)):
    start = ilo.initial_variables(layered, variables,
                                  jax.random.split(keys[i])[0])
    # Noise maps keep their initial norms (sphere projection) but do move.
    for got, want in zip(result.variables.noises, start.noises):
      np.testing.assert_allclose(projections.vector_norms(got[i], (0, 1)),
                                 projections.vector_norms(want, (0, 1)),
                                 rtol=1e-4)
    assert _max_abs(result.variables.noises[0][i], start.noises[0]) > 1e-3
    # Each of the two rounds moves W+ by at most the L1 radius, 4.
    moved = float(jnp.sum(jnp.abs(result.variables.ws[i] - start.ws)))
    assert 0.5 < moved <= 2 * 4.0 * (1 + 1e-5)


def test_config_errors_name_the_problem():
  with pytest.raises(ValueError, match="one value per round"):
    ilo.ILOConfig(steps=(5, 5), learning_rates=(0.1, 0.1, 0.1))
  with pytest.raises(ValueError, match="positive step"):
    ilo.ILOConfig(steps=(5, 0))
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
  config = ilo.ILOConfig(steps=(6, 6), lambda_lpips=0.0)
  frozen, targets = _prepare(prior, _targets(prior, 2))
  keys = jax.random.split(jax.random.PRNGKey(7), 2)

  def state_after_a_step_of_round_1(g):
    variables, best_image, best_value, run_key = ilo.start_search(
        g, frozen, keys[0])
    target = jax.tree.map(lambda a: a[0], targets)
    state = ilo.start_round(g, config, 0, variables, best_image, best_value)
    state, _ = ilo.round_step(g, config, _IDENTITY, 0, frozen, target,
                              run_key, state, 0)
    variables, best_image, best_value = ilo.end_round(g, config, 0, frozen,
                                                      state)
    state = ilo.start_round(g, config, 1, variables, best_image, best_value)
    return ilo.round_step(g, config, _IDENTITY, 1, frozen, target, run_key,
                          state, 1)[0]

  state = jax.eval_shape(lambda: state_after_a_step_of_round_1(layered16))
  assert state.trainable["x"].shape == layered16.feature_shape(0)
  floats = [(jax.tree_util.keystr(p), l.dtype) for p, l in
            jax.tree_util.tree_leaves_with_path(state)
            if jnp.issubdtype(l.dtype, jnp.floating)]
  assert floats and all(d == jnp.float32 for _, d in floats), floats

  start = ilo.initial_variables(layered, variables, keys[0])
  images = [jax.jit(g.synthesize_one)(variables, start.ws, start.noises)
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
