"""The FID Inception-v3 against ``pytorch_fid`` 0.3.0's network.

``pytorch_fid.inception`` builds on torchvision's ``Inception3`` (the stem,
``BasicConv2d``, the InceptionB/D blocks it keeps, and the __init__ of the
A/C/E blocks whose ``forward`` it replaces). torchvision is not installed
here, so a test-side stand-in (`tests/_torchvision_inception.py`) provides
those classes,
written from torchvision's published architecture; everything FID-specific
(the patched blocks, resizing, normalisation, the block layout and the
pooling) is pytorch_fid's own code. Random weights are saved as the
official file is (a legacy-format ``torch.save`` of the state dict, with
the 1008-way ``fc`` and BN counters) and converted by
``weights_convert.inception``.
"""

import sys

import jax
import numpy as np
import pytest

from gjscc_jax.perception import inception as inception_lib
from gjscc_jax.perception import inception_weights
from weights_convert import inception as convert_lib

torch = pytest.importorskip('torch', reason='the PyTorch oracle needs torch')
F = torch.nn.functional
# pylint: disable=wrong-import-position
from tests import _torchvision_inception as standin  # noqa: E402


@pytest.fixture(scope='module')
def pytorch_fid_inception():
  stubbed = standin.install()
  try:
    from pytorch_fid import inception  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    pytest.skip(f'pytorch_fid not importable ({e}); install it with '
                '`pip install --no-deps pytorch-fid==0.3.0`')
  finally:
    if stubbed:
      del sys.modules['torchvision']
  return inception


def _random_state_dict(seed=0):
  """A state dict of the official file's layout with weights that keep the
  activations of a ReLU network O(1)."""
  gen = torch.Generator().manual_seed(seed)
  state = standin.Inception3(num_classes=1008,
                            aux_logits=False).state_dict()
  out = {}
  for key, value in state.items():
    shape = value.shape
    if key.endswith('conv.weight'):
      fan_in = shape[1] * shape[2] * shape[3]
      value = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
    elif key.endswith(('bn.weight', 'running_var')):
      value = 0.5 + torch.rand(shape, generator=gen)
    elif key.endswith(('bn.bias', 'running_mean')):
      value = 0.1 * torch.randn(shape, generator=gen)
    elif key.startswith('fc.'):
      value = 0.01 * torch.randn(shape, generator=gen)
    out[key] = value
  return out


@pytest.fixture(scope='module')
def one_torch_thread():
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


def test_features_equal_pytorch_fid(pytorch_fid_inception, tmp_path,
                                    monkeypatch, one_torch_thread):
  del one_torch_thread
  state = _random_state_dict()
  path = tmp_path / inception_weights.OFFICIAL_FILE
  torch.save(state, path, _use_new_zipfile_serialization=False)
  out_dir = tmp_path / 'converted'
  convert_lib.convert(str(path), str(out_dir))
  params = inception_weights.load_inception_params(str(out_dir))

  monkeypatch.setattr(pytorch_fid_inception, 'load_state_dict_from_url',
                      lambda url, progress=True: torch.load(path))
  official = pytorch_fid_inception.InceptionV3([3]).eval()

  rng = np.random.default_rng(0)  # Two 48x40 images: upsampled to 299.
  low = rng.uniform(0, 1, (2, 12, 10, 3))
  unit = np.repeat(np.repeat(low, 4, 1), 4, 2) + 0.05 * rng.normal(
      size=(2, 48, 40, 3))
  unit = np.clip(unit, 0, 1).astype(np.float32)
  with torch.no_grad():
    ref = official(torch.from_numpy(unit.transpose(0, 3, 1, 2).copy()))[0]
  ref = ref.numpy().reshape(2, -1)
  ours = jax.jit(inception_lib.FIDInceptionV3().apply)(
      {'params': params}, 2 * unit - 1)
  ours = np.asarray(ours)
  assert ours.shape == (2, inception_lib.FEATURES)
  assert np.std(ref) > 0.1  # Not a degenerate network.
  np.testing.assert_allclose(ours, ref, rtol=1e-5,
                             atol=1e-5 * np.abs(ref).max())
  rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
  assert rel < 1e-5, rel


def test_bilinear_resize_equals_torch_interpolate():
  rng = np.random.default_rng(3)
  for shape in ((1, 17, 23, 2), (1, 320, 301, 1)):  # up and down
    x = rng.normal(size=shape).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),
                        size=(299, 299), mode='bilinear', align_corners=False)
    got = np.asarray(inception_lib.resize_bilinear(x))
    np.testing.assert_allclose(got, ref.numpy().transpose(0, 2, 3, 1),
                               atol=1e-5)


def test_converter_refuses_foreign_files(tmp_path):
  bad = {'fc.weight': torch.zeros(3, 3), 'layer1.conv.weight':
         torch.zeros(1, 1, 1, 1)}
  path = tmp_path / 'other.pth'
  torch.save(bad, path)
  with pytest.raises(ValueError, match='do not match the architecture'):
    convert_lib.convert(str(path), str(tmp_path / 'out'))
  with pytest.raises(FileNotFoundError, match='weights_convert inception'):
    inception_weights.load_inception_params(str(tmp_path / 'nothing'))
