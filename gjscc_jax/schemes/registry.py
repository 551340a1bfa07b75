"""The schemes `config.scheme` can name, and `build_scheme`.

One explicit table: adding a scheme means writing its builder
(`config -> Scheme`) in a module of this package and adding one line here.
"""

from gjscc_jax.schemes import base
from gjscc_jax.schemes import deepjscc
from gjscc_jax.schemes import generative

#: `config.scheme` -> builder `config -> Scheme`.
BUILDERS = {
    "deepjscc": deepjscc.build,
    "generative": generative.build,
}


def build_scheme(config) -> base.Scheme:
  """Builds the scheme named by `config.scheme`.

  Raises:
    ValueError: listing the known schemes, for an unknown name.
  """
  name = config.get("scheme", None)
  if name not in BUILDERS:
    raise ValueError(
        f"config.scheme={name!r} is not a known scheme; choose one of "
        f"{sorted(BUILDERS)}.")
  return BUILDERS[name](config)
