"""What the trainer and the evaluator need of a transmission scheme.

A scheme is an end-to-end transmitter + channel + receiver with trainable
parameters. The trainer (`gjscc_jax.train.loop`), the evaluator
(`gjscc_jax.evaluation`) and InverseJSCC's forward operator use only the
fields of `Scheme`, so every scheme plugs into all of them:

* `init(key, images) -> params`;
* `reconstruct(params, images, snr_db, key) -> images`: the whole chain on
  a batch, images in the project's [-1, 1] convention, one SNR per image;
* `make_optimizer(total_steps) -> (tx, schedule)`.

The builders live beside this file (`deepjscc.py`, `generative.py`); the
name -> builder table is `registry.py`.
"""

import dataclasses
from typing import Any, Callable

import jax.numpy as jnp

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(config):
  """The compute dtype named by `config.dtype` ('float32' or 'bfloat16')."""
  name = config.get("dtype", "float32")
  if name not in _DTYPES:
    raise ValueError(f"config.dtype={name!r} must be one of {sorted(_DTYPES)}.")
  return _DTYPES[name]


def remat_enabled(config) -> bool:
  """`config.remat`: recompute activations in the backward pass (default
  False; the variables do not depend on it)."""
  value = config.get("remat", False)
  if not isinstance(value, bool):
    raise ValueError(f"config.remat={value!r} must be true or false.")
  return value


def channel_ratio(link, resolution, latent_channels, downsampling) -> float:
  """`rho` of a scheme over `link`: complex channel uses per image (with
  OFDM's pilots, guards, padding and prefixes, `Channel.channel_uses`)
  over `3 R^2`; `C / (6 d^2)` for the flat channels."""
  side = resolution // downsampling
  k = side * side * latent_channels // 2
  return link.channel_uses(k) / (3 * resolution * resolution)


@dataclasses.dataclass(frozen=True)
class Scheme:
  """A trainable transmission scheme (see the module docstring)."""
  name: str
  model: Any
  init: Callable
  reconstruct: Callable
  make_optimizer: Callable
  #: Compute dtype of the forward pass (parameters are kept in float32).
  dtype: Any = jnp.float32
  #: Complex channel uses per image divided by pixels x 3, for reports.
  bandwidth_ratio: float = float("nan")
  #: Optional `params -> params`, applied on the host to the freshly
  #: initialised (sharded) params of a new run, before the optimiser state
  #: is created; not applied when resuming. E.g. grafting converted
  #: pretrained weights.
  load_pretrained: Callable | None = None
  #: Optional `(params, images, reconstruction, key, step) -> (value, aux)`
  #: added to the training objective inside the gradient, e.g. an
  #: adversarial term with a discriminator whose parameters live in `params`.
  extra_loss: Callable | None = None
