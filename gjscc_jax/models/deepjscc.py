"""DeepJSCC: an image autoencoder with a wireless channel in the middle.

`DeepJSCC` encodes an image into real latents `(B, H/d, W/d, C)`, sends them
through its `gjscc_jax.channel.Channel` (pairing into `k = H W C / (2 d^2)` complex
symbols, per-image power normalisation, the channel) and decodes
the received latents back to an image in [-1, 1]. The bandwidth ratio is
`rho = k / (3 H W) = C / (6 d^2)`, i.e. `C / 1536` at the usual `d = 16`
(`channel.latent_channels_for_bcr` picks `C` for a target ratio).

Two architectures:

* `arch='tung'` (default): the ResNet/attention DeepJSCC of Tung et al.
  (compressai blocks, GDN/IGDN, Cheng attention), 16x downsampling:

    encoder: RBwS(N) RB(N) [AF] | RBwS(N) Attn RB(N) [AF] | RBwS(N) RB(N) [AF]
             | RBwS(C) [AF] Attn
    decoder: Attn RB(N) [AF] | RBUp(N) RB(N) [AF] | RBUp(N) Attn RB(N) [AF]
             | RBUp(N) RB(N) [AF] | RBUp(3) -> 2 sigmoid - 1

  (`N = num_filters`, `C = latent_channels`; RBwS/RBUp halve/double the
  resolution; the `[AF]` SNR-adaptive modules exist only with
  `snr_adaptive=True`, one per resolution level.)
* `arch='small'`: the Bourtsoulatze et al. 2019 layout, cheap enough for CPU
  tests and 64 x 64 demos: `log2(d)` stride-2 5x5 convs (widths `N/2, N, ...`),
  then three stride-1 5x5 convs (`N, N, C`), all followed by PReLU; the
  decoder mirrors it with transposed convs. With `snr_adaptive=True` an AF
  module follows every hidden layer.

The decoder output is `2 * sigmoid(x) - 1` (`= tanh(x / 2)`): the sigmoid
output layer of the original DeepJSCC papers, mapped to the project's [-1, 1]
pixel convention.

Usage:

  model = DeepJSCC(arch='small', num_filters=32, latent_channels=8,
                   downsampling=4)
  params = model.init(init_key, images, snr_db, channel_key)
  recon = model.apply(params, images, snr_db, channel_key)
  latents = model.apply(params, images, snr_db, method=DeepJSCC.encode)
"""

import fractions
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from gjscc_jax import channel as channel_lib
from gjscc_jax.models import jscc_blocks as blocks

Dtype = Any

ARCHS = ("tung", "small")


def _squash(x):
  """Maps decoder pre-activations to [-1, 1]: `2 sigmoid(x) - 1`, float32."""
  return 2.0 * jax.nn.sigmoid(x.astype(jnp.float32)) - 1.0


def _maybe_af(x, snr_db, enabled, dtype, name):
  if not enabled:
    return x
  return blocks.AFModule(dtype=dtype, name=name)(x, snr_db)


def _run_stages(module, stages, x, snr_db):
  """`x` through `stages` in order, each under `nn.remat` if `module.remat`.

  A stage is `(mdl, x, snr_db) -> x`; Flax passes `module` (under remat its
  lifted copy) as `mdl`, and the layers a stage creates attach to it and
  are auto-named as without remat, so the parameter tree is the same either
  way. Under remat only the stage inputs are kept for the backward pass,
  which recomputes each stage's activations.
  """
  for stage in stages:
    x = (nn.remat(stage) if module.remat else stage)(module, x, snr_db)
  return x


class TungEncoder(nn.Module):
  """Tung et al. DeepJSCC encoder, 16x downsampling (see module docstring).

  `remat`: recompute each resolution level (the four stages ending in an AF
  slot) in the backward pass instead of storing its activations.
  """
  num_filters: int = 256
  latent_channels: int = 8
  snr_adaptive: bool = False
  dtype: Dtype | None = None
  remat: bool = False

  @nn.compact
  def __call__(self, images, snr_db):
    n, d, af = self.num_filters, self.dtype, self.snr_adaptive

    def stage0(mdl, x, snr_db):
      del mdl
      x = blocks.ResidualBlockWithStride(n, dtype=d)(x)
      x = blocks.ResidualBlock(n, dtype=d)(x)
      return _maybe_af(x, snr_db, af, d, "af_0")

    def stage1(mdl, x, snr_db):
      del mdl
      x = blocks.ResidualBlockWithStride(n, dtype=d)(x)
      x = blocks.AttentionBlock(dtype=d)(x)
      x = blocks.ResidualBlock(n, dtype=d)(x)
      return _maybe_af(x, snr_db, af, d, "af_1")

    def stage2(mdl, x, snr_db):
      del mdl
      x = blocks.ResidualBlockWithStride(n, dtype=d)(x)
      x = blocks.ResidualBlock(n, dtype=d)(x)
      return _maybe_af(x, snr_db, af, d, "af_2")

    def stage3(mdl, x, snr_db):
      del mdl
      x = blocks.ResidualBlockWithStride(self.latent_channels, dtype=d)(x)
      x = _maybe_af(x, snr_db, af, d, "af_3")
      return blocks.AttentionBlock(dtype=d)(x)

    return _run_stages(self, (stage0, stage1, stage2, stage3), images, snr_db)


class TungDecoder(nn.Module):
  """Tung et al. DeepJSCC decoder, 16x upsampling to RGB in [-1, 1].

  `remat`: recompute each resolution level in the backward pass (as
  `TungEncoder`).
  """
  num_filters: int = 256
  snr_adaptive: bool = False
  dtype: Dtype | None = None
  remat: bool = False

  @nn.compact
  def __call__(self, latents, snr_db):
    n, d, af = self.num_filters, self.dtype, self.snr_adaptive

    def stage0(mdl, x, snr_db):
      del mdl
      x = blocks.AttentionBlock(dtype=d)(x)
      x = blocks.ResidualBlock(n, dtype=d)(x)
      return _maybe_af(x, snr_db, af, d, "af_0")

    def stage1(mdl, x, snr_db):
      del mdl
      x = blocks.ResidualBlockUpsample(n, dtype=d)(x)
      x = blocks.ResidualBlock(n, dtype=d)(x)
      return _maybe_af(x, snr_db, af, d, "af_1")

    def stage2(mdl, x, snr_db):
      del mdl
      x = blocks.ResidualBlockUpsample(n, dtype=d)(x)
      x = blocks.AttentionBlock(dtype=d)(x)
      x = blocks.ResidualBlock(n, dtype=d)(x)
      return _maybe_af(x, snr_db, af, d, "af_2")

    def stage3(mdl, x, snr_db):
      del mdl
      x = blocks.ResidualBlockUpsample(n, dtype=d)(x)
      x = blocks.ResidualBlock(n, dtype=d)(x)
      return _maybe_af(x, snr_db, af, d, "af_3")

    def stage4(mdl, x, snr_db):
      del mdl, snr_db
      return blocks.ResidualBlockUpsample(3, dtype=d)(x)

    x = _run_stages(self, (stage0, stage1, stage2, stage3, stage4), latents,
                    snr_db)
    return _squash(x)


def validate_encoder(arch, latent_channels, downsampling):
  """Raises a ValueError naming the option if an encoder setting is invalid.

  Args:
    arch: `'tung'` or `'small'`.
    latent_channels: `C`, a positive even number (pairs form symbols).
    downsampling: `d`, a power of two >= 2; 16 for `'tung'`.
  """
  if arch not in ARCHS:
    raise ValueError(f"arch={arch!r} is not supported; use one of {ARCHS}.")
  if latent_channels < 2 or latent_channels % 2:
    raise ValueError(
        f"latent_channels={latent_channels}: pairs of latent channels form "
        "complex symbols, so it must be a positive even number.")
  if downsampling < 2 or downsampling & (downsampling - 1):
    raise ValueError(
        f"downsampling={downsampling} must be a power of two >= 2 (one "
        "stride-2 stage per factor of two).")
  if arch == "tung" and downsampling != 16:
    raise ValueError(
        f"arch='tung' has a fixed 16x layout; got downsampling={downsampling}. "
        "Use downsampling=16, or arch='small' for other factors.")


def snr_per_image(snr_db, batch):
  """`snr_db` (dB, a scalar or `(batch,)`) as a float32 `(batch,)` vector.

  A `(batch, F)` array of side information (`Channel.side_features`, the
  SNR in column 0) passes through unchanged.
  """
  snr_db = jnp.asarray(snr_db, jnp.float32)
  if snr_db.ndim == 0:
    return jnp.broadcast_to(snr_db, (batch,))
  if snr_db.ndim == 2 and snr_db.shape[0] == batch:
    return snr_db
  if snr_db.shape != (batch,):
    raise ValueError(f"snr_db must be a scalar or shape ({batch},); got "
                     f"{snr_db.shape}.")
  return snr_db


def _small_strided_widths(num_filters, stages):
  """Output widths of the small encoder's stride-2 convs: N/2, N, N, ..."""
  return [max(num_filters // 2, 1)] + [num_filters] * (stages - 1)


class SmallEncoder(nn.Module):
  """Bourtsoulatze et al. 2019 style encoder: 5x5 convs + PReLU.

  `remat`: recompute each layer (conv, PReLU, AF) in the backward pass.
  """
  num_filters: int = 32
  latent_channels: int = 8
  stages: int = 2
  snr_adaptive: bool = False
  dtype: Dtype | None = None
  remat: bool = False

  @nn.compact
  def __call__(self, images, snr_db):
    widths = _small_strided_widths(self.num_filters, self.stages)
    strides = [2] * self.stages + [1, 1, 1]
    widths = widths + [self.num_filters, self.num_filters,
                       self.latent_channels]

    def layer(i):
      def run(mdl, x, snr_db):
        del mdl
        x = blocks.conv(widths[i], 5, strides[i], dtype=self.dtype,
                        name=f"conv_{i}")(x)
        x = nn.PReLU(negative_slope_init=0.25, name=f"prelu_{i}")(x)
        if i < len(widths) - 1:
          x = _maybe_af(x, snr_db, self.snr_adaptive, self.dtype, f"af_{i}")
        return x
      return run

    return _run_stages(self, [layer(i) for i in range(len(widths))], images,
                       snr_db)


class SmallDecoder(nn.Module):
  """Mirror of `SmallEncoder` with transposed 5x5 convs, RGB in [-1, 1].

  `remat`: recompute each layer in the backward pass.
  """
  num_filters: int = 32
  stages: int = 2
  snr_adaptive: bool = False
  dtype: Dtype | None = None
  remat: bool = False

  @nn.compact
  def __call__(self, latents, snr_db):
    strided_inputs = [3] + _small_strided_widths(self.num_filters,
                                                  self.stages)[:-1]
    widths = [self.num_filters] * 3 + strided_inputs[::-1]
    strides = [1, 1, 1] + [2] * self.stages

    def layer(i):
      def run(mdl, x, snr_db):
        del mdl
        x = nn.ConvTranspose(widths[i], (5, 5), strides=(strides[i],) * 2,
                             padding="SAME", dtype=self.dtype,
                             name=f"deconv_{i}")(x)
        if i < len(widths) - 1:
          x = nn.PReLU(negative_slope_init=0.25, name=f"prelu_{i}")(x)
          x = _maybe_af(x, snr_db, self.snr_adaptive, self.dtype, f"af_{i}")
        return x
      return run

    x = _run_stages(self, [layer(i) for i in range(len(widths))], latents,
                    snr_db)
    return _squash(x)


class DeepJSCC(nn.Module):
  """DeepJSCC encoder -> channel -> decoder (see the module docstring).

  Attributes:
    arch: `'tung'` (ResNet/attention, 16x only) or `'small'` (Bourtsoulatze).
    num_filters: hidden width `N`.
    latent_channels: latent channels `C` (even); `rho = C / (6 d^2)`.
    snr_adaptive: add AF modules that condition both networks on the SNR.
    downsampling: spatial factor `d` (power of two; must be 16 for `'tung'`).
    channel: the `gjscc_jax.channel.Channel` (a kind string such as
      `'awgn'` is read as `Channel(kind)`). With `snr_adaptive` and its
      `side_info='snr+gain'`, the decoder's AF modules also get the gain the
      receiver equalised with (`Channel.side_features`); the encoder gets
      the SNR only (no channel knowledge at the transmitter).
    dtype: compute dtype (e.g. `jnp.bfloat16`); parameters stay float32, the
      channel runs in float32 and the reconstruction is float32.
    remat: recompute each encoder/decoder stage (a resolution level of
      `'tung'`, a layer of `'small'`) in the backward pass instead of
      storing its activations: less memory for gradients, one more forward
      pass of compute. Same parameters and values either way.
  """
  arch: str = "tung"
  num_filters: int = 256
  latent_channels: int = 8
  snr_adaptive: bool = False
  downsampling: int = 16
  channel: Any = channel_lib.Channel()
  dtype: Dtype | None = None
  remat: bool = False

  def setup(self):
    self._validate()
    if self.arch == "tung":
      self.encoder = TungEncoder(self.num_filters, self.latent_channels,
                                 self.snr_adaptive, self.dtype, self.remat)
      self.decoder = TungDecoder(self.num_filters, self.snr_adaptive,
                                 self.dtype, self.remat)
    else:
      stages = self.downsampling.bit_length() - 1
      self.encoder = SmallEncoder(self.num_filters, self.latent_channels,
                                  stages, self.snr_adaptive, self.dtype,
                                  self.remat)
      self.decoder = SmallDecoder(self.num_filters, stages, self.snr_adaptive,
                                  self.dtype, self.remat)

  def _validate(self):
    validate_encoder(self.arch, self.latent_channels, self.downsampling)
    channel_lib.coerce(self.channel)

  @property
  def link(self) -> channel_lib.Channel:
    """The channel as a `Channel`."""
    return channel_lib.coerce(self.channel)

  @property
  def bandwidth_ratio(self) -> fractions.Fraction:
    """`rho = C / (6 d^2)` complex channel uses per source dimension."""
    return channel_lib.bcr_of_latent_channels(self.latent_channels,
                                              self.downsampling)

  def _snr_vector(self, snr_db, batch):
    if snr_db is None:
      if self.snr_adaptive:
        raise ValueError("snr_adaptive=True needs snr_db (dB, shape (B,)).")
      return None
    return snr_per_image(snr_db, batch)

  def encode(self, images, snr_db=None):
    """Images `(B, H, W, 3)` in [-1, 1] -> real latents `(B, H/d, W/d, C)`.

    `snr_db` (scalar or `(B,)`, dB) is needed only when `snr_adaptive`. The
    latents are not power-normalised; `channel.transmit` does that.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(
          f"images must be RGB NHWC (B, H, W, 3) in [-1, 1]; got shape "
          f"{images.shape}.")
    height, width = images.shape[1:3]
    d = self.downsampling
    if height % d or width % d:
      raise ValueError(
          f"Image size {height}x{width} is not divisible by the downsampling "
          f"factor {d}: crop or resize to a multiple of {d}.")
    snr_db = self._snr_vector(snr_db, images.shape[0])
    return self.encoder(images, snr_db)

  def decode(self, received, snr_db=None):
    """Received real latents `(B, h, w, C)` -> images `(B, d h, d w, 3)`."""
    if received.ndim != 4 or received.shape[-1] != self.latent_channels:
      raise ValueError(
          f"received latents must have shape (B, h, w, {self.latent_channels})"
          f"; got {received.shape}.")
    snr_db = self._snr_vector(snr_db, received.shape[0])
    return self.decoder(received, snr_db)

  def __call__(self, images, snr_db, key):
    """Encode, transmit over the channel with `key`, decode.

    Args:
      images: `(B, H, W, 3)` in [-1, 1], `H` and `W` divisible by `d`.
      snr_db: channel SNR in dB, scalar or `(B,)`.
      key: PRNG key of the channel realisation (noise, fading).

    Returns:
      Reconstructions `(B, H, W, 3)` in [-1, 1], float32.
    """
    latents = self.encode(images, snr_db)
    link = self.link
    received, csi = link.transmit(key, latents, snr_db)
    if self.snr_adaptive and link.side_info != "snr":
      snr_db = link.side_features(csi, snr_db, images.shape[0])
    return self.decode(received, snr_db)
