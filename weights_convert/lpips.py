"""``python -m weights_convert lpips``: official PyTorch LPIPS weights -> .npz.

LPIPS needs two PyTorch files:

* the ImageNet backbone, as torchvision saves it: ``vgg16-397923af.pth``
  (``torchvision.models.vgg16(pretrained=True)``, keys ``features.<i>.weight``
  / ``.bias``) or ``alexnet-owt-7be5be79.pth`` (``alexnet``); the state dict of
  an official ``lpips.LPIPS`` module (keys ``net.slice<k>.<i>.weight``, plus
  ``lin<k>.model.1.weight``) works too;
* the LPIPS v0.1 linear layers, ``lpips/weights/v0.1/{vgg,alex}.pth`` from the
  ``lpips`` package (keys ``lin<k>.model.1.weight``, shape (1, C, 1, 1)). If
  ``--lin`` is not given and the ``lpips`` package is installed, its file is
  used.

Both are read with `weights_convert.torch_format` (no PyTorch, nothing from
the files is executed). Convolution kernels go from PyTorch's OIHW to Flax's
HWIO; the result is written with `gjscc_jax.losses.lpips_weights`
(``load_lpips_params(net, path)`` / ``PerceptualLoss.load_params(path)`` read
it). Example::

  python -m weights_convert lpips --net vgg \\
      --backbone ~/.cache/torch/hub/checkpoints/vgg16-397923af.pth \\
      --out lpips_vgg.npz
"""

import argparse
import importlib.util
import os
import pickle
import re
import sys
from typing import Any, Mapping

import numpy as np

from gjscc_jax.losses import lpips as lpips_lib
from gjscc_jax.losses import lpips_weights
from gjscc_jax import errors
from weights_convert import torch_format

#: Index of every conv layer in torchvision's ``features`` Sequential.
TORCHVISION_CONV_INDICES = {
    'vgg': (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
    'alex': (0, 3, 6, 8, 10),
}
_LPIPS_SLICE_KEY = re.compile(r'^net\.slice\d+\.(\d+)\.(weight|bias)$')
_LIN_KEY = 'lin{}.model.1.weight'


def _state_dict(obj: Any, path: str) -> Mapping[str, np.ndarray]:
  """The tensor dict of a loaded file (also under a 'state_dict' entry)."""
  if isinstance(obj, Mapping) and isinstance(obj.get('state_dict'), Mapping):
    obj = obj['state_dict']
  if not isinstance(obj, Mapping):
    raise ValueError(f'{path} does not hold a state dict (found '
                     f'{type(obj).__name__}).')
  return {k.removeprefix('module.'): v for k, v in obj.items()}


def backbone_from_state_dict(state: Mapping[str, np.ndarray], net: str,
                             source: str = 'backbone') -> dict[str, Any]:
  """Our ``backbone`` tree from a torchvision or official-LPIPS state dict."""
  features = {}
  for key, value in state.items():
    match = _LPIPS_SLICE_KEY.match(key)
    if match:
      key = f'features.{match.group(1)}.{match.group(2)}'
    features[key] = value
  backbone = {}
  layers = lpips_lib.backbone_layers(net)
  for index, layer in zip(TORCHVISION_CONV_INDICES[net], layers, strict=True):
    name, k, cin, cout = (layer.name, layer.kernel, layer.in_channels,
                          layer.out_channels)
    try:
      weight = np.asarray(features[f'features.{index}.weight'])
      bias = np.asarray(features[f'features.{index}.bias'])
    except KeyError:
      raise ValueError(
          f"{source} has no 'features.{index}.weight/bias' (nor "
          f"'net.slice*.{index}.*'): it is not a torchvision "
          f"{'vgg16' if net == 'vgg' else 'alexnet'} or LPIPS-{net} state "
          'dict.') from None
    if weight.shape != (cout, cin, k, k):
      raise ValueError(
          f'{source}: features.{index}.weight has shape {weight.shape}; '
          f'LPIPS-{net} layer {name} needs {(cout, cin, k, k)}. Is it the '
          'other backbone?')
    backbone[name] = {'kernel': weight.transpose(2, 3, 1, 0),  # OIHW -> HWIO
                      'bias': bias}
  return backbone


def lins_from_state_dict(state: Mapping[str, np.ndarray], net: str,
                         source: str = 'lin') -> dict[str, np.ndarray]:
  """``{'lin0': (C0,), ...}`` from an LPIPS v0.1 linear-layer state dict."""
  lins = {}
  for i, channels in enumerate(lpips_lib.tap_channels(net)):
    key = _LIN_KEY.format(i)
    if key not in state:
      raise ValueError(f"{source} has no '{key}': it is not an LPIPS linear-"
                       'layer file (lpips/weights/v0.1/<net>.pth).')
    weight = np.asarray(state[key])
    if weight.shape != (1, channels, 1, 1):
      raise ValueError(f'{source}: {key} has shape {weight.shape}; LPIPS-{net} '
                       f'needs {(1, channels, 1, 1)}. Is it the other net?')
    lins[f'lin{i}'] = weight.reshape(channels)
  return lins


def official_lin_path(net: str) -> str | None:
  """``lpips/weights/v0.1/<net>.pth`` of an installed ``lpips``, or None."""
  spec = importlib.util.find_spec('lpips')  # finds it without importing it
  if spec is None or not spec.submodule_search_locations:
    return None
  path = os.path.join(spec.submodule_search_locations[0], 'weights', 'v0.1',
                      f'{net}.pth')
  return path if os.path.exists(path) else None


def convert(net: str, backbone_path: str, lin_path: str | None = None
            ) -> dict[str, Any]:
  """Reads the PyTorch files and returns our LPIPS parameter tree."""
  lpips_lib.backbone_layers(net)
  backbone_state = _state_dict(torch_format.load_torch_file(backbone_path),
                               backbone_path)
  if lin_path is None and _LIN_KEY.format(0) in backbone_state:
    lin_state, lin_path = backbone_state, backbone_path  # a full LPIPS dict
  else:
    lin_path = lin_path or official_lin_path(net)
    if lin_path is None:
      raise ValueError('no LPIPS linear layers: pass --lin lpips/weights/v0.1/'
                       f'{net}.pth (from the lpips package).')
    lin_state = _state_dict(torch_format.load_torch_file(lin_path), lin_path)
  params = {'backbone': backbone_from_state_dict(backbone_state, net,
                                                 backbone_path)}
  params.update(lins_from_state_dict(lin_state, net, lin_path))
  return lpips_weights.check_params(params, net)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m weights_convert lpips',
      description='Convert official PyTorch LPIPS weights (torchvision '
      'backbone + lpips v0.1 linear layers) to a gjscc-jax .npz file.')
  parser.add_argument('--net', choices=sorted(lpips_lib.BACKBONES),
                      required=True)
  parser.add_argument('--backbone', required=True,
                      help='torchvision vgg16/alexnet .pth, or an LPIPS '
                      'module state dict')
  parser.add_argument('--lin', default=None,
                      help='lpips/weights/v0.1/<net>.pth (default: from the '
                      'installed lpips package)')
  parser.add_argument('--out', required=True, help='output .npz')
  parser.add_argument('--verbose', action='store_true',
                      help='show the traceback of an error')
  args = parser.parse_args(argv)
  try:
    params = convert(args.net, args.backbone, args.lin)
  except (ValueError, FileNotFoundError, pickle.UnpicklingError) as e:
    if errors.verbose(argv):
      raise
    print(f'Error: {errors.one_line(e)} (--verbose shows the traceback)',
          file=sys.stderr)
    return 1
  lpips_weights.save_lpips_params(args.out, params, args.net)
  n = sum(np.size(v['kernel']) + np.size(v['bias'])
          for v in params['backbone'].values())
  print(f'wrote {args.out}: LPIPS-{args.net}, {n:,} backbone parameters + '
        f'{len(params) - 1} linear layers')
  return 0


if __name__ == '__main__':
  sys.exit(main())
