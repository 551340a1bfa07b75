"""Command-line selection of configs by bare name: `--config=NAME[:ARG]`.

Every entry point in `experiments/` takes `--config=deepjscc_ffhq:bcr=1/192`:
a bare NAME resolves to `experiments/configs/NAME.py` and ARG is passed to its
`get_config(arg)`. Paths (`--config=path/to/file.py:arg`) work as usual, and
`--config.key=value` overrides any field, as `ml_collections.config_flags`
provides.

`run(main)` is `absl.app.run` for the entry points, with a quiet console:
absl logging (the library's and orbax's) at WARNING unless absl's own
`--verbosity` flag is given (`--verbosity=0` shows INFO, `--verbosity=1`
DEBUG too), so a run prints its progress bars, warnings and the final
summary. A user's mistake (a bad
config argument, a missing checkpoint, weights or dataset) prints its
one-line cause and fix on stderr and exits with status 1, without a Python
traceback; `--verbose` (or `GJSCC_VERBOSE=1`) shows the traceback. A job
stopped by SIGTERM/SIGINT after saving its work (`gjscc_jax.preemption`)
prints what it saved and exits with status 75.
"""

import os
import re

from absl import app
from absl import flags
from absl import logging as absl_logging

from gjscc_jax import errors

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
_CONFIG_FLAG = re.compile(r"^--?config=(?P<value>.*)$")


def available_configs():
  """Names of the configs in `experiments/configs/`."""
  return sorted(
      name[:-3] for name in os.listdir(CONFIG_DIR)
      if name.endswith(".py") and not name.startswith(("_", "common")))


def resolve_config_value(value):
  """Turns `NAME[:ARG]` into `/abs/path/NAME.py[:ARG]`; paths pass through."""
  name, sep, arg = value.partition(":")
  if name.endswith(".py") or os.sep in name:
    return value
  path = os.path.join(CONFIG_DIR, name + ".py")
  if not os.path.exists(path):
    raise ValueError(
        f"Unknown config {name!r}: there is no experiments/configs/{name}.py. "
        f"Available configs: {', '.join(available_configs())}.")
  return path + sep + arg


_VERBOSE = flags.DEFINE_bool(
    "verbose", False, "Show the Python traceback of errors (also "
    "GJSCC_VERBOSE=1); by default an error prints its one-line cause and fix.")

#: Exceptions that report a user's mistake (their message names the fix).
USER_ERRORS = errors.USER_ERRORS
one_line = errors.one_line
fail = errors.fail


def verbose(argv=None):
  """Whether tracebacks are wanted (`--verbose` or `GJSCC_VERBOSE=1`)."""
  return errors.verbose(argv)


#: Flags renamed to the glossary's names (docs/glossary.md): old -> new.
#: An old name still works where the entry point defines the new one, with a
#: one-line warning.
RENAMED_FLAGS = {"workdir": "output_dir", "out": "output_dir", "bcr": "rho",
                 "snrs": "snrs_db"}
_FLAG_NAME = re.compile(r"^--?(?P<name>[A-Za-z_][\w]*)(?P<rest>=.*)?$")


def rename_flags(argv, defined):
  """`argv` with each old flag name (`RENAMED_FLAGS`) replaced by its new
  one when `defined` (the entry point's flag names) holds the new name and
  not the old; warns once per renamed flag."""
  out = []
  for arg in argv:
    match = _FLAG_NAME.match(arg)
    old = match and match["name"]
    new = RENAMED_FLAGS.get(old)
    if new and new in defined and old not in defined:
      absl_logging.warning("--%s is deprecated; use --%s (docs/glossary.md).",
                           old, new)
      arg = f"--{new}{match['rest'] or ''}"
    out.append(arg)
  return out


def parse_flags(argv):
  """absl `flags_parser` that resolves bare config names and renamed flags
  (`rename_flags`), then parses flags."""
  argv = rename_flags(argv, flags.FLAGS)
  try:
    for i, arg in enumerate(argv):
      match = _CONFIG_FLAG.match(arg)
      if match:
        argv[i] = "--config=" + resolve_config_value(match.group("value"))
      elif arg in ("--config", "-config") and i + 1 < len(argv):
        argv[i + 1] = resolve_config_value(argv[i + 1])
    rest = flags.FLAGS(argv)
    if not flags.FLAGS["verbosity"].present:  # A quiet console by default.
      flags.FLAGS.verbosity = absl_logging.WARNING
    return rest
  except (flags.Error, ValueError) as e:
    if verbose(argv):
      raise
    fail(f"{one_line(e)} (pass --help for help)")


def run(main):
  """`absl.app.run(main)` with a quiet console and one-line errors (see the
  module docstring)."""

  app.run(errors.guarded(main), flags_parser=parse_flags)
