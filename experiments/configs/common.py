"""Helpers shared by the config files: parsing `get_config(arg)` strings."""

import ml_collections


def parse_arg(arg, **defaults):
  """Parses a config argument such as `"demo,bcr=1/192"` against defaults.

  Tokens are separated by commas. `key=value` sets a key; a bare `key` sets a
  boolean key to True. Values take the type of their default (bool accepts
  true/false/1/0). Keys without a default are an error, so a typo in
  `--config=name:arg` fails loudly instead of being ignored.

  Args:
    arg: The string after the colon in `--config=NAME:ARG`, or None.
    **defaults: Every accepted key with its default value.

  Returns:
    A ConfigDict with one entry per default.
  """
  values = dict(defaults)
  for token in filter(None, (t.strip() for t in (arg or "").split(","))):
    key, sep, raw = token.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ValueError(
          f"Unknown config argument {key!r} in {arg!r}; valid arguments are "
          f"{', '.join(sorted(defaults))}.")
    default = defaults[key]
    if not sep:
      if not isinstance(default, bool):
        raise ValueError(f"Config argument {key!r} needs a value: {key}=...")
      values[key] = True
    elif isinstance(default, bool):
      if raw.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"Config argument {key}={raw!r} must be true or false.")
      values[key] = raw.lower() in ("true", "1")
    elif default is None:
      values[key] = raw
    else:
      try:
        values[key] = type(default)(raw)
      except ValueError as e:
        raise ValueError(
            f"Config argument {key}={raw!r} is not a valid "
            f"{type(default).__name__}.") from e
  return ml_collections.ConfigDict(values)
