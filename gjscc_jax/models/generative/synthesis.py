"""StyleGAN2 synthesis with GPEN-style feature injection (GenerativeJSCC's decoder).

The network is StyleGAN2's 'skip' synthesis network itself
(`stylegan2.synthesis.SynthesisNetwork`, which takes the maps through its
`noise` and `concat` inputs): blocks `b4, b8, ..., bR`, each
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

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from gjscc_jax.models.stylegan2 import synthesis as synthesis_lib


class InjectedSynthesis(synthesis_lib.SynthesisNetwork):
  """StyleGAN2 synthesis network that accepts per-layer feature maps.

  The `SynthesisNetwork` (same blocks, variables and layout properties) with
  one map input per conv layer, routed by `injection` to the layers' noise
  inputs ('add') or concatenated to their outputs ('concat').

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
    remat: recompute each block in the backward pass (`SynthesisNetwork`).
  """
  img_resolution: int = 256
  channel_base: int = 16384
  injection: str = "concat"

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
    routed = {"add": "noise", "concat": "concat"}.get(self.injection)
    return super().__call__(ws, noise_mode=noise_mode, key=key,
                            **({routed: maps} if routed else {}))


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
