"""StyleGAN2's layers: equalised-lr dense, modulated convolution, ToRGB.

Parameters are stored *raw*, exactly as the official PyTorch code stores them
(only the layout differs: dense weights are ``[in, out]`` = official ``.T``,
convolution kernels are HWIO = official OIHW ``.transpose(2, 3, 1, 0)``); the
equalised-learning-rate gains are applied at run time. So official tensors
load one to one and gradients/learning rates behave as in the official code.

Non-trainable tensors (``noise_const`` here, ``w_avg`` in the mapping network)
live in the ``'buffers'`` collection, mirroring PyTorch buffers.

Modulated convolution uses the *activation-modulation* form: scale the input
channels by the style, run one ordinary convolution shared by the whole batch,
scale the output channels by the demodulation coefficients. The coefficients
come from the squared styles times the summed squared kernel, so no per-sample
3x3 kernel is ever built; the convolution stays an ordinary batched
convolution under `jax.jit`, `jax.vmap` and `jax.grad` on every backend (the
"fused" per-sample form is a grouped convolution, which XLA:CPU runs far
slower, forward and backward). 1x1 kernels (ToRGB) are the exception: their
per-sample modulated weights are tiny, and one batched matmul saves a pass
over the activations.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gjscc_jax.ops.conv2d import same_conv2d
from gjscc_jax.ops.elementwise import scaled_leaky_relu
from gjscc_jax.ops.elementwise import sum_leading_axes
from gjscc_jax.models.stylegan2 import resampling

#: Slope of StyleGAN2's leaky ReLU and its default gain.
LRELU_SLOPE = 0.2
LRELU_GAIN = float(np.sqrt(2.0))
#: Added before the rsqrt of the demodulation and 2nd-moment normalisation.
EPSILON = 1e-8
NOISE_MODES = ('random', 'const', 'none')


def bias_act(x, bias=None, *, activation='linear', gain=None, clamp=None):
  """Official ``bias_act``: ``clamp(act(x + bias) * gain, -clamp, clamp)``.

  Args:
    x: array whose last axis matches `bias`.
    bias: optional bias vector.
    activation: ``'linear'`` or ``'lrelu'`` (slope 0.2).
    gain: output scale; defaults to sqrt(2) for lrelu and 1 for linear.
    clamp: clip the result to [-clamp, clamp]; None disables clipping.

  Returns:
    An array like `x`.
  """
  if bias is not None:
    x = x + bias.astype(x.dtype)
  if activation == 'lrelu':
    gain = LRELU_GAIN if gain is None else gain
    x = scaled_leaky_relu(x, LRELU_SLOPE, gain)
  elif activation != 'linear':
    raise ValueError(f"activation must be 'linear' or 'lrelu', got "
                     f'{activation!r}')
  elif gain is not None and gain != 1:
    x = x * jnp.asarray(gain, x.dtype)
  if clamp is not None:
    x = jnp.clip(x, -clamp, clamp)
  return x


class FullyConnected(nn.Module):
  """Dense layer with equalised learning rate (official FullyConnectedLayer).

  ``y = act(x @ (weight * lr_multiplier / sqrt(in)) + bias * lr_multiplier)``.

  Attributes:
    features: number of outputs.
    activation: ``'linear'`` or ``'lrelu'``.
    lr_multiplier: learning-rate multiplier (0.01 in the mapping network).
    bias_init: initial bias (1 for the style affines, so stored affine biases
      already contain the +1).
  """
  features: int
  activation: str = 'linear'
  lr_multiplier: float = 1.0
  bias_init: float = 0.0

  @nn.compact
  def __call__(self, x):
    x = jnp.asarray(x, jnp.float32)
    fan_in = x.shape[-1]
    weight = self.param(
        'weight', lambda key, shape: jax.random.normal(key, shape) /
        self.lr_multiplier, (fan_in, self.features))
    bias = self.param('bias', lambda _, shape: jnp.full(shape, self.bias_init,
                                                         jnp.float32),
                      (self.features,))
    y = x @ (weight * (self.lr_multiplier / np.sqrt(fan_in)))
    return bias_act(y, bias * self.lr_multiplier, activation=self.activation)


def demodulation_coefficients(kernel, styles):
  """``rsqrt(sum_{h,w,i} (kernel * style_i)^2 + 1e-8)`` per sample and output.

  Args:
    kernel: (k, k, I, O) kernel.
    styles: (..., I) styles.

  Returns:
    (..., O) coefficients, float32.
  """
  kernel_sq = sum_leading_axes(jnp.square(kernel.astype(jnp.float32)))
  return lax.rsqrt(jnp.square(styles.astype(jnp.float32)) @ kernel_sq + EPSILON)


def modulated_conv2d(x, kernel, styles, *, demodulate=True, up=False,
                     precision=None):
  """Modulated convolution (official ``modulated_conv2d``), activation form.

  Args:
    x: (B, H, W, I) input, in the compute dtype.
    kernel: (k, k, I, O) raw kernel, official orientation, odd k.
    styles: (B, I) float32 styles.
    demodulate: scale each output channel to unit expected variance.
    up: stride-2 transposed convolution + [1, 3, 3, 1] FIR (3x3 kernels only).
    precision: passed to the convolution.

  Returns:
    (B, H', W', O) in the dtype of `x`; H' = 2H if `up` else H.
  """
  dtype = x.dtype
  d = demodulation_coefficients(kernel, styles) if demodulate else None
  if kernel.shape[:2] == (1, 1) and not up:
    # A 1x1 kernel per sample is tiny (I x O): one batched matmul, and no
    # extra pass over the activations.
    w = styles[:, :, None].astype(jnp.float32) * kernel[0, 0]
    if demodulate:
      w = w * d[:, None, :]
    return jnp.einsum('bhwi,bio->bhwo', x, w.astype(dtype),
                      precision=precision)
  x = x * styles[:, None, None, :].astype(dtype)
  k = kernel.astype(dtype)
  if up:
    y = resampling.upsample_conv_2x(x, k, precision=precision)
  else:
    y = same_conv2d(x, k, precision=precision)
  if demodulate:
    y = y * d[:, None, None, :].astype(dtype)
  return y


def _check_noise(noise, shape):
  b, h, w, c = shape
  if (noise.ndim != 4 or noise.shape[1:3] != (h, w) or
      noise.shape[0] not in (1, b) or noise.shape[3] not in (1, c)):
    raise ValueError(
        f'noise for a layer with output {shape} must have shape (B, {h}, {w}, '
        f'1) or (B, {h}, {w}, {c}) with B = 1 or {b}; got {noise.shape}.')


class SynthesisLayer(nn.Module):
  """Modulated 3x3 conv + noise + bias + lrelu*sqrt(2) (+ clamp).

  The number of input channels is taken from the input, so a variant that
  concatenates extra feature maps onto `x` just gets a wider kernel.

  Attributes:
    out_channels: output channels.
    resolution: output resolution (the noise map is resolution x resolution).
    up: upsample 2x (the first layer of each block, ``conv0``).
    kernel_size: odd kernel size (3).
    conv_clamp: clip the activations to +-conv_clamp (None: no clipping).
    dtype: compute dtype of the activations (float32 or bfloat16); styles and
      demodulation coefficients are always float32.
    precision: precision of the convolution.
  """
  out_channels: int
  resolution: int
  up: bool = False
  kernel_size: int = 3
  conv_clamp: float | None = None
  dtype: Any = jnp.float32
  precision: Any = None

  @nn.compact
  def __call__(self, x, w, *, noise_mode='const', key=None, noise=None,
               input_gain=None):
    """Applies the layer.

    Args:
      x: (B, H, W, I) input; H = resolution / 2 if `up` else resolution.
      w: (B, w_dim) latent for this layer.
      noise_mode: ``'const'`` (the stored ``noise_const``), ``'random'``
        (fresh N(0, 1) from `key`) or ``'none'``.
      key: PRNG key, needed for ``noise_mode='random'``.
      noise: optional external map, (B, H', W', 1) or (B, H', W', out), that
        replaces the noise input (still scaled by ``noise_strength``).
      input_gain: optional (I,) factors on the styles, i.e. on the input
        channels in both the modulation and the demodulation (a zero gain
        removes a channel as if its kernel slice were zero).

    Returns:
      (B, resolution, resolution, out_channels) in `dtype`.
    """
    if noise_mode not in NOISE_MODES:
      raise ValueError(f'noise_mode must be one of {NOISE_MODES}, got '
                       f'{noise_mode!r}')
    in_res = self.resolution // 2 if self.up else self.resolution
    if x.ndim != 4 or x.shape[1:3] != (in_res, in_res):
      raise ValueError(f'{self.name} expects input (B, {in_res}, {in_res}, C), '
                       f'got {x.shape}')
    k = self.kernel_size
    kernel = self.param('weight', nn.initializers.normal(1.0),
                        (k, k, x.shape[-1], self.out_channels))
    bias = self.param('bias', nn.initializers.zeros, (self.out_channels,))
    strength = self.param('noise_strength', nn.initializers.zeros, ())
    noise_const = self.variable(
        'buffers', 'noise_const', lambda: jax.random.normal(
            self.make_rng('params'), (self.resolution, self.resolution)))

    styles = FullyConnected(x.shape[-1], bias_init=1.0, name='affine')(w)
    if input_gain is not None:
      styles = styles * input_gain
    y = modulated_conv2d(x.astype(self.dtype), kernel, styles, up=self.up,
                         precision=self.precision)
    shape = y.shape
    if noise is not None:
      _check_noise(noise, shape)
    elif noise_mode == 'random':
      if key is None:
        raise ValueError("noise_mode='random' needs a PRNG key: pass key=...")
      noise = jax.random.normal(key, shape[:3] + (1,), jnp.float32)
    elif noise_mode == 'const':
      noise = noise_const.value[None, :, :, None]
    if noise is not None:
      y = y + (noise * strength).astype(y.dtype)
    return bias_act(y, bias, activation='lrelu', clamp=self.conv_clamp)


class ToRGB(nn.Module):
  """Modulated 1x1 conv to RGB without demodulation, + bias (+ clamp).

  The styles are scaled by 1 / sqrt(in_channels) (the official weight gain)
  and by the optional per-input-channel `input_gain` of `__call__`.

  Attributes:
    out_channels: image channels (3).
    conv_clamp: clip to +-conv_clamp (None: no clipping).
    dtype: compute dtype; the result is returned as float32.
    precision: precision of the 1x1 convolution.
  """
  out_channels: int = 3
  conv_clamp: float | None = None
  dtype: Any = jnp.float32
  precision: Any = None

  @nn.compact
  def __call__(self, x, w, input_gain=None):
    in_channels = x.shape[-1]
    kernel = self.param('weight', nn.initializers.normal(1.0),
                        (1, 1, in_channels, self.out_channels))
    bias = self.param('bias', nn.initializers.zeros, (self.out_channels,))
    styles = FullyConnected(in_channels, bias_init=1.0, name='affine')(w)
    styles = styles * (1 / np.sqrt(in_channels))
    if input_gain is not None:
      styles = styles * input_gain
    y = modulated_conv2d(x.astype(self.dtype), kernel, styles,
                         demodulate=False, precision=self.precision)
    y = bias_act(y, bias, clamp=self.conv_clamp)
    return y.astype(jnp.float32)
