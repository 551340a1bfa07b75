"""The receiver trunk of GenerativeJSCC: received symbols -> W+ and feature maps.

GenerativeJSCC decodes with a StyleGAN2 synthesis network in the manner of
GPEN (Yang et al., CVPR 2021, "GAN prior embedded network"): a CNN looks at
the received channel symbols, laid out as the `(h, w, C)` latent map the
encoder sent (`h = R / d`), and produces everything the synthesis network
consumes:

* **W+ latents** `(B, num_ws, w_dim)`, one per synthesis layer (or one
  shared `w` repeated, `w_mode='shared'`), predicted from the 4x4 map by two
  dense layers and added to a learned offset (initialised to the pretrained
  generator's average latent `w_avg` when one is loaded), so the decoder
  starts near the centre of W;
* **one feature map per synthesis layer** that the decoder injects in place
  of the layer's noise input (`'add'`) or concatenates to its output
  (`'concat'`); see `generative_synthesis`. Each comes from a per-layer 1x1
  head on the trunk's map at that layer's resolution.

The trunk is a pyramid around the received resolution `h`:

    received (h) -> stem conv -> res blocks -> map[h]
    map[h] -> stride-2 conv stages -> map[h/2], ..., map[4]   (GPEN's encoder)
    map[h] -> 2x up stages         -> map[2h], ..., map[R_inj]

An up stage is `upsample` (`'resize'`: bilinear 2x then a 3x3 conv,
`jscc_blocks.ResizeConv`; `'subpixel'`: a 3x3 conv to 4x the channels then
pixel shuffle, `jscc_blocks.SubpixelConv`) followed by a 3x3 conv.
`'resize'` is the default because the sub-pixel stage learns a 2-pixel
checkerboard in the maps when the loss has an LPIPS term: with G0's
injected 16x16 maps after 300 steps of MSE + 0.1 LPIPS-Alex at 64x64, 74%
of their energy sat at the Nyquist frequency, an 8-pixel lattice in the
image; the resize stage has no per-phase kernels and cannot place energy
there (docs/matched-prior.md measures both). `'subpixel'` is kept for runs
trained with it.

`R_inj = inject_max_resolution` (default: the output resolution) caps the
up path: layers above it get no injection (they keep their noise input), and
the trunk does no work at those sizes. Widths are
`min(channel_base // r, channel_max)` as in StyleGAN2. With
`snr_adaptive=True` an AF module (channel scaling from the pooled features
and the SNR, `jscc_blocks.AFModule`) follows the stem and every stage.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gjscc_jax.models import jscc_blocks as blocks
from gjscc_jax.models.stylegan2 import synthesis as synthesis_lib

Dtype = Any

#: LeakyReLU slope of the trunk (StyleGAN2's).
TRUNK_SLOPE = 0.2
INJECTIONS = ("none", "add", "concat")
UPSAMPLES = ("resize", "subpixel")
W_MODES = ("per_layer", "shared")


def trunk_resolutions(received_resolution, max_resolution):
  """Resolutions the trunk produces maps at: 4 .. max_resolution, plus h.

  Args:
    received_resolution: side `h` of the received latent map.
    max_resolution: largest resolution that needs a map (>= 4).

  Returns:
    Sorted tuple of powers of two from `min(h, 4)` to `max(h, max_resolution)`.
  """
  low = min(received_resolution, 4)
  high = max(received_resolution, max_resolution)
  out, r = [], low
  while r <= high:
    out.append(r)
    r *= 2
  return tuple(out)


def injected_layers(img_resolution, inject_max_resolution=None):
  """Synthesis layers that receive a trunk feature map (layer order)."""
  cap = img_resolution if inject_max_resolution is None else inject_max_resolution
  return tuple(l for l, (r, _) in enumerate(synthesis_lib.noise_shapes(
      img_resolution)) if r <= cap)


def _conv(features, kernel, stride=1, dtype=None, name=None):
  return blocks.conv(features, kernel, stride, dtype=dtype, name=name)


def _lrelu(x):
  return nn.leaky_relu(x, TRUNK_SLOPE)


class GenerativeReceiver(nn.Module):
  """Received latents -> (W+ latents, per-layer injection maps).

  Attributes:
    img_resolution: output resolution `R` of the synthesis network.
    num_ws: W+ rows of the synthesis network (`2 log2(R) - 2`).
    w_dim: width of one W+ row.
    injection: `'none'`, `'add'` or `'concat'` (what the maps are for).
    injection_channels: per synthesis layer, the channels of its map (the
      layer's own width for `'add'`; any width for `'concat'`).
    inject_max_resolution: no maps above this resolution (None: all).
    w_mode: `'per_layer'` (W+) or `'shared'` (one w for every layer).
    channel_base: trunk width at resolution r is min(channel_base // r,
      channel_max).
    channel_max: see `channel_base`.
    num_res_blocks: residual blocks at the received resolution.
    snr_adaptive: AF modules conditioned on the SNR after every stage.
    upsample: `'resize'` (bilinear then conv) or `'subpixel'` (conv then
      pixel shuffle), the up stages' 2x step (module docstring).
    dtype: compute dtype (parameters stay float32); W+ is float32.
  """
  img_resolution: int
  num_ws: int
  w_dim: int = 512
  injection: str = "concat"
  injection_channels: tuple[int, ...] = ()
  inject_max_resolution: int | None = None
  w_mode: str = "per_layer"
  channel_base: int = 16384
  channel_max: int = 512
  num_res_blocks: int = 2
  snr_adaptive: bool = False
  upsample: str = "resize"
  dtype: Dtype | None = None

  def width(self, resolution):
    return max(min(self.channel_base // resolution, self.channel_max), 1)

  @property
  def injected_layers(self):
    if self.injection == "none":
      return ()
    return injected_layers(self.img_resolution, self.inject_max_resolution)

  def _validate(self, received):
    if self.injection not in INJECTIONS:
      raise ValueError(f"injection={self.injection!r} must be one of {INJECTIONS}.")
    if self.upsample not in UPSAMPLES:
      raise ValueError(f"upsample={self.upsample!r} must be one of {UPSAMPLES}.")
    if self.w_mode not in W_MODES:
      raise ValueError(f"w_mode={self.w_mode!r} must be one of {W_MODES}.")
    num_layers = self.num_ws - 1
    if self.injection != "none" and len(self.injection_channels) != num_layers:
      raise ValueError(
          f"injection_channels needs one width per synthesis layer "
          f"({num_layers}), got {len(self.injection_channels)}.")
    cap = self.inject_max_resolution
    if cap is not None and (cap < 4 or cap & (cap - 1)):
      raise ValueError(
          f"inject_max_resolution={cap} must be a power of two >= 4 (or None "
          "for all layers).")
    if received.ndim != 4:
      raise ValueError(f"received latents must be (B, h, w, C); got {received.shape}.")
    h, w = received.shape[1:3]
    if h != w or h & (h - 1) or self.img_resolution % h:
      raise ValueError(
          f"received latents are {h}x{w}: the receiver needs a square map "
          f"whose side is a power of two dividing the output resolution "
          f"{self.img_resolution}.")

  @nn.compact
  def __call__(self, received, snr_db=None):
    """Predicts the decoder inputs from the received latents.

    Args:
      received: `(B, h, h, C)` received (equalised) real latents.
      snr_db: `(B,)` SNR in dB; needed only when `snr_adaptive`.

    Returns:
      `(ws, maps)`: float32 W+ latents `(B, num_ws, w_dim)` and a tuple with
      one entry per synthesis layer: a `(B, r, r, injection_channels[l])` map
      in `dtype` for injected layers, None for the others.
    """
    self._validate(received)
    if self.snr_adaptive and snr_db is None:
      raise ValueError("snr_adaptive=True needs snr_db (dB, shape (B,)).")
    d = self.dtype

    def af(x, name):
      if not self.snr_adaptive:
        return x
      return blocks.AFModule(dtype=d, name=name)(x, snr_db)

    h = received.shape[1]
    layers = self.injected_layers
    layer_res = synthesis_lib.noise_shapes(self.img_resolution)
    top = max([4] + [layer_res[l][0] for l in layers])
    resolutions = trunk_resolutions(h, top)

    x = _lrelu(_conv(self.width(h), 3, dtype=d, name="stem")(received))
    for i in range(self.num_res_blocks):
      x = blocks.ResidualBlock(self.width(h), dtype=d, name=f"res_{i}")(x)
    maps = {h: af(x, f"af_{h}")}
    for r in (r for r in reversed(resolutions) if r < h):  # down to 4x4
      y = _lrelu(_conv(self.width(r), 3, 2, dtype=d, name=f"down_{r}")(maps[2 * r]))
      y = _lrelu(_conv(self.width(r), 3, dtype=d, name=f"down_{r}_conv")(y))
      maps[r] = af(y, f"af_{r}")
    up = blocks.ResizeConv if self.upsample == "resize" else blocks.SubpixelConv
    for r in (r for r in resolutions if r > h):  # up to the injected sizes
      y = _lrelu(up(self.width(r), dtype=d, name=f"up_{r}")(maps[r // 2]))
      y = _lrelu(_conv(self.width(r), 3, dtype=d, name=f"up_{r}_conv")(y))
      maps[r] = af(y, f"af_{r}")

    ws = self._latents(maps[4])
    injections = [None] * (self.num_ws - 1)
    for l in layers:
      r = layer_res[l][0]
      injections[l] = _conv(self.injection_channels[l], 1, dtype=d,
                            name=f"inject_{l}")(maps[r])
    return ws, tuple(injections)

  def _latents(self, x):
    """W+ from the 4x4 map: flatten -> dense -> lrelu -> dense, + offset."""
    batch = x.shape[0]
    rows = self.num_ws if self.w_mode == "per_layer" else 1
    x = x.reshape(batch, -1)
    x = _lrelu(nn.Dense(self.w_dim, dtype=self.dtype, name="w_hidden")(x))
    x = nn.Dense(rows * self.w_dim, dtype=self.dtype, name="w_out")(x)
    offset = self.param("w_offset", nn.initializers.zeros, (self.w_dim,))
    ws = x.astype(jnp.float32).reshape(batch, rows, self.w_dim) + offset
    return jnp.broadcast_to(ws, (batch, self.num_ws, self.w_dim))
