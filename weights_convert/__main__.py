"""Command line: ``python -m weights_convert {stylegan2,lpips,inception,dists} ...``.

Errors print one line, `Error: <cause and fix>`, and exit with status 1
(`gjscc_jax.errors`; --verbose or GJSCC_VERBOSE=1 for the traceback).

Each subcommand lives in its own module with a ``main(argv)`` function, which
is imported only when that subcommand runs (neither imports torch)::

  python -m weights_convert stylegan2 stylegan2-ffhq-256x256.pkl ffhq256/
  python -m weights_convert lpips --help
"""

import importlib
import sys

from gjscc_jax import errors

SUBCOMMANDS = {
    'stylegan2': ('weights_convert.stylegan2',
                  'official StyleGAN2 pickle / rosinality .pt -> Flax params'),
    'lpips': ('weights_convert.lpips', 'LPIPS weights -> Flax params'),
    'inception': ('weights_convert.inception',
                  'pytorch-fid FID Inception-v3 .pth -> Flax params'),
    'dists': ('weights_convert.dists', 'DISTS alpha/beta weights.pt -> .npz'),
}


def _usage() -> str:
  lines = ['usage: python -m weights_convert SUBCOMMAND [args...]', '',
           'subcommands:']
  lines += [f'  {name:<10} {help_}' for name, (_, help_) in SUBCOMMANDS.items()]
  lines += ['', 'Details: python -m weights_convert SUBCOMMAND --help']
  return '\n'.join(lines)


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  if not argv or argv[0] in ('-h', '--help'):
    print(_usage())
    return 0 if argv else 2
  name, rest = argv[0], argv[1:]
  if name not in SUBCOMMANDS:
    print(f'unknown subcommand {name!r}.\n\n{_usage()}', file=sys.stderr)
    return 2
  module = importlib.import_module(SUBCOMMANDS[name][0])
  # Errors the subcommand does not report itself take the one-line path too.
  return errors.guarded(module.main, extra_errors=(OSError,))(rest) or 0


if __name__ == '__main__':
  sys.exit(main())
