"""The FID Inception-v3 (as ``pytorch-fid`` defines it) as a Flax module.

FID and KID compare the 2048-dimensional *pool features* of an
Inception-v3 network: the TensorFlow ``inception-2015-12-05`` graph that
Heusel et al. used, which ``pytorch-fid`` ports to PyTorch as
``pt_inception-2015-12-05-6726825d.pth``. For [-1, 1] NHWC images this
module computes what ``pytorch_fid.inception.InceptionV3()`` (defaults:
``resize_input=True``, ``normalize_input=True``, block 3) computes for the
same images in [0, 1]:

  1. ``u = (x + 1) / 2``, resized to 299 x 299 by bilinear interpolation
     with half-pixel centres and no antialiasing (``F.interpolate(...,
     mode='bilinear', align_corners=False)``), then ``2 u - 1``;
  2. torchvision's Inception-v3 stem and blocks, each convolution a
     ``BasicConv2d``: conv without bias, batch norm in inference form
     (``eps = 1e-3``), ReLU;
  3. the FID variant's differences from torchvision's: the 3x3 average
     pools of the A, C and first E blocks exclude the zero padding from
     the count (``count_include_pad=False``, as TensorFlow), and the last E
     block max-pools instead;
  4. the global average pool: features (B, 2048), float32.

Parameters mirror the PyTorch module names (``Mixed_5b/branch1x1/...``), each
``BasicConv2d`` holding ``kernel`` (HWIO) and the batch-norm ``scale``,
``bias``, ``mean`` and ``var``; `gjscc_jax.perception.inception_weights`
loads the file ``python -m weights_convert inception`` writes. Batch norm is
folded into the kernel and a bias when the module is applied, so each
``BasicConv2d`` is one convolution (or, for 1x1 kernels, one matmul; the
1x1 convolutions that open a block's branches share one matmul).
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from gjscc_jax.ops.conv2d import conv2d

#: Side the images are resized to.
INPUT_SIZE = 299
#: Dimension of the pool features.
FEATURES = 2048
#: Batch-norm epsilon of torchvision's ``BasicConv2d``.
BN_EPS = 1e-3


def bilinear_matrix(size_in: int, size_out: int) -> np.ndarray:
  """(size_out, size_in) float32 rows of PyTorch's bilinear weights
  (``align_corners=False``, no antialiasing): output ``i`` samples input
  ``s = max((i + 0.5) size_in / size_out - 0.5, 0)``, between rows
  ``floor(s)`` and ``floor(s) + 1`` (clamped at the last row). ``s`` is
  rounded to float32 once after a fused multiply-add of the float32 scale,
  as PyTorch's CPU kernel computes it: a source coordinate near 1000 has a
  float32 spacing of 6e-5, so the rounding shows in the weights."""
  f32 = np.float32
  scale = np.float64(f32(size_in) / f32(size_out))
  centres = np.arange(size_out, dtype=np.float64) + 0.5
  src = np.maximum((scale * centres - 0.5).astype(f32), f32(0))
  lo = src.astype(np.int64)
  hi = np.where(lo < size_in - 1, lo + 1, lo)
  frac = np.clip(src - lo.astype(f32), f32(0), f32(1)).astype(f32)
  matrix = np.zeros((size_out, size_in), f32)
  np.add.at(matrix, (np.arange(size_out), lo), f32(1) - frac)
  np.add.at(matrix, (np.arange(size_out), hi), frac)
  return matrix


def resize_bilinear(x: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
  """NHWC bilinear resize to ``size x size`` as PyTorch's ``F.interpolate(
  mode='bilinear', align_corners=False)``: two small matmuls."""
  rows = jnp.asarray(bilinear_matrix(x.shape[1], size))
  cols = jnp.asarray(bilinear_matrix(x.shape[2], size))
  x = jnp.einsum('oh,bhwc->bowc', rows, x, precision=lax.Precision.HIGHEST)
  return jnp.einsum('pw,bowc->bopc', cols, x, precision=lax.Precision.HIGHEST)


def _pool_padding(padding: int):
  return ((0, 0), (padding, padding), (padding, padding), (0, 0))


def max_pool(x: jax.Array, stride: int, padding: int = 0) -> jax.Array:
  """3x3 max-pool (padding with -inf, as PyTorch)."""
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1),
                           (1, stride, stride, 1), _pool_padding(padding))


@functools.lru_cache(maxsize=16)
def _window_counts(height: int, width: int) -> np.ndarray:
  ones = np.pad(np.ones((height, width), np.float32), 1)
  counts = sum(ones[i:i + height, j:j + width]
               for i in range(3) for j in range(3))
  return counts[None, :, :, None]


def avg_pool_exclude_pad(x: jax.Array) -> jax.Array:
  """3x3 average pool, stride 1, padding 1, the padding not counted."""
  total = lax.reduce_window(x, 0.0, lax.add, (1, 3, 3, 1), (1, 1, 1, 1),
                            _pool_padding(1))
  return total / jnp.asarray(_window_counts(*x.shape[1:3]), x.dtype)


class BasicConv(nn.Module):
  """torchvision's ``BasicConv2d``: conv (no bias) + inference BN + ReLU.

  Attributes:
    features: Output channels.
    kernel_size: (height, width) of the kernel.
    stride: Stride in both directions.
    padding: (rows, columns) of zero padding on each side.
    dtype: Computation dtype of the convolution.
  """
  features: int
  kernel_size: tuple[int, int] = (1, 1)
  stride: int = 1
  padding: tuple[int, int] = (0, 0)
  dtype: Any = jnp.float32

  @nn.compact
  def folded(self, in_channels: int) -> tuple[jax.Array, jax.Array]:
    """The kernel (HWIO, ``dtype``) and float32 bias with batch norm folded
    in: ``scale (k * x - mean) / sqrt(var + eps) + bias = k' * x + b'``."""
    kh, kw = self.kernel_size
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (kh, kw, in_channels, self.features), jnp.float32)
    bn = {name: self.param(name, init, (self.features,), jnp.float32)
          for name, init in (('scale', nn.initializers.ones),
                             ('bias', nn.initializers.zeros),
                             ('mean', nn.initializers.zeros),
                             ('var', nn.initializers.ones))}
    gain = bn['scale'] * lax.rsqrt(bn['var'] + BN_EPS)
    return (kernel * gain).astype(self.dtype), bn['bias'] - bn['mean'] * gain

  def __call__(self, x: jax.Array) -> jax.Array:
    kernel, bias = self.folded(x.shape[-1])
    x = x.astype(self.dtype)
    kh, kw = self.kernel_size
    ph, pw = self.padding
    if (kh, kw) == (1, 1) and self.stride == 1:
      y = jnp.einsum('bhwc,co->bhwo', x, kernel[0, 0])
    elif self.stride == 1:
      y = conv2d(x, kernel, ((ph, ph), (pw, pw)))
    else:
      y = lax.conv_general_dilated(
          x, kernel, (self.stride, self.stride), ((ph, ph), (pw, pw)),
          dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return jax.nn.relu(y + bias.astype(y.dtype))


def fused_1x1(x: jax.Array, convs) -> list[jax.Array]:
  """Several 1x1 `BasicConv`s of one input as one matmul, split after.

  Why: the branches of an Inception block open with 1x1 convolutions of the
  block's input; one (positions, C) x (C, sum of outputs) matmul reads the
  input once and runs at a better rate than three narrow ones
  (`benchmarks/perception_throughput.py`).
  """
  folded = [conv.folded(x.shape[-1]) for conv in convs]
  kernel = jnp.concatenate([k[0, 0] for k, _ in folded], axis=-1)
  bias = jnp.concatenate([b for _, b in folded])
  y = jnp.einsum('bhwc,co->bhwo', x.astype(kernel.dtype), kernel)
  y = jax.nn.relu(y + bias.astype(y.dtype))
  splits = np.cumsum([conv.features for conv in convs])[:-1]
  return jnp.split(y, splits, axis=-1)


def _conv(features, kernel=(1, 1), stride=1, padding=(0, 0), *, name, dtype):
  if isinstance(kernel, int):
    kernel = (kernel, kernel)
  if isinstance(padding, int):
    padding = (padding, padding)
  return BasicConv(features, kernel, stride, padding, dtype, name=name)


class InceptionA(nn.Module):
  """Mixed_5b/c/d: 1x1, 5x5, double 3x3 and (count-excluding) pool branches."""
  pool_features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = functools.partial(_conv, dtype=self.dtype)
    b1, b5, b3 = fused_1x1(x, [c(64, name='branch1x1'),
                               c(48, name='branch5x5_1'),
                               c(64, name='branch3x3dbl_1')])
    b5 = c(64, 5, padding=2, name='branch5x5_2')(b5)
    b3 = c(96, 3, padding=1, name='branch3x3dbl_2')(b3)
    b3 = c(96, 3, padding=1, name='branch3x3dbl_3')(b3)
    bp = c(self.pool_features, name='branch_pool')(avg_pool_exclude_pad(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Mixed_6a: grid reduction 35 -> 17."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = functools.partial(_conv, dtype=self.dtype)
    b3 = c(384, 3, stride=2, name='branch3x3')(x)
    bd = c(64, name='branch3x3dbl_1')(x)
    bd = c(96, 3, padding=1, name='branch3x3dbl_2')(bd)
    bd = c(96, 3, stride=2, name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, max_pool(x, 2).astype(b3.dtype)], -1)


class InceptionC(nn.Module):
  """Mixed_6b-e: factorised 7x7 branches."""
  channels_7x7: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = functools.partial(_conv, dtype=self.dtype)
    c7 = self.channels_7x7
    row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1),
                                                          padding=(3, 0))
    b1, b7, bd = fused_1x1(x, [c(192, name='branch1x1'),
                               c(c7, name='branch7x7_1'),
                               c(c7, name='branch7x7dbl_1')])
    b7 = c(c7, **row, name='branch7x7_2')(b7)
    b7 = c(192, **col, name='branch7x7_3')(b7)
    bd = c(c7, **col, name='branch7x7dbl_2')(bd)
    bd = c(c7, **row, name='branch7x7dbl_3')(bd)
    bd = c(c7, **col, name='branch7x7dbl_4')(bd)
    bd = c(192, **row, name='branch7x7dbl_5')(bd)
    bp = c(192, name='branch_pool')(avg_pool_exclude_pad(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Mixed_7a: grid reduction 17 -> 8."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = functools.partial(_conv, dtype=self.dtype)
    b3, b7 = fused_1x1(x, [c(192, name='branch3x3_1'),
                           c(192, name='branch7x7x3_1')])
    b3 = c(320, 3, stride=2, name='branch3x3_2')(b3)
    b7 = c(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = c(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = c(192, 3, stride=2, name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, max_pool(x, 2).astype(b3.dtype)], -1)


class InceptionE(nn.Module):
  """Mixed_7b/c: expanded 3x3 branches; ``max_pool_branch`` for the FID
  network's last block (Mixed_7c), else a count-excluding average pool."""
  max_pool_branch: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = functools.partial(_conv, dtype=self.dtype)
    row, col = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1),
                                                          padding=(1, 0))
    b1, b3, bd = fused_1x1(x, [c(320, name='branch1x1'),
                               c(384, name='branch3x3_1'),
                               c(448, name='branch3x3dbl_1')])
    b3 = jnp.concatenate([c(384, **row, name='branch3x3_2a')(b3),
                          c(384, **col, name='branch3x3_2b')(b3)], -1)
    bd = c(384, 3, padding=1, name='branch3x3dbl_2')(bd)
    bd = jnp.concatenate([c(384, **row, name='branch3x3dbl_3a')(bd),
                          c(384, **col, name='branch3x3dbl_3b')(bd)], -1)
    pooled = max_pool(x, 1, 1) if self.max_pool_branch else (
        avg_pool_exclude_pad(x))
    bp = c(192, name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
  """Pool features of the FID Inception-v3: (B, H, W, 3) in [-1, 1] ->
  (B, 2048) float32.

  Load the parameters with
  `gjscc_jax.perception.inception_weights.load_inception_params`.

  Attributes:
    resize_input: Resize to 299 x 299 first (pytorch-fid's default and the
      FID convention); without it the image must be at least 75 x 75.
    dtype: Computation dtype of the convolutions (float32 for FID).
  """
  resize_input: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError('FIDInceptionV3: expects RGB images as NHWC batches '
                       f'(B, H, W, 3) in [-1, 1]; got shape {x.shape}.')
    if not self.resize_input and min(x.shape[1:3]) < 75:
      raise ValueError('FIDInceptionV3: without resizing, images need at '
                       f'least 75x75 pixels; got {x.shape[1]}x{x.shape[2]}.')
    unit = (x.astype(jnp.float32) + 1.0) * 0.5
    if self.resize_input:
      unit = resize_bilinear(unit)
    h = 2.0 * unit - 1.0
    c = functools.partial(_conv, dtype=self.dtype)
    h = c(32, 3, stride=2, name='Conv2d_1a_3x3')(h)
    h = c(32, 3, name='Conv2d_2a_3x3')(h)
    h = c(64, 3, padding=1, name='Conv2d_2b_3x3')(h)
    h = max_pool(h, 2)
    h = c(80, name='Conv2d_3b_1x1')(h)
    h = c(192, 3, name='Conv2d_4a_3x3')(h)
    h = max_pool(h, 2)
    for name, pool in (('Mixed_5b', 32), ('Mixed_5c', 64), ('Mixed_5d', 64)):
      h = InceptionA(pool, self.dtype, name=name)(h)
    h = InceptionB(self.dtype, name='Mixed_6a')(h)
    for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160),
                     ('Mixed_6e', 192)):
      h = InceptionC(c7, self.dtype, name=name)(h)
    h = InceptionD(self.dtype, name='Mixed_7a')(h)
    h = InceptionE(False, self.dtype, name='Mixed_7b')(h)
    h = InceptionE(True, self.dtype, name='Mixed_7c')(h)
    return jnp.mean(h.astype(jnp.float32), axis=(1, 2))
