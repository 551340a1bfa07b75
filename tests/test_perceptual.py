"""The MSE + lambda * LPIPS objective: closed forms, freezing, targets, errors."""

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from gjscc_jax.losses import lpips as lpips_lib
from gjscc_jax.losses import perceptual_loss
from gjscc_jax.losses import PerceptualLoss
from gjscc_jax.losses import PerceptualTarget

SHAPE = (2, 32, 32, 3)


@functools.cache
def _params(net='alex'):
  return PerceptualLoss(1.0, net).load_params()


def _pair(seed=0, shape=SHAPE):
  kx, ky = jax.random.split(jax.random.PRNGKey(seed))
  x = jax.random.uniform(kx, shape, minval=-1.0, maxval=1.0)
  y = jnp.clip(x + 0.3 * jax.random.normal(ky, shape), -1.0, 1.0)
  return x, y


def test_value_is_mse_plus_lambda_lpips():
  x, y = _pair()
  loss = PerceptualLoss(lambda_lpips=0.25, net='alex')
  value, aux = jax.jit(loss)(_params(), x, y)
  # MSE convention: mean over all pixels and channels of the [-1, 1] images.
  mse_np = np.mean((np.asarray(x, np.float64) - np.asarray(y)) ** 2)
  lpips_ref = jax.jit(lpips_lib.LPIPS('alex').apply)({'params': _params()}, x,
                                                    y)
  np.testing.assert_allclose(aux['mse'], mse_np, rtol=1e-6)
  np.testing.assert_allclose(aux['lpips'], np.mean(lpips_ref), rtol=1e-6)
  np.testing.assert_allclose(value, mse_np + 0.25 * np.mean(lpips_ref),
                             rtol=1e-6)
  # The [-1, 1] MSE is 4x the MSE of the same images in [0, 1].
  unit = lambda a: (np.asarray(a) + 1) / 2  # noqa: E731
  np.testing.assert_allclose(aux['mse'], 4 * np.mean((unit(x) - unit(y)) ** 2),
                             rtol=1e-5)
  per_image = jax.jit(loss.per_image)(_params(), x, y)
  np.testing.assert_allclose(
      per_image['loss'], per_image['mse'] + 0.25 * per_image['lpips'],
      rtol=1e-6)
  functional, _ = jax.jit(functools.partial(
      perceptual_loss, lambda_lpips=0.25, net='alex'))(_params(), x, y)
  np.testing.assert_allclose(functional, value, rtol=1e-6)


def test_lambda_zero_never_touches_lpips():
  x, y = _pair()
  loss = PerceptualLoss(lambda_lpips=0.0)
  value, aux = loss(None, x, y)  # no LPIPS parameters needed
  assert set(aux) == {'mse'}
  np.testing.assert_allclose(value, aux['mse'])
  jaxpr = str(jax.make_jaxpr(lambda x, y: loss(None, x, y))(x, y))
  assert 'conv_general_dilated' not in jaxpr
  target = loss.prepare_target(None, y)
  assert target.features is None
  np.testing.assert_allclose(loss(None, x, target)[0], value)


def test_lambda_zero_takes_images_too_small_for_lpips():
  """MSE alone has no minimum size; LPIPS-alex needs 31x31."""
  x, y = (jax.random.uniform(jax.random.PRNGKey(k), (2, 16, 16, 3),
                             minval=-1, maxval=1) for k in (0, 1))
  value, _ = PerceptualLoss(lambda_lpips=0.0, net='alex')(None, x, y)
  np.testing.assert_allclose(value, jnp.mean(jnp.square(x - y)), rtol=1e-6)
  PerceptualLoss(lambda_lpips=0.0, net='alex').prepare_target(None, y)
  with pytest.raises(ValueError, match='too small for LPIPS-alex'):
    PerceptualLoss(lambda_lpips=0.1, net='alex')(None, x, y)


def test_missing_params_with_positive_lambda_is_a_clear_error():
  x, y = _pair()
  with pytest.raises(ValueError, match='load_params'):
    PerceptualLoss(0.1)(None, x, y)


def test_prepared_target_gives_the_same_value_and_gradient():
  x, y = _pair(seed=1)
  loss = PerceptualLoss(lambda_lpips=0.5, net='alex')
  grad_fn = jax.jit(jax.value_and_grad(
      lambda x, t, p: loss(p, x, t)[0]))
  target = jax.jit(loss.prepare_target)(_params(), y)
  assert isinstance(target, PerceptualTarget)
  v1, g1 = grad_fn(x, y, _params())
  v2, g2 = grad_fn(x, target, _params())
  np.testing.assert_allclose(v2, v1, rtol=1e-6)
  np.testing.assert_allclose(g2, g1, rtol=1e-5, atol=1e-9)
  np.testing.assert_allclose(loss.lpips(_params(), x, target),
                             loss.lpips(_params(), x, y), rtol=1e-6)


def test_gradients_never_reach_the_lpips_weights():
  x, y = _pair(seed=2)
  loss = PerceptualLoss(lambda_lpips=1.0, net='alex')
  grads = jax.jit(jax.grad(lambda p: loss(p, x, y)[0]))(_params())
  assert all(not np.any(g) for g in jax.tree.leaves(grads))


class _TinyDecoder(nn.Module):
  @nn.compact
  def __call__(self, x):
    return jnp.tanh(nn.Conv(3, (3, 3))(x))


def test_training_step_leaves_lpips_weights_unchanged_and_untracked():
  x, target = _pair(seed=3)
  model = _TinyDecoder()
  params = model.init(jax.random.PRNGKey(0), x)
  tx = optax.adam(1e-2)
  opt_state = tx.init(params)
  loss = PerceptualLoss(lambda_lpips=0.1, net='alex')
  lpips_params = _params()
  before = jax.tree.map(np.array, lpips_params)

  @jax.jit
  def step(params, opt_state, lpips_params):
    def objective(p):
      return loss(lpips_params, model.apply(p, x), target)
    (value, aux), grads = jax.value_and_grad(objective, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value, aux

  # LPIPS weights are arguments of the step, not 10 MB of baked-in constants.
  closed = jax.make_jaxpr(step)(params, opt_state, lpips_params)
  assert sum(np.size(c) for c in closed.consts) < 1000
  values = []
  for _ in range(3):
    params, opt_state, value, aux = step(params, opt_state, lpips_params)
    values.append(float(value))
  assert values[-1] < values[0] and set(aux) == {'mse', 'lpips'}
  jax.tree.map(np.testing.assert_array_equal, lpips_params, before)
  n_opt = sum(np.size(a) for a in jax.tree.leaves(opt_state))
  n_model = sum(np.size(a) for a in jax.tree.leaves(params))
  assert n_opt <= 2 * n_model + 10  # Adam moments of the model only


def test_bfloat16_backbone_accumulates_in_float32():
  x, y = _pair(seed=4)
  f32 = PerceptualLoss(1.0, 'alex')
  bf16 = PerceptualLoss(1.0, 'alex', dtype=jnp.bfloat16)
  v32, a32 = jax.jit(f32)(_params(), x, y)
  v16, a16 = jax.jit(bf16)(_params(), x, y)
  assert v16.dtype == jnp.float32 and a16['lpips'].dtype == jnp.float32
  np.testing.assert_allclose(a16['lpips'], a32['lpips'], rtol=0.03)
  np.testing.assert_allclose(a16['mse'], a32['mse'], rtol=0)


def test_from_config():
  config = ml_collections.ConfigDict(dict(lambda_lpips=0.1, lpips_net='alex'))
  loss = PerceptualLoss.from_config(config, dtype=jnp.bfloat16)
  assert loss == PerceptualLoss(0.1, 'alex', jnp.bfloat16)
  minimal = ml_collections.ConfigDict(dict(lambda_lpips=0))
  assert PerceptualLoss.from_config(minimal) == PerceptualLoss(0.0, 'vgg')


@pytest.mark.parametrize('kwargs, match', [
    (dict(lambda_lpips=-0.1), 'lambda_lpips'),
    (dict(lambda_lpips=float('nan')), 'lambda_lpips'),
    (dict(lambda_lpips=0.1, net='squeeze'), 'must be one of'),
    (dict(lambda_lpips=0.1, dtype=jnp.int32), 'dtype'),
])
def test_bad_configuration_is_rejected(kwargs, match):
  with pytest.raises(ValueError, match=match):
    PerceptualLoss(**kwargs)


def test_images_in_0_255_raise_eagerly_and_give_nan_and_a_log_under_jit(
    caplog):
  x, y = _pair(seed=5)
  loss = PerceptualLoss(lambda_lpips=0.0)
  wrong = (x + 1) * 127.5
  with pytest.raises(ValueError, match=r'\[-1, 1\].*from_uint8'):
    loss(None, wrong, y)
  with pytest.raises(ValueError, match=r'got values in \[.*, 25\d'):
    loss.prepare_target(None, wrong)
  with caplog.at_level('ERROR'):
    value, aux = jax.jit(loss.__call__)(None, x, wrong)
    jax.effects_barrier()
  assert np.isnan(value) and np.isnan(aux['mse'])
  assert re.search(r'got values in \[.*, 25\d.*from_uint8', caplog.text)
  # Under vmap only the bad image turns NaN, and only it is reported.
  caplog.clear()
  per_image = jax.jit(jax.vmap(lambda a, b: loss(None, a[None], b[None])[0]))
  with caplog.at_level('ERROR'):
    values = per_image(x.at[1].multiply(200.0), y)
    jax.effects_barrier()
  assert np.isfinite(values[0]) and np.isnan(values[1])
  assert caplog.text.count('must be floats in [-1, 1]') == 1
  # A bad batch contributes no gradient (and its NaN loss makes the trainer
  # skip the step).
  grad = jax.jit(jax.grad(lambda a: loss(None, a, y)[0]))(wrong)
  np.testing.assert_array_equal(grad, np.zeros_like(grad))
  # Slightly out-of-range values (unclamped generators) pass the check;
  # NaNs propagate to the loss by themselves.
  assert np.isfinite(loss(None, x * 1.3, y)[0])
  assert np.isnan(loss(None, x.at[0, 0, 0, 0].set(jnp.nan), y)[0])
  unchecked = PerceptualLoss(lambda_lpips=0.0, check_inputs=False)
  assert np.isfinite(unchecked(None, wrong, y)[0])


def test_shape_mismatch_is_rejected():
  x, y = _pair()
  with pytest.raises(ValueError, match='same shape'):
    PerceptualLoss(0.0)(None, x, y[:, :16])
  with pytest.raises(TypeError, match='from_uint8'):
    PerceptualLoss(0.0)(None, x.astype(jnp.uint8), y.astype(jnp.uint8))


def test_batch_sharded_over_devices_matches_single_device():
  """Data-parallel use (8 fake CPU devices): same values, check included."""
  devices = np.array(jax.devices())
  if devices.size < 2:
    pytest.skip('needs several devices (tests/conftest.py sets 8 on CPU)')
  mesh = jax.sharding.Mesh(devices, ('data',))
  batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  x, y = _pair(seed=6, shape=(devices.size, 32, 32, 3))
  loss = PerceptualLoss(lambda_lpips=0.5, net='alex')
  expected = loss.per_image(_params(), x, y)
  sharded = jax.jit(loss.per_image)(_params(), jax.device_put(x, batch),
                                    jax.device_put(y, batch))
  for key in expected:
    np.testing.assert_allclose(sharded[key], expected[key], rtol=1e-5)
  bad = jax.jit(loss.per_image)(_params(), jax.device_put(x * 100, batch),
                                jax.device_put(y, batch))
  assert all(np.all(np.isnan(v)) for v in bad.values())
  jax.effects_barrier()  # no failed effect left behind
