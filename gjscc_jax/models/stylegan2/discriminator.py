"""StyleGAN2's residual discriminator and the non-saturating GAN objective.

Used by GenerativeJSCC's optional adversarial term (an ablation, off by
default). The discriminator follows StyleGAN2 (Karras et al. 2020, config
F, 'resnet' architecture, unconditional) with the official parameter names
and storage (raw weights, equalised learning rate applied at run time;
kernels HWIO = official OIHW `.transpose(2, 3, 1, 0)`, dense `[in, out]`),
so official `D` tensors map one to one:

    b{R}:  fromrgb (1x1, lrelu), conv0 (3x3, lrelu), conv1 (3x3, 2x down,
           lrelu, gain sqrt(.5)), skip (1x1, 2x down, no bias, gain sqrt(.5));
           x = skip(x) + conv1(conv0(x))
    ...    (blocks down to b8)
    b4:    minibatch std (groups of 4, 1 channel), conv (3x3, lrelu),
           fc (lrelu), out (1 logit)

Channels at resolution r: min(channel_base // r, channel_max). Downsampling
is StyleGAN2's: low-pass with the [1, 3, 3, 1] FIR filter, then a stride-2
convolution (`resampling.down_conv`).

Objective (StyleGAN2's `StyleGAN2Loss` without path-length regularisation):

* generator: `softplus(-D(fake))` (`generator_loss`);
* discriminator: `softplus(D(fake)) + softplus(-D(real))`
  (`discriminator_loss`);
* R1: `gamma / 2 * ||grad_x D(real)||^2` (`r1_penalty`).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gjscc_jax.models.stylegan2 import layers as sg_layers
from gjscc_jax.models.stylegan2 import resampling

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
SQRT_HALF = float(np.sqrt(0.5))


class Conv(nn.Module):
  """Equalised-lr conv (official `Conv2dLayer`): conv, bias, act, gain, clamp.

  Attributes:
    features: output channels.
    kernel_size: 1 or 3.
    activation: 'lrelu' or 'linear'.
    down: downsample 2x (FIR + stride 2).
    use_bias: whether there is a bias.
    conv_clamp: clip to +-conv_clamp * gain (None: no clipping).
    dtype: compute dtype.
  """
  features: int
  kernel_size: int = 3
  activation: str = "lrelu"
  down: bool = False
  use_bias: bool = True
  conv_clamp: float | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, gain=1.0):
    k, fan_in = self.kernel_size, x.shape[-1] * self.kernel_size**2
    weight = self.param("weight", nn.initializers.normal(1.0),
                        (k, k, x.shape[-1], self.features))
    w = (weight * (1 / np.sqrt(fan_in))).astype(self.dtype)
    x = x.astype(self.dtype)
    if self.down:
      y = resampling.down_conv(x, w)
    else:
      pad = k // 2
      y = lax.conv_general_dilated(x, w, (1, 1), ((pad, pad), (pad, pad)),
                                   dimension_numbers=_DIMENSION_NUMBERS)
    bias = (self.param("bias", nn.initializers.zeros, (self.features,))
            if self.use_bias else None)
    act_gain = (sg_layers.LRELU_GAIN if self.activation == "lrelu" else 1.0) * gain
    clamp = None if self.conv_clamp is None else self.conv_clamp * gain
    return sg_layers.bias_act(y, bias, activation=self.activation,
                              gain=act_gain, clamp=clamp)


def minibatch_std(x, group_size=4):
  """Appends the official minibatch standard-deviation channel (F = 1).

  Sample `i` belongs to group `i mod (N / G)`, `G = min(group_size, N)`.
  """
  n, h, w, c = x.shape
  g = min(group_size, n)
  if n % g:
    raise ValueError(f"minibatch std: batch {n} is not divisible by the group "
                     f"size {g}; use a batch that is a multiple of {g}.")
  y = x.astype(jnp.float32).reshape(g, n // g, h, w, c)
  y = jnp.sqrt(jnp.var(y, axis=0) + 1e-8)             # (n/G, h, w, c)
  y = jnp.mean(y, axis=(1, 2, 3))                     # (n/G,)
  y = jnp.tile(y, g)[:, None, None, None]             # sample i -> y[i % n/G]
  return jnp.concatenate(
      [x, jnp.broadcast_to(y, (n, h, w, 1)).astype(x.dtype)], axis=-1)


class DiscriminatorBlock(nn.Module):
  """One resolution: [fromrgb] conv0 conv1(down) + skip(down), residual.

  Attributes:
    tmp_channels: channels of this resolution.
    out_channels: channels of the next (half) resolution.
    first: whether this block reads the image (has `fromrgb`).
    conv_clamp: activation clipping.
    dtype: compute dtype.
  """
  tmp_channels: int
  out_channels: int
  first: bool = False
  conv_clamp: float | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(conv_clamp=self.conv_clamp, dtype=self.dtype)
    if self.first:
      x = Conv(self.tmp_channels, 1, name="fromrgb", **kw)(x)
    skip = Conv(self.out_channels, 1, activation="linear", down=True,
                use_bias=False, dtype=self.dtype, name="skip")(x, SQRT_HALF)
    x = Conv(self.tmp_channels, 3, name="conv0", **kw)(x)
    x = Conv(self.out_channels, 3, down=True, name="conv1", **kw)(x, SQRT_HALF)
    return skip + x


class DiscriminatorEpilogue(nn.Module):
  """The 4x4 head: minibatch std, conv, fc, out (float32).

  Attributes:
    channels: channels at 4x4.
    mbstd_group_size: minibatch-std group size.
    conv_clamp: activation clipping of the conv.
  """
  channels: int
  mbstd_group_size: int = 4
  conv_clamp: float | None = None

  @nn.compact
  def __call__(self, x):
    x = minibatch_std(x.astype(jnp.float32), self.mbstd_group_size)
    x = Conv(self.channels, 3, conv_clamp=self.conv_clamp, name="conv")(x)
    x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)  # Official NCHW order.
    x = sg_layers.FullyConnected(self.channels, activation="lrelu", name="fc")(x)
    return sg_layers.FullyConnected(1, name="out")(x)[:, 0]


class Discriminator(nn.Module):
  """StyleGAN2 residual discriminator: images in [-1, 1] -> logits (B,).

  Submodules are named as the official ones (`b{r}` blocks with `fromrgb`,
  `conv0`, `conv1`, `skip`; `b4` with `conv`, `fc`, `out`).

  Attributes:
    img_resolution: input resolution (power of two >= 8).
    channel_base: channels at r: min(channel_base // r, channel_max).
    channel_max: see `channel_base`.
    conv_clamp: activation clipping (256 in the official configs).
    mbstd_group_size: minibatch-std group size (the batch must be a
      multiple of it, or smaller).
    dtype: compute dtype of the blocks (the epilogue runs in float32).
  """
  img_resolution: int = 256
  channel_base: int = 16384
  channel_max: int = 512
  conv_clamp: float | None = 256
  mbstd_group_size: int = 4
  dtype: Any = jnp.float32

  def channels(self, r):
    return min(self.channel_base // r, self.channel_max)

  @nn.compact
  def __call__(self, images):
    res = self.img_resolution
    if res < 8 or res & (res - 1):
      raise ValueError(f"img_resolution={res} must be a power of two >= 8.")
    if images.ndim != 4 or images.shape[1:3] != (res, res):
      raise ValueError(f"images must be (B, {res}, {res}, C); got {images.shape}.")
    x, r = images, res
    while r > 4:
      x = DiscriminatorBlock(self.channels(r), self.channels(r // 2),
                             first=r == res, conv_clamp=self.conv_clamp,
                             dtype=self.dtype, name=f"b{r}")(x)
      r //= 2
    return DiscriminatorEpilogue(self.channels(4), self.mbstd_group_size,
                                 self.conv_clamp, name="b4")(x)


def generator_loss(fake_logits):
  """Non-saturating generator loss `mean softplus(-D(fake))`."""
  return jnp.mean(jax.nn.softplus(-fake_logits))


def discriminator_loss(real_logits, fake_logits):
  """`mean softplus(D(fake)) + mean softplus(-D(real))`."""
  return (jnp.mean(jax.nn.softplus(fake_logits)) +
          jnp.mean(jax.nn.softplus(-real_logits)))


def r1_penalty(logits_fn, real_images):
  """`mean_i ||d D(x_i) / d x_i||^2` (multiply by gamma / 2 for R1).

  `logits_fn(images) -> (B,)`; each sample's gradient is that of its own
  logit (the sum trick: samples do not interact except through minibatch
  std, as in the official code).
  """
  grads = jax.grad(lambda x: jnp.sum(logits_fn(x)))(real_images)
  return jnp.mean(jnp.sum(jnp.square(grads.astype(jnp.float32)),
                          axis=(1, 2, 3)))
