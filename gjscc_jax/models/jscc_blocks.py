"""Building blocks of the Tung et al. DeepJSCC networks (NHWC, Flax linen).

These are the residual, attention and SNR-adaptive blocks that the DeepJSCC
encoder/decoder of Tung et al. (DeepJSCC-Q) builds on; the residual and
attention blocks follow the definitions of compressai's `layers.py` (Cheng et
al. 2020 and Ballé et al.), rewritten for Flax:

* `ResidualBlock`: conv3x3 -> LeakyReLU -> conv3x3 -> LeakyReLU, plus an
  identity (or 1x1 conv when the width changes) skip.
* `ResidualBlockWithStride`: conv3x3/stride 2 -> LeakyReLU -> conv3x3 -> GDN,
  plus a 1x1 stride-2 conv skip. Halves the resolution.
* `ResidualBlockUpsample`: sub-pixel conv3x3 -> LeakyReLU -> conv3x3 -> IGDN,
  plus a sub-pixel conv skip. Doubles the resolution.
* `AttentionBlock`: Cheng et al. 2020 simplified attention, `x + a(x) *
  sigmoid(b(x))` with residual-unit trunks.
* `AFModule`: the SNR-adaptive attention-feature module (Xu et al., ADJSCC):
  channel-wise scaling computed from pooled features and the SNR.

Convolutions pad by `kernel // 2` on every side (as PyTorch's `padding=1` for
3x3), so a stride-2 conv maps `H` to `H / 2` for even `H`. LeakyReLU uses
PyTorch's default slope 0.01. Every block has a `dtype` (compute dtype;
parameters stay float32).
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from gjscc_jax.ops import conv2d
from gjscc_jax.models.gdn import GDN

Dtype = Any

#: Negative slope of the LeakyReLU activations (PyTorch's default).
LEAKY_SLOPE = 0.01


def conv(features, kernel_size, stride=1, dtype=None, name=None):
  """A square convolution padded by `kernel_size // 2` on each side."""
  pad = kernel_size // 2
  return nn.Conv(features, (kernel_size, kernel_size), strides=stride,
                 padding=((pad, pad), (pad, pad)), dtype=dtype, name=name,
                 conv_general_dilated=conv2d.conv_general_dilated)


def pixel_shuffle(x, factor):
  """Depth-to-space `(B, H, W, C r^2) -> (B, H r, W r, C)`, PyTorch's order.

  Input channel `c * r^2 + i * r + j` becomes output channel `c` at offset
  `(i, j)` inside each `r x r` output cell, as `torch.nn.PixelShuffle`.
  """
  batch, height, width, channels = x.shape
  if channels % (factor * factor):
    raise ValueError(f"pixel_shuffle: {channels} channels are not divisible by "
                     f"factor^2 = {factor * factor}.")
  out = channels // (factor * factor)
  x = x.reshape(batch, height, width, out, factor, factor)
  x = x.transpose(0, 1, 4, 2, 5, 3)
  return x.reshape(batch, height * factor, width * factor, out)


class SubpixelConv(nn.Module):
  """3x3 conv to `features * r^2` channels followed by `pixel_shuffle(r)`."""
  features: int
  factor: int = 2
  dtype: Dtype | None = None

  @nn.compact
  def __call__(self, x):
    x = conv(self.features * self.factor**2, 3, dtype=self.dtype,
             name="conv")(x)
    return pixel_shuffle(x, self.factor)


class ResizeConv(nn.Module):
  """Bilinear `factor`x upsampling followed by a 3x3 conv to `features`.

  The upsampled map is a smooth interpolation before the conv sees it, so
  the block cannot put a learned pattern of period `factor` into the output
  grid; `SubpixelConv` can (each output phase has its own kernel), and does
  when a loss rewards fake texture (docs/matched-prior.md).
  """
  features: int
  factor: int = 2
  dtype: Dtype | None = None

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    x = jax.image.resize(x, (b, h * self.factor, w * self.factor, c),
                         "bilinear")
    return conv(self.features, 3, dtype=self.dtype, name="conv")(x)


class ResidualBlock(nn.Module):
  """conv3x3 -> LeakyReLU -> conv3x3 -> LeakyReLU, plus a skip connection."""
  features: int
  dtype: Dtype | None = None

  @nn.compact
  def __call__(self, x):
    identity = x
    if x.shape[-1] != self.features:
      identity = conv(self.features, 1, dtype=self.dtype, name="skip")(x)
    out = conv(self.features, 3, dtype=self.dtype, name="conv1")(x)
    out = nn.leaky_relu(out, LEAKY_SLOPE)
    out = conv(self.features, 3, dtype=self.dtype, name="conv2")(out)
    out = nn.leaky_relu(out, LEAKY_SLOPE)
    return out + identity


class ResidualBlockWithStride(nn.Module):
  """Downsampling residual block: conv/stride -> LeakyReLU -> conv -> GDN."""
  features: int
  stride: int = 2
  dtype: Dtype | None = None

  @nn.compact
  def __call__(self, x):
    identity = x
    if self.stride != 1 or x.shape[-1] != self.features:
      identity = conv(self.features, 1, self.stride, dtype=self.dtype,
                      name="skip")(x)
    out = conv(self.features, 3, self.stride, dtype=self.dtype,
               name="conv1")(x)
    out = nn.leaky_relu(out, LEAKY_SLOPE)
    out = conv(self.features, 3, dtype=self.dtype, name="conv2")(out)
    out = GDN(dtype=self.dtype, name="gdn")(out)
    return out + identity


class ResidualBlockUpsample(nn.Module):
  """Upsampling residual block: sub-pixel conv -> LeakyReLU -> conv -> IGDN."""
  features: int
  upsample: int = 2
  dtype: Dtype | None = None

  @nn.compact
  def __call__(self, x):
    identity = SubpixelConv(self.features, self.upsample, self.dtype,
                            name="skip")(x)
    out = SubpixelConv(self.features, self.upsample, self.dtype,
                       name="subpel")(x)
    out = nn.leaky_relu(out, LEAKY_SLOPE)
    out = conv(self.features, 3, dtype=self.dtype, name="conv")(out)
    out = GDN(inverse=True, dtype=self.dtype, name="igdn")(out)
    return out + identity


class ResidualUnit(nn.Module):
  """Bottleneck unit of the attention trunks: 1x1 -> 3x3 -> 1x1, ReLUs, skip."""
  dtype: Dtype | None = None

  @nn.compact
  def __call__(self, x):
    features = x.shape[-1]
    hidden = max(features // 2, 1)
    out = nn.relu(conv(hidden, 1, dtype=self.dtype, name="conv1")(x))
    out = nn.relu(conv(hidden, 3, dtype=self.dtype, name="conv2")(out))
    out = conv(features, 1, dtype=self.dtype, name="conv3")(out)
    return nn.relu(out + x)


class AttentionBlock(nn.Module):
  """Simplified attention of Cheng et al. 2020: `x + a(x) * sigmoid(b(x))`.

  `a` is three residual units; `b` is three residual units and a 1x1 conv.
  The width is that of the input; the shape is preserved.
  """
  dtype: Dtype | None = None

  @nn.compact
  def __call__(self, x):
    trunk = x
    for i in range(3):
      trunk = ResidualUnit(self.dtype, name=f"trunk_{i}")(trunk)
    mask = x
    for i in range(3):
      mask = ResidualUnit(self.dtype, name=f"mask_{i}")(mask)
    mask = conv(x.shape[-1], 1, dtype=self.dtype, name="mask_conv")(mask)
    return x + trunk * jax.nn.sigmoid(mask)


class AFModule(nn.Module):
  """SNR-adaptive attention-feature module (ADJSCC, Xu et al. 2021).

  Pools the features globally, appends the SNR, and predicts one scale in
  (0, 1) per channel: `x * sigmoid(FC(ReLU(FC([mean_hw(x), snr_db]))))`,
  both FC layers as wide as `x`.

  Call with `x` of shape `(B, H, W, N)` and `snr_db` of shape `(B,)` (or a
  scalar, broadcast to the batch), in dB, or `(B, F)` side information
  (the SNR and channel gains, `Channel.side_features`) appended whole.
  """
  dtype: Dtype | None = None

  @nn.compact
  def __call__(self, x, snr_db):
    features = x.shape[-1]
    snr_db = jnp.asarray(snr_db, jnp.float32)
    side = (snr_db if snr_db.ndim == 2 else
            jnp.broadcast_to(snr_db, x.shape[:1])[:, None])
    context = jnp.concatenate(
        [jnp.mean(x.astype(jnp.float32), axis=(1, 2)), side], axis=-1)
    hidden = nn.relu(nn.Dense(features, dtype=self.dtype, name="fc1")(context))
    scale = jax.nn.sigmoid(nn.Dense(features, dtype=self.dtype,
                                    name="fc2")(hidden))
    return x * scale[:, None, None, :].astype(x.dtype)
