"""Optional oracle: the official PyTorch `lpips` 0.1.4 with the same weights.

Needs torch and ``pip install --no-deps lpips==0.1.4``; skipped otherwise.
torchvision (which lpips imports only to build the backbone architectures) is
replaced by a stub that builds the torchvision ``vgg16``/``alexnet`` feature
layouts; ``pnet_rand=True`` keeps lpips from downloading, and the backbone
weights are then overwritten with ours. lpips loads its own bundled v0.1
linear layers.
"""

import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gjscc_jax import pixels
from gjscc_jax.losses import lpips_weights
from gjscc_jax.losses import PerceptualLoss

torch = pytest.importorskip('torch', reason='the PyTorch oracle needs torch')


def _features(config):
  nn = torch.nn
  layers, cin = [], 3
  for v in config:
    if v == 'M':
      layers.append(nn.MaxPool2d(2, 2))
    elif v == 'A':
      layers.append(nn.MaxPool2d(3, 2))
    else:
      cout, k, stride, pad = v
      layers += [nn.Conv2d(cin, cout, k, stride, pad), nn.ReLU(inplace=True)]
      cin = cout
  return types.SimpleNamespace(features=nn.Sequential(*layers))


def _torchvision_stub():
  c3 = lambda c: (c, 3, 1, 1)  # noqa: E731
  vgg = [c3(64), c3(64), 'M', c3(128), c3(128), 'M', c3(256), c3(256),
         c3(256), 'M', c3(512), c3(512), c3(512), 'M', c3(512), c3(512),
         c3(512), 'M']
  alex = [(64, 11, 4, 2), 'A', (192, 5, 1, 2), 'A', c3(384), c3(256), c3(256),
          'A']
  module = types.ModuleType('torchvision')
  module.models = types.SimpleNamespace(
      vgg16=lambda pretrained=False, **_: _features(vgg),
      alexnet=lambda pretrained=False, **_: _features(alex))
  return module


@pytest.fixture(scope='module')
def official_lpips():
  if 'torchvision' not in sys.modules:
    try:
      import torchvision  # noqa: F401 pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
      sys.modules['torchvision'] = _torchvision_stub()
  try:
    import lpips  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    pytest.skip(f'official lpips not importable ({e}); install it with '
                '`pip install --no-deps lpips==0.1.4`')
  return lpips


def _official_model(lpips, net):
  model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
  params = lpips_weights.load_lpips_params(net)
  convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
  with torch.no_grad():
    for conv, layer in zip(convs, params['backbone'].values(), strict=True):
      conv.weight.copy_(torch.from_numpy(
          layer['kernel'].transpose(3, 2, 0, 1).copy()))
      conv.bias.copy_(torch.from_numpy(layer['bias']))
  return model


def _official_value_and_grad(model, x, y):
  """Official per-image LPIPS of NHWC arrays and its gradient in `x`."""
  tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
  ty = torch.from_numpy(y.transpose(0, 3, 1, 2).copy())
  ref = model(tx, ty).reshape(-1)
  (ref_grad,) = torch.autograd.grad(ref.sum(), tx)
  return ref.detach().numpy(), ref_grad.numpy().transpose(0, 2, 3, 1)


def _random_pairs(shape, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, shape).astype(np.float32)
  y = np.clip(x + 0.3 * rng.normal(size=x.shape), -1, 1).astype(np.float32)
  return x, y


def _inputs():
  x, y = _random_pairs((2, 48, 64, 3))
  gradient = np.linspace(0, 255, 64, dtype=np.float32)
  smooth = np.broadcast_to(gradient[None, None, :, None], (1, 48, 64, 3))
  smooth = np.asarray(pixels.from_uint8(smooth.astype(np.uint8)))
  return (np.concatenate([x, smooth]),
          np.concatenate([y, np.clip(smooth[:, ::-1] * 0.9, -1, 1)]))


@pytest.fixture
def one_torch_thread():
  """Idle OpenMP workers of torch spin and starve XLA's compiler (3 s -> 25 s
  here), so the oracle runs single-threaded."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


@pytest.mark.parametrize('net', ['vgg', 'alex'])
def test_value_and_gradient_equal_official_lpips(official_lpips, net,
                                                 one_torch_thread):
  del one_torch_thread
  x, y = _inputs()
  loss = PerceptualLoss(1.0, net)
  params = loss.load_params()

  @jax.jit  # params and y as arguments: as constants XLA would fold the convs
  def value_and_grad(params, a, b):
    per_image, vjp = jax.vjp(lambda a: loss.lpips(params, a, b), a)
    return per_image, vjp(jnp.ones_like(per_image))[0]
  # Direct convolutions (no Winograd under 'highest'): the third image is
  # constant down its columns, so max-pool windows hold exact ties, which
  # Winograd's different rounding would break differently from PyTorch
  # (another valid subgradient). Random images are compared below on the
  # default route, where VGG's conv2 (128 channels) takes Winograd.
  with jax.default_matmul_precision('highest'):
    per_image, grad = value_and_grad(params, x, y)
  fast_x, fast_y = _random_pairs((4, 64, 64, 3), seed=1)  # 256 conv2 tiles.
  fast_values, fast_grad = value_and_grad(params, fast_x, fast_y)
  if net == 'vgg':
    convs = lambda: value_and_grad.lower(params, fast_x, fast_y).as_text(
        dialect='hlo').count('convolution(')
    with jax.default_matmul_precision('highest'):
      direct = convs()
    assert convs() < direct  # Some convolutions took Winograd.

  model = _official_model(official_lpips, net)
  ref, ref_grad = _official_value_and_grad(model, x, y)
  np.testing.assert_allclose(per_image, ref, rtol=1e-5)
  rel = np.linalg.norm(grad - ref_grad) / np.linalg.norm(ref_grad)
  print(f'{net}: max rel. value error {np.max(np.abs(per_image / ref - 1)):.1e}'
        f', rel. L2 gradient error {rel:.1e}')
  assert rel < 1e-4, rel
  fast_ref, fast_ref_grad = _official_value_and_grad(model, fast_x, fast_y)
  np.testing.assert_allclose(fast_values, fast_ref, rtol=1e-5)
  fast_rel = (np.linalg.norm(fast_grad - fast_ref_grad) /
              np.linalg.norm(fast_ref_grad))
  assert fast_rel < 1e-4, fast_rel
