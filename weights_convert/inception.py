"""``python -m weights_convert inception SRC DIR``: the FID Inception-v3.

SRC is ``pt_inception-2015-12-05-6726825d.pth``, the PyTorch port of
TensorFlow's FID Inception that ``pytorch-fid`` uses (download it from
`gjscc_jax.perception.inception_weights.OFFICIAL_URL`). It is a state dict
of torchvision's ``Inception3`` layout: ``<module>.conv.weight`` (OIHW, no
bias) and ``<module>.bn.{weight,bias,running_mean,running_var}`` for every
``BasicConv2d``, plus the 1008-way ``fc`` classifier, which FID does not
use and which is dropped (as are ``num_batches_tracked`` counters and any
``AuxLogits``). The file is read with `weights_convert.torch_format`: no
PyTorch, and nothing from the file is executed (any pickle global outside
the allow-list is refused). DIR receives ``fid_inception.npz``
(`gjscc_jax.perception.inception_weights`) with the source's SHA-256.
"""

import argparse
import hashlib
import pickle
import sys
from typing import Any, Mapping

import numpy as np

from gjscc_jax import errors
from gjscc_jax.perception import inception_weights
from weights_convert import torch_format

_BN = {'weight': 'scale', 'bias': 'bias', 'running_mean': 'mean',
       'running_var': 'var'}
_IGNORED_PREFIXES = ('fc.', 'AuxLogits.')


def flat_params(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Our flat ``{'Mixed_5b/branch1x1/kernel': ...}`` from the state dict."""
  if isinstance(state, Mapping) and isinstance(state.get('state_dict'),
                                               Mapping):
    state = state['state_dict']
  if not isinstance(state, Mapping):
    raise ValueError(f'not a state dict (found {type(state).__name__}).')
  flat = {}
  for key, value in state.items():
    key = key.removeprefix('module.')
    if key.startswith(_IGNORED_PREFIXES) or key.endswith(
        'num_batches_tracked'):
      continue
    module, _, leaf = key.rpartition('.')
    module, _, layer = module.rpartition('.')
    name = module.replace('.', '/')
    value = np.asarray(value, np.float32)
    if layer == 'conv' and leaf == 'weight' and value.ndim == 4:
      flat[f'{name}/kernel'] = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    elif layer == 'bn' and leaf in _BN:
      flat[f'{name}/{_BN[leaf]}'] = value
    else:
      raise ValueError(f'unexpected tensor {key!r}: not the FID Inception-v3 '
                       f'({inception_weights.OFFICIAL_FILE}).')
  inception_weights.check_params(flat)
  return flat


def convert(src: str, directory: str) -> str:
  """Converts SRC into ``directory/fid_inception.npz``; returns its path."""
  with open(src, 'rb') as f:
    digest = hashlib.sha256(f.read()).hexdigest()
  flat = flat_params(torch_format.load_torch_file(src))
  return inception_weights.save_inception_params(directory, flat, digest)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m weights_convert inception',
      description='Convert pytorch-fid\'s FID Inception-v3 weights '
      f'({inception_weights.OFFICIAL_FILE}) to a gjscc-jax directory, '
      'without PyTorch and without executing anything from the file.')
  parser.add_argument('src', help=inception_weights.OFFICIAL_FILE)
  parser.add_argument('dir', help='output directory')
  parser.add_argument('--verbose', action='store_true',
                      help='show the traceback of an error')
  args = parser.parse_args(argv)
  try:
    path = convert(args.src, args.dir)
  except (ValueError, OSError, pickle.UnpicklingError) as e:
    if errors.verbose(argv):
      raise
    print(f'Error: {errors.one_line(e)} (--verbose shows the traceback)',
          file=sys.stderr)
    return 1
  n = sum(np.size(v) for v in np.load(path).values())
  print(f'wrote {path}: FID Inception-v3, {n:,} values')
  return 0


if __name__ == '__main__':
  sys.exit(main())
