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
  input kernels and style affines (GPEN's `isconcat=True`).

How GPEN builds a `'concat'` layer (`StyledConv` with
`NoiseInjection(isconcat=True)` in its `gpen_model.py`), and the options
that follow it:

* **No noise in injected layers.** GPEN's layer returns
  `concat(conv(x), weight * map)`: the map takes the place of the noise,
  nothing else is added. `noise_in_injected_layers=False` (the default)
  does the same; `True` keeps StyleGAN2's noise (`noise_mode`) in those
  layers as well. Layers without a map always use the noise of
  `noise_mode` ('const': the stored `noise_const` buffers, 'random': fresh
  noise from a key, 'none').
* **A learned scale per map, starting at 0.** GPEN multiplies each map by
  a learned scalar initialised to 0. `injection_scale='learned'` (the
  default) gives every injected layer `l` a scalar `inject_scale_{l}`
  (initialised to 0) that multiplies the map's *styles* in the layers that
  read it (`SynthesisNetwork`'s `concat_scale`), rather than the map
  itself. For those layers' outputs the two are the same except in the
  demodulation: scaling the styles also takes the map's channels out of
  the demodulation sum at scale 0. So the decoder with zero scales computes
  exactly the generator without maps (with converted weights: the
  pretrained generator) while the kernel slices that read the maps keep
  their random initial values, and the scales receive a gradient from the
  first step. (Scaling the map instead, a grafted decoder is exact only if
  those kernel slices are zero, and then the scales and the slices both
  have zero gradient: the injection would never start.)
  `injection_scale='none'` uses the maps unscaled; grafting then zeroes the
  kernel slices that read them (`graft_synthesis(zero_new_inputs=True)`),
  which the fine-tuned generator learns from zero.
  `injection_scale_gain` multiplies the learned scales (the effective
  scale is `gain * inject_scale_{l}`): with Adam it is a learning-rate
  multiplier of the scales alone, the equalised learning rate of
  StyleGAN. At gain 1 and the receiver's lr 1e-3 the scales reach
  |s| <= 0.06 after 300 steps, so the maps hardly act; the `:matched`
  config uses 10 (docs/matched-prior.md measures the scales' growth).
  `'add'` maps are already scaled by the layer's learned `noise_strength`
  (GPEN's `isconcat=False`); `injection_scale` does not apply to them.

One difference remains: GPEN applies the layer's bias and leaky ReLU to the
concatenated map too; here the map is concatenated after them (the
receiver's 1x1 heads are linear, so the map is the head's output as is).
"""

from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from gjscc_jax.models.stylegan2 import synthesis as synthesis_lib

INJECTION_SCALES = ("learned", "none")
#: Name prefix of the learned map scales (`inject_scale_{layer}`).
INJECTION_SCALE_PREFIX = "inject_scale_"


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
    injection_scale: 'learned' (GPEN: a zero-initialised scalar per
      'concat' map) or 'none' (module docstring).
    injection_scale_gain: constant factor of the learned scales (an lr
      multiplier for them under Adam; module docstring).
    noise_in_injected_layers: layers with a 'concat' map also add the noise
      of `noise_mode` (False: as GPEN, the map replaces the noise).
    dtype: compute dtype of the feature maps.
    precision: convolution precision.
    remat: recompute each block in the backward pass (`SynthesisNetwork`).
  """
  img_resolution: int = 256
  channel_base: int = 16384
  injection: str = "concat"
  injection_scale: str = "learned"
  injection_scale_gain: float = 1.0
  noise_in_injected_layers: bool = False

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
    if self.injection_scale not in INJECTION_SCALES:
      raise ValueError(f"injection_scale={self.injection_scale!r} must be one "
                       f"of {INJECTION_SCALES}.")
    if self.injection == "add":
      return super().__call__(ws, noise_mode=noise_mode, key=key, noise=maps)
    if self.injection == "concat":
      return super().__call__(
          ws, noise_mode=noise_mode, key=key, concat=maps,
          concat_noise=self.noise_in_injected_layers,
          concat_scale=self.injection_scale == "learned",
          concat_scale_gain=self.injection_scale_gain)
    return super().__call__(ws, noise_mode=noise_mode, key=key)


def is_injection_scale(name):
  """Whether a synthesis parameter path (or its last key) is a map's scale."""
  return str(name).rsplit("/", 1)[-1].startswith(INJECTION_SCALE_PREFIX)


def graft_synthesis(target, pretrained, zero_new_inputs=True):
  """Copies converted StyleGAN2 synthesis variables into a decoder's variables.

  Every pretrained array is written into the leading slice of the matching
  target array. Targets may be wider than the pretrained arrays only where
  'concat' injection widens a layer's input. There the extra input slices
  of conv/ToRGB kernels (4-D, axis 2) are set to zero (`zero_new_inputs`,
  for `injection_scale='none'`) or keep their initial values (for
  `'learned'`, whose zero scales already remove them); either way the
  decoder computes the pretrained generator's image. The extra style-affine
  outputs keep their initial values. ToRGB kernels are rescaled by
  sqrt(wider fan-in / pretrained fan-in), because ToRGB is not demodulated
  and scales its styles by 1 / sqrt(fan-in). The decoder's own map scales
  (`inject_scale_*`) keep their initial values (0).

  Args:
    target: the decoder's variable tree for one collection (e.g. its
      'params'), as initialised.
    pretrained: the same collection of `load_stylegan2(...)`'s synthesis
      variables.
    zero_new_inputs: zero the kernel slices that read the injected maps.

  Returns:
    A new tree with the structure and shapes of `target`.

  Raises:
    ValueError: naming the variables that are missing, unexpected, or whose
      shapes cannot hold the pretrained array.
  """
  flat_t = traverse_util.flatten_dict(target, sep="/")
  flat_p = traverse_util.flatten_dict(pretrained, sep="/")
  missing = sorted(k for k in set(flat_t) - set(flat_p)
                   if not is_injection_scale(k))
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
    if name not in flat_p:  # A map scale of the decoder's own.
      out[name] = jnp.asarray(t)
      continue
    p = jnp.asarray(flat_p[name], jnp.asarray(t).dtype)
    if p.shape == np.shape(t):
      out[name] = p
      continue
    if np.ndim(t) == 4 and name.endswith("torgb/weight"):
      # ToRGB is not demodulated: its styles carry a 1/sqrt(fan-in) gain,
      # so the kept slice is rescaled for the wider fan-in.
      p = p * np.sqrt(np.shape(t)[2] / p.shape[2])
    zero = np.ndim(t) == 4 and zero_new_inputs
    base = jnp.zeros_like(t) if zero else jnp.asarray(t)
    out[name] = base.at[tuple(slice(0, s) for s in p.shape)].set(p)
  return traverse_util.unflatten_dict(out, sep="/")
