"""StyleGAN2 synthesis with GPEN-style feature injection (GenerativeJSCC's decoder).

The network is StyleGAN2's 'skip' synthesis network built from the project's
own layers (`gjscc_jax.models.stylegan2`): blocks `b4, b8, ..., bR`, each
`[const] conv0? conv1 torgb`, with the same variable names and, for
`injection='none'` or `'add'`, the same shapes. So converted official
weights graft onto it one to one (`graft_synthesis`), and with no
injection and the same `ws` it computes exactly the plain generator's image.

Every conv layer `l` (indexing of `stylegan2.synthesis`) can take a feature
map from the receiver trunk:

* `'add'`: the map replaces the layer's noise input, `(B, r, r, C_l)` or
  `(B, r, r, 1)`, scaled by the layer's learned `noise_strength` (GPEN's
  `NoiseInjection(isconcat=False)`).
* `'concat'`: the map is concatenated to the layer's output, so the layers
  that read that output (the next conv and the block's ToRGB) get wider
  input kernels and style affines (GPEN's `isconcat=True`). When official
  weights are grafted on, the extra input slices of those kernels are set to
  zero: the grafted decoder then starts as the pretrained generator exactly,
  whatever the maps are, and learns to use them (as a zero-initialised
  residual branch does).

Layers without a map use the StyleGAN2 noise of `noise_mode` ('const' uses
the stored `noise_const` buffers, 'random' fresh noise from a key, 'none').
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from gjscc_jax.models.stylegan2 import layers as sg_layers
from gjscc_jax.models.stylegan2 import resampling
from gjscc_jax.models.stylegan2 import synthesis as synthesis_lib

Dtype = Any


class InjectedSynthesisBlock(nn.Module):
  """One resolution of the skip generator, with optional map injection.

  Attributes:
    out_channels: channels of this block.
    resolution: output resolution.
    is_first: the 4x4 block (learned constant input, no conv0).
    injection: 'none', 'add' or 'concat'.
    img_channels: image channels.
    conv_clamp: activation clipping (None: none).
    dtype: compute dtype of feature maps (the skip image is float32).
    precision: convolution precision.
  """
  out_channels: int
  resolution: int
  is_first: bool = False
  injection: str = "none"
  img_channels: int = 3
  conv_clamp: float | None = None
  dtype: Dtype = jnp.float32
  precision: Any = None

  @nn.compact
  def __call__(self, x, img, ws, maps, *, noise_mode="const", key=None):
    """Applies the block.

    Args:
      x: `(B, r/2, r/2, C_in)` features, or None for the first block.
      img: `(B, r/2, r/2, img_channels)` skip image, or None.
      ws: `(B, n, w_dim)`: n = 2 (conv1, torgb) for the first block, else 3
        (conv0, conv1, torgb).
      maps: per conv layer of this block, its injected map or None.
      noise_mode: noise of layers without an injected map.
      key: PRNG key for `noise_mode='random'`.

    Returns:
      `(x, img)` at resolution r (x in `dtype`, img float32).
    """
    kw = dict(conv_clamp=self.conv_clamp, dtype=self.dtype,
              precision=self.precision)
    keys = (None, None) if key is None else tuple(jax.random.split(key))

    def run(layer, x, w, m, k):
      if self.injection == "add":
        return layer(x, w, noise_mode=noise_mode, key=k, noise=m)
      y = layer(x, w, noise_mode=noise_mode, key=k)
      if self.injection == "concat" and m is not None:
        y = jnp.concatenate([y, m.astype(y.dtype)], axis=-1)
      return y

    if self.is_first:
      const = self.param("const", nn.initializers.normal(1.0),
                         (self.resolution, self.resolution, self.out_channels))
      x = jnp.broadcast_to(const.astype(self.dtype), (ws.shape[0],) + const.shape)
    else:
      conv0 = sg_layers.SynthesisLayer(self.out_channels, self.resolution,
                                       up=True, name="conv0", **kw)
      x = run(conv0, x, ws[:, 0], maps[0], keys[0])
    n = 1 if self.is_first else 2
    conv1 = sg_layers.SynthesisLayer(self.out_channels, self.resolution,
                                     name="conv1", **kw)
    x = run(conv1, x, ws[:, n - 1], maps[n - 1], keys[1])
    y = sg_layers.ToRGB(self.img_channels, name="torgb", **kw)(x, ws[:, n])
    img = y if img is None else resampling.upsample_2x(img.astype(jnp.float32)) + y
    return x, img


class InjectedSynthesis(nn.Module):
  """StyleGAN2 synthesis network that accepts per-layer feature maps.

  Attributes:
    w_dim: latent size.
    img_resolution: output resolution (power of two >= 4).
    img_channels: image channels.
    channel_base: channels at resolution r: min(channel_base // r,
      channel_max) (StyleGAN2's rule).
    channel_max: see `channel_base`.
    conv_clamp: activation clipping (official configs: 256).
    injection: 'none', 'add' or 'concat' (module docstring).
    dtype: compute dtype of the feature maps.
    precision: convolution precision.
  """
  w_dim: int = 512
  img_resolution: int = 256
  img_channels: int = 3
  channel_base: int = 16384
  channel_max: int = 512
  conv_clamp: float | None = None
  injection: str = "concat"
  dtype: Dtype = jnp.float32
  precision: Any = None

  @property
  def num_blocks(self):
    return synthesis_lib.num_blocks(self.img_resolution)

  @property
  def num_ws(self):
    return 2 * self.num_blocks

  @property
  def num_layers(self):
    return self.num_ws - 1

  def layer_channels(self):
    """Output channels of every conv layer, in layer order."""
    return tuple(synthesis_lib.channels(r, self.channel_base, self.channel_max)
                 for r, _ in synthesis_lib.noise_shapes(self.img_resolution))

  @nn.compact
  def __call__(self, ws, maps: Sequence[Any] | None = None, *,
               noise_mode="const", key=None):
    """Synthesises `(B, R, R, img_channels)` float32 images from W+ and maps.

    Args:
      ws: `(B, num_ws, w_dim)` W+ latents.
      maps: one entry per conv layer (`num_layers`), a map or None; None for
        no injection at all.
      noise_mode: 'const', 'random' or 'none', for layers without a map.
      key: PRNG key for `noise_mode='random'`.
    """
    if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
      raise ValueError(f"ws must have shape (B, {self.num_ws}, {self.w_dim}); "
                       f"got {ws.shape}.")
    maps = (None,) * self.num_layers if maps is None else tuple(maps)
    if len(maps) != self.num_layers:
      raise ValueError(f"maps needs one entry (or None) per conv layer "
                       f"({self.num_layers}); got {len(maps)}.")
    if self.injection == "none" and any(m is not None for m in maps):
      raise ValueError("injection='none' takes no maps; build the decoder "
                       "with injection='add' or 'concat'.")
    ws = ws.astype(jnp.float32)
    x = img = None
    for k in range(self.num_blocks):
      res = synthesis_lib.block_resolution(k)
      first_w = 0 if k == 0 else 2 * k - 1
      layer_ids = synthesis_lib.block_layers(k)
      block_maps = tuple(maps[l] for l in layer_ids) + (None,) * (2 - len(layer_ids))
      block_key = None if key is None else jax.random.fold_in(key, k)
      x, img = InjectedSynthesisBlock(
          synthesis_lib.channels(res, self.channel_base, self.channel_max), res,
          is_first=k == 0, injection=self.injection,
          img_channels=self.img_channels, conv_clamp=self.conv_clamp,
          dtype=self.dtype, precision=self.precision, name=f"b{res}")(
              x, img, ws[:, first_w:first_w + len(layer_ids) + 1], block_maps,
              noise_mode=noise_mode, key=block_key)
    return img


def graft_synthesis(target, pretrained):
  """Copies converted StyleGAN2 synthesis variables into a decoder's variables.

  Every pretrained array is written into the leading slice of the matching
  target array. Targets may be wider than the pretrained arrays only where
  'concat' injection widens a layer's input: there the extra input slices of
  conv/ToRGB kernels (4-D, axis 2) are set to zero, so the decoder computes
  the pretrained generator's image; the extra style-affine outputs keep their
  initial values (they only scale the zeroed inputs). ToRGB kernels are
  rescaled by sqrt(wider fan-in / pretrained fan-in), because ToRGB is not
  demodulated and scales its styles by 1 / sqrt(fan-in).

  Args:
    target: the decoder's variable tree for one collection (e.g. its
      'params'), as initialised.
    pretrained: the same collection of `load_stylegan2(...)`'s synthesis
      variables.

  Returns:
    A new tree with the structure and shapes of `target`.

  Raises:
    ValueError: naming the variables that are missing, unexpected, or whose
      shapes cannot hold the pretrained array.
  """
  flat_t = traverse_util.flatten_dict(target, sep="/")
  flat_p = traverse_util.flatten_dict(pretrained, sep="/")
  missing = sorted(set(flat_t) - set(flat_p))
  extra = sorted(set(flat_p) - set(flat_t))
  bad = sorted(k for k in set(flat_t) & set(flat_p)
               if np.ndim(flat_t[k]) != np.ndim(flat_p[k]) or
               any(p > t for p, t in zip(np.shape(flat_p[k]), np.shape(flat_t[k]))))
  if missing or extra or bad:
    raise ValueError(
        "The converted StyleGAN2 weights do not fit the decoder: "
        f"missing {missing[:4]}, unexpected {extra[:4]}, incompatible shapes "
        + ", ".join(f"{k}: {np.shape(flat_p[k])} vs {np.shape(flat_t[k])}"
                    for k in bad[:4])
        + ". Check that generator.weights was converted for data.resolution "
        "and the generator architecture.")
  out = {}
  for name, t in flat_t.items():
    p = jnp.asarray(flat_p[name], jnp.asarray(t).dtype)
    if p.shape == np.shape(t):
      out[name] = p
      continue
    if np.ndim(t) == 4 and name.endswith("torgb/weight"):
      # ToRGB is not demodulated: its styles carry a 1/sqrt(fan-in) gain,
      # so the kept slice is rescaled for the wider fan-in.
      p = p * np.sqrt(np.shape(t)[2] / p.shape[2])
    base = jnp.zeros_like(t) if np.ndim(t) == 4 else jnp.asarray(t)
    out[name] = base.at[tuple(slice(0, s) for s in p.shape)].set(p)
  return traverse_util.unflatten_dict(out, sep="/")
