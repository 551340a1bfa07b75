"""``python -m weights_convert dists [SRC] OUT.npz``: DISTS's alpha and beta.

SRC is the released ``weights.pt`` (12 KB, MIT licence) of the
``dists-pytorch`` 0.1 wheel; by default the installed wheel's copy. It is
read with `weights_convert.torch_format` (no PyTorch, nothing executed) and
written as the ``.npz`` `gjscc_jax.losses.dists_weights.load_dists_params`
reads, e.g. for machines without the wheel.
"""

import argparse
import pickle
import sys

from gjscc_jax import errors
from gjscc_jax.losses import dists_weights


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m weights_convert dists',
      description='Convert DISTS alpha/beta (dists-pytorch weights.pt) to an '
      '.npz, without PyTorch.')
  parser.add_argument('paths', nargs='+', metavar='[SRC] OUT',
                      help='weights.pt (default: the installed dists-pytorch '
                      'wheel\'s) and the output .npz')
  parser.add_argument('--verbose', action='store_true',
                      help='show the traceback of an error')
  args = parser.parse_args(argv)
  if len(args.paths) > 2:
    parser.error('expects [SRC] OUT.npz')
  *src, out = args.paths
  try:
    src = src[0] if src else dists_weights.wheel_weights_path()
    alpha_beta = dists_weights.read_wheel_file(src)
  except (ValueError, OSError, pickle.UnpicklingError) as e:
    if errors.verbose(argv):
      raise
    print(f'Error: {errors.one_line(e)} (--verbose shows the traceback)',
          file=sys.stderr)
    return 1
  dists_weights.save_alpha_beta(out, alpha_beta)
  print(f'wrote {out}: DISTS alpha/beta ({alpha_beta["alpha"].size} each) '
        f'from {src}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
