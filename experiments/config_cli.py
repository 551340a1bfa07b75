"""Command-line selection of configs by bare name: `--config=NAME[:ARG]`.

Every entry point in `experiments/` takes `--config=deepjscc_ffhq:bcr=1/192`:
a bare NAME resolves to `experiments/configs/NAME.py` and ARG is passed to its
`get_config(arg)`. Paths (`--config=path/to/file.py:arg`) work as usual, and
`--config.key=value` overrides any field, as `ml_collections.config_flags`
provides. Use `app.run(main, flags_parser=parse_flags)`.
"""

import os
import re

from absl import flags

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


def parse_flags(argv):
  """absl `flags_parser` that resolves bare config names, then parses flags."""
  argv = list(argv)
  for i, arg in enumerate(argv):
    match = _CONFIG_FLAG.match(arg)
    if match:
      argv[i] = "--config=" + resolve_config_value(match.group("value"))
    elif arg in ("--config", "-config") and i + 1 < len(argv):
      argv[i + 1] = resolve_config_value(argv[i + 1])
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    raise SystemExit(f"FATAL Flags parsing error: {e}\nPass --help for help.")
