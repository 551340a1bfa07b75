"""The 'deepjscc' scheme: `gjscc_jax.models.deepjscc.DeepJSCC` for the trainer.

`build(config)` maps `config.model`, `config.channel` and `config.data` onto
a `DeepJSCC` module and returns the `Scheme` the trainer and the evaluator
use: its variables are the trained pytree, and its optimiser is
`config.optimizer` (`gjscc_jax.schemes.optimizer`).
"""

import jax.numpy as jnp

from gjscc_jax import channel as channel_lib
from gjscc_jax.models.deepjscc import DeepJSCC
from gjscc_jax.schemes import base
from gjscc_jax.schemes import optimizer as optimizer_lib


def build(config) -> base.Scheme:
  """The DeepJSCC `Scheme` described by `config`.

  Raises:
    ValueError: naming the field, for an unknown model or channel option or
      a resolution the encoder cannot downsample.
  """
  m = config.model
  dtype = base.compute_dtype(config)
  link = channel_lib.from_config(config.channel)
  model = DeepJSCC(
      arch=m.arch, num_filters=m.num_filters, latent_channels=m.latent_channels,
      snr_adaptive=m.snr_adaptive, downsampling=m.downsampling,
      channel=link, dtype=dtype, remat=base.remat_enabled(config))
  res = config.data.resolution
  if res % m.downsampling:
    raise ValueError(
        f"data.resolution={res} must be divisible by model.downsampling="
        f"{m.downsampling}.")

  def init(key, images):
    snr = jnp.zeros(images.shape[:1], jnp.float32)
    return model.init(key, images, snr, key)

  def reconstruct(params, images, snr_db, key):
    return model.apply(params, images, snr_db, key)

  def make_optimizer(total_steps):
    return optimizer_lib.make_optimizer(config.optimizer, total_steps)

  return base.Scheme("deepjscc", model, init, reconstruct, make_optimizer,
                     dtype, base.channel_ratio(link, res, m.latent_channels,
                                               m.downsampling))
