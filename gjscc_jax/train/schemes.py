"""Transmission schemes the trainer and the evaluator know how to build.

A scheme is an end-to-end transmitter + channel + receiver with trainable
parameters. The trainer only needs three things from it, so every scheme
(DeepJSCC now, GenerativeJSCC later) plugs into the same trainer:

* `init(key, images) -> params`
* `reconstruct(params, images, snr_db, key) -> images` (the whole chain,
  images in the project's [-1, 1] convention, one SNR per image)
* `make_optimizer(total_steps) -> (tx, schedule)`

`build_scheme(config)` picks the scheme named by `config.scheme`.
"""

import dataclasses
from typing import Any, Callable

import jax.numpy as jnp

from gjscc_jax.train import optimizer as optimizer_lib

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(config):
  """The compute dtype named by `config.dtype` ('float32' or 'bfloat16')."""
  name = config.get("dtype", "float32")
  if name not in _DTYPES:
    raise ValueError(f"config.dtype={name!r} must be one of {sorted(_DTYPES)}.")
  return _DTYPES[name]


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


def _deepjscc(config):
  from gjscc_jax import channel as channel_lib
  from gjscc_jax.models.deepjscc import DeepJSCC

  m, ch = config.model, config.channel
  dtype = compute_dtype(config)
  model = DeepJSCC(
      arch=m.arch, num_filters=m.num_filters, latent_channels=m.latent_channels,
      snr_adaptive=m.snr_adaptive, downsampling=m.downsampling,
      channel=ch.kind, fading=ch.fading, equalization=ch.equalization,
      power=ch.power, dtype=dtype)
  res = config.data.resolution
  if res % m.downsampling:
    raise ValueError(
        f"data.resolution={res} must be divisible by model.downsampling="
        f"{m.downsampling}.")
  latent_shape = (res // m.downsampling, res // m.downsampling, m.latent_channels)
  rho = channel_lib.bandwidth_ratio((res, res, 3), latent_shape)

  def init(key, images):
    snr = jnp.zeros(images.shape[:1], jnp.float32)
    return model.init(key, images, snr, key)

  def reconstruct(params, images, snr_db, key):
    return model.apply(params, images, snr_db, key)

  def make_optimizer(total_steps):
    return optimizer_lib.make_optimizer(config.optimizer, total_steps)

  return Scheme("deepjscc", model, init, reconstruct, make_optimizer, dtype, rho)


_BUILDERS = {"deepjscc": _deepjscc}


def register_scheme(name, builder):
  """Adds a scheme builder `config -> Scheme` (used by later schemes)."""
  _BUILDERS[name] = builder


def build_scheme(config):
  """Builds the scheme named by `config.scheme`."""
  name = config.get("scheme", None)
  if name not in _BUILDERS:
    raise ValueError(
        f"config.scheme={name!r} is not a known scheme; choose one of "
        f"{sorted(_BUILDERS)}.")
  return _BUILDERS[name](config)


# Schemes defined outside this module register themselves on import.
from gjscc_jax import schemes_generative  # noqa: E402,F401  pylint: disable=g-import-not-at-top
