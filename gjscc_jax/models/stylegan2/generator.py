"""The StyleGAN2 generator: mapping network + synthesis network.

Variables (``Generator.init`` or `loading.load_stylegan2`) mirror the official
state dict name by name::

  {'params':  {'mapping':   {'fc0': {'weight', 'bias'}, ...},
               'synthesis': {'b4': {'const', 'conv1': {'weight', 'bias',
                                    'noise_strength', 'affine': {...}},
                                    'torgb': {...}},
                             'b8': {'conv0': ..., 'conv1': ..., 'torgb': ...},
                             ...}},
   'buffers': {'mapping': {'w_avg'},
               'synthesis': {'b4': {'conv1': {'noise_const'}}, ...}}}

Example::

  g, variables = load_stylegan2('ffhq256')            # see loading.py
  ws = g.apply(variables, z, truncation_psi=0.7, method=g.map)
  img = g.apply(variables, ws, method=g.synthesize)   # (B, 256, 256, 3)

Per-image latents with shared weights vmap directly::

  def one(w):                                          # w: (num_ws, w_dim)
    return g.apply(variables, w[None], method=g.synthesize)[0]
  imgs = jax.vmap(one)(ws)
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gjscc_jax.models.stylegan2 import mapping as mapping_lib
from gjscc_jax.models.stylegan2 import synthesis as synthesis_lib

#: Generator fields that describe the architecture (saved as config JSON).
CONFIG_FIELDS = ('z_dim', 'w_dim', 'img_resolution', 'img_channels',
                 'mapping_layers', 'channel_base', 'channel_max', 'conv_clamp')


class Generator(synthesis_lib.SynthesisLayout, nn.Module):
  """StyleGAN2 generator (unconditional, 'skip' synthesis).

  `num_blocks`, `num_ws`, `num_layers`, `noise_shapes` and `feature_shapes`
  are those of its synthesis network (`synthesis.SynthesisLayout`).

  Attributes:
    z_dim: input latent size.
    w_dim: intermediate latent size.
    img_resolution: output resolution.
    img_channels: image channels.
    mapping_layers: dense layers of the mapping network.
    channel_base: see `SynthesisNetwork`.
    channel_max: see `SynthesisNetwork`.
    conv_clamp: activation clipping (256 for nets trained with mixed
      precision, None for TF-converted nets).
    dtype: compute dtype of the synthesis feature maps.
    precision: convolution precision.
    remat: recompute each synthesis block in the backward pass (see
      `SynthesisNetwork`); not part of the saved architecture.
  """
  z_dim: int = 512
  w_dim: int = 512
  img_resolution: int = 1024
  img_channels: int = 3
  mapping_layers: int = 8
  channel_base: int = 32768
  channel_max: int = 512
  conv_clamp: float | None = None
  dtype: Any = jnp.float32
  precision: Any = None
  remat: bool = False

  def setup(self):
    self.synthesis = synthesis_lib.SynthesisNetwork(
        w_dim=self.w_dim, img_resolution=self.img_resolution,
        img_channels=self.img_channels, channel_base=self.channel_base,
        channel_max=self.channel_max, conv_clamp=self.conv_clamp,
        dtype=self.dtype, precision=self.precision, remat=self.remat)
    self.mapping = mapping_lib.MappingNetwork(
        z_dim=self.z_dim, w_dim=self.w_dim, num_ws=self.num_ws,
        num_layers=self.mapping_layers)

  @property
  def config(self):
    """The architecture as a JSON-able dict (``Generator(**config)``)."""
    return {name: getattr(self, name) for name in CONFIG_FIELDS}

  def map(self, z, *, truncation_psi=1.0, truncation_cutoff=None):
    """z (B, z_dim) -> ws (B, num_ws, w_dim); see `MappingNetwork`."""
    return self.mapping(z, truncation_psi=truncation_psi,
                        truncation_cutoff=truncation_cutoff)

  def synthesize(self, ws, **kwargs):
    """ws (B, num_ws, w_dim) -> image; kwargs of `SynthesisNetwork`."""
    return self.synthesis(ws, **kwargs)

  def __call__(self, z, *, truncation_psi=1.0, truncation_cutoff=None,
               **synthesis_kwargs):
    """z -> (B, R, R, img_channels) float32 image in [-1, 1] (unclipped)."""
    ws = self.map(z, truncation_psi=truncation_psi,
                  truncation_cutoff=truncation_cutoff)
    return self.synthesize(ws, **synthesis_kwargs)


def w_avg(variables):
  """The tracked mean latent (w_dim,) of a generator's variables."""
  return variables['buffers']['mapping']['w_avg']


def generator_from_config(config, **overrides):
  """Builds a `Generator` from a config dict (unknown keys are an error)."""
  unknown = set(config) - set(CONFIG_FIELDS)
  if unknown:
    raise ValueError(f'unknown StyleGAN2 config keys {sorted(unknown)}; '
                     f'expected {CONFIG_FIELDS}')
  return Generator(**{**config, **overrides})


__all__ = ['Generator', 'CONFIG_FIELDS', 'w_avg', 'generator_from_config']
