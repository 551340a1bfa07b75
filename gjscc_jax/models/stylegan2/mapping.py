"""StyleGAN2 mapping network z -> W+, with truncation.

``z`` is normalised by its second moment, passed through ``num_layers``
equalised-lr dense layers (lr multiplier 0.01, lrelu * sqrt 2), broadcast to
``num_ws`` copies and optionally truncated towards the tracked mean ``w_avg``
(a buffer in the ``'buffers'`` collection, as in the official code).
"""

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from gjscc_jax.models.stylegan2 import layers


def normalize_2nd_moment(x, axis=-1, eps=layers.EPSILON):
  """``x * rsqrt(mean(x^2) + eps)`` along `axis`."""
  return x * lax.rsqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=True) + eps)


def truncate(ws, w_avg, psi=1.0, cutoff=None):
  """The truncation trick: ``w_avg + psi * (w - w_avg)`` on the first ws.

  Args:
    ws: (B, num_ws, w_dim) latents.
    w_avg: (w_dim,) mean latent.
    psi: truncation strength; 1 leaves `ws` unchanged (bit-exactly when psi
      is a Python number), 0 collapses to `w_avg`. May be traced.
    cutoff: truncate only ``ws[:, :cutoff]`` (None: all).

  Returns:
    The truncated ws.
  """
  if isinstance(psi, (int, float)) and psi == 1:
    return ws
  truncated = w_avg + psi * (ws - w_avg)
  if cutoff is None:
    return truncated
  keep = jnp.arange(ws.shape[1])[None, :, None] < cutoff
  return jnp.where(keep, truncated, ws)


class MappingNetwork(nn.Module):
  """z (B, z_dim) -> ws (B, num_ws, w_dim).

  Attributes:
    z_dim: input latent size.
    w_dim: intermediate latent size.
    num_ws: number of copies to broadcast to.
    num_layers: dense layers (8 in the FFHQ configs, 2 in ada's 'auto').
    lr_multiplier: equalised-lr multiplier of the dense layers.
  """
  z_dim: int = 512
  w_dim: int = 512
  num_ws: int = 18
  num_layers: int = 8
  lr_multiplier: float = 0.01

  @nn.compact
  def __call__(self, z, *, truncation_psi=1.0, truncation_cutoff=None):
    """Maps z to W+.

    Args:
      z: (B, z_dim) latents.
      truncation_psi: see `truncate`.
      truncation_cutoff: see `truncate`.

    Returns:
      (B, num_ws, w_dim) float32 ws.
    """
    if z.ndim != 2 or z.shape[1] != self.z_dim:
      raise ValueError(f'z must have shape (B, {self.z_dim}), got {z.shape}')
    x = normalize_2nd_moment(jnp.asarray(z, jnp.float32))
    for i in range(self.num_layers):
      x = layers.FullyConnected(self.w_dim, activation='lrelu',
                                lr_multiplier=self.lr_multiplier,
                                name=f'fc{i}')(x)
    w_avg = self.variable('buffers', 'w_avg', jnp.zeros, (self.w_dim,),
                          jnp.float32)
    ws = jnp.broadcast_to(x[:, None], (x.shape[0], self.num_ws, self.w_dim))
    return truncate(ws, w_avg.value, truncation_psi, truncation_cutoff)
