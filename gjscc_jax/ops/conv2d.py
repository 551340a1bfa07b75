"""Convolutions of StyleGAN2, LPIPS and DeepJSCC, in XLA:CPU's fastest form.

Every function here computes an NHWC/HWIO ``lax.conv_general_dilated`` (same
values up to float rounding, same gradients); what differs is the form XLA
compiles, chosen per convolution when it is traced:

* `conv2d` / `same_conv2d` (stride 1, explicit padding): on CPU,

  - 3x3 "same" float32 convolutions with at least `WINOGRAD_MIN_CHANNELS`
    channels and `WINOGRAD_MIN_TILES` 4x4 output tiles run as Winograd
    F(4x4, 3x3) (`gjscc_jax.ops.winograd`), never under 'highest'
    precision or for bf16 (it rounds differently, ~5e-6 relative);
  - 3x3 convolutions on maps of `EIGEN_SIDES`, and small kernels and
    unpadded ones at any size, go to XLA:CPU's Eigen kernel instead of
    YNNPACK, by padding the input so that the output is taller than the
    input (XLA leaves such
    convolutions to Eigen) and cropping;
  - input gradients use an explicitly transposed, flipped kernel (custom
    VJP), routed the same way; RGB-sized ones are a matmul plus shifted
    sums (`FEW_CHANNELS`).

  Why: XLA:CPU picks YNNPACK for every convolution it supports, and it is
  the slower kernel for those shapes (`benchmarks/conv_gradient_throughput.py`,
  `benchmarks/stylegan2_throughput.py`, `benchmarks/lpips_throughput.py`,
  `benchmarks/perception_throughput.py`).
* `conv_general_dilated` (any strides; DeepJSCC's ``nn.Conv``): the input
  gradient convolves with a physically transposed kernel. Why: autodiff's
  form, a kernel with swapped feature dimensions, runs several times slower
  inside a `lax.scan` on XLA:CPU (`benchmarks/inverse_throughput.py`).
* `square_conv` (LPIPS's layers): maps of at most `SMALL_MAP_POSITIONS`
  positions are one im2col matmul. Why: faster for VGG's last blocks on small
  images, and XLA:CPU runs a 3x3 convolution of a map smaller than its
  kernel pathologically slowly (`benchmarks/lpips_throughput.py`).

On other platforms (GPU, TPU) `conv2d` is the plain convolution:
``lax.platform_dependent`` picks the branch when the computation is lowered,
so nothing of the CPU route reaches an accelerator.
"""

import contextlib
import functools
import threading
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from gjscc_jax.ops import winograd

_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')

#: Square maps with sides in this range (inclusive) take Eigen for 3x3 and
#: larger kernels on CPU; smaller kernels take it at every size.
EIGEN_SIDES = (8, 64)


def _out_size(size: int, k: int, pad: tuple[int, int]) -> int:
  return size + pad[0] + pad[1] - k + 1


def _plain(x, kernel, padding, precision):
  return lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                  dimension_numbers=_DIMENSION_NUMBERS,
                                  precision=precision)


def _prefers_eigen(x_shape, kernel_shape, padding) -> bool:
  """Whether the CPU route helps (and XLA would otherwise pick YNNPACK)."""
  h, w = x_shape[1:3]
  kh, kw = kernel_shape[:2]
  out_h, out_w = _out_size(h, kh, padding[0]), _out_size(w, kw, padding[1])
  if out_h > h or out_w > w:
    return False  # XLA takes Eigen by itself.
  if kh < 3 and kw < 3:
    return True
  if padding == ((0, 0), (0, 0)):
    return True  # Unpadded ("valid"), e.g. Inception's stem: at any size.
  lo, hi = EIGEN_SIDES
  return lo <= h <= hi and lo <= w <= hi


def _taller_output(x, kernel, padding, precision):
  """The same convolution with extra bottom padding rows, so that its output
  is taller than its input (which XLA:CPU leaves to Eigen); the extra output
  rows are dropped."""
  h = x.shape[1]
  out_h = _out_size(h, kernel.shape[0], padding[0])
  extra = h - out_h + 1
  (top, bottom), cols = padding
  y = _plain(x, kernel, ((top, bottom + extra), cols), precision)
  return y[:, :out_h]


#: 3x3 "same" float32 convolutions run as Winograd F(4x4, 3x3) on CPU, unless
#: the highest precision is asked for, when they have at least this many
#: input and output channels and at least this many 4x4 output tiles
#: (batch x tile rows x tile columns). Why: with fewer channels the
#: transforms' memory traffic eats the saved multiplies, and the kernel
#: transform (36 I O writes per call) pays only when enough tiles share it
#: (`benchmarks/stylegan2_throughput.py`; thresholds measured in-network).
WINOGRAD_MIN_CHANNELS = 128
WINOGRAD_MIN_TILES = 256
#: The tile threshold inside `loop_invariant_kernels()`, where the kernel
#: transforms are hoisted out of the loop and only the per-tile work counts
#: (`benchmarks/inverse_throughput.py`).
WINOGRAD_MIN_TILES_HOISTED = 16

_TRACE_STATE = threading.local()


@contextlib.contextmanager
def loop_invariant_kernels():
  """Convolutions traced inside take Winograd at fewer tiles.

  For code whose convolution kernels are constant across the iterations of
  a loop it traces (a `lax.scan` of optimisation steps over frozen
  networks, as InverseJSCC's search): XLA hoists the kernel transforms out
  of the loop, so `WINOGRAD_MIN_TILES_HOISTED` applies instead of
  `WINOGRAD_MIN_TILES`. Read when a function is traced, not when it runs.
  """
  previous = getattr(_TRACE_STATE, 'hoisted', False)
  _TRACE_STATE.hoisted = True
  try:
    yield
  finally:
    _TRACE_STATE.hoisted = previous


_EXACT_PRECISIONS = ('highest', 'float32', 'HIGHEST')


def _asks_highest(precision) -> bool:
  """Whether `precision` (or, if None, the default) asks for full accuracy."""
  if precision is None:
    precision = jax.config.jax_default_matmul_precision
  if isinstance(precision, (tuple, list)):
    return any(_asks_highest(p) for p in precision if p is not None)
  if isinstance(precision, lax.Precision):
    return precision == lax.Precision.HIGHEST
  return precision in _EXACT_PRECISIONS


def _prefers_winograd(x, kernel, padding, precision) -> bool:
  b, h, w, i = x.shape
  tiles = b * -(-h // winograd.TILE) * -(-w // winograd.TILE)
  return (kernel.shape[:2] == (3, 3) and padding == ((1, 1), (1, 1))
          and x.dtype == jnp.float32 and kernel.dtype == jnp.float32
          and tiles >= (WINOGRAD_MIN_TILES_HOISTED
                        if getattr(_TRACE_STATE, 'hoisted', False)
                        else WINOGRAD_MIN_TILES)
          and min(i, kernel.shape[3]) >= WINOGRAD_MIN_CHANNELS
          and not _asks_highest(precision))


#: Name scope of every CPU-only route: it marks the route's operations in a
#: lowered program (``lowered.as_text(debug_info=True)``), so a test can check
#: that nothing of it reaches an accelerator.
CPU_ROUTE_SCOPE = 'gjscc_cpu_route'


def _cpu_route(fn):
  def routed(x, kernel):
    with jax.named_scope(CPU_ROUTE_SCOPE):
      return fn(x, kernel)
  return routed


def _routed(x, kernel, padding, precision):
  plain = functools.partial(_plain, padding=padding, precision=precision)
  if _prefers_winograd(x, kernel, padding, precision):
    cpu = functools.partial(winograd.winograd_conv3x3, precision=precision)
  elif _prefers_eigen(x.shape, kernel.shape, padding):
    cpu = functools.partial(_taller_output, padding=padding,
                            precision=precision)
  else:
    return plain(x, kernel)
  return lax.platform_dependent(x, kernel, cpu=_cpu_route(cpu), default=plain)


def _crop_negative_padding(g, padding):
  """Turns negative padding into a crop of `g` (and zero padding)."""
  for axis, (lo, hi) in ((1, padding[0]), (2, padding[1])):
    start, stop = max(-lo, 0), g.shape[axis] - max(-hi, 0)
    g = lax.slice_in_dim(g, start, stop, axis=axis)
  return g, tuple((max(lo, 0), max(hi, 0)) for lo, hi in padding)


#: Input gradients with at most this many channels (a network's first layer,
#: RGB) are one matmul and a sum of shifted slices instead of a convolution.
FEW_CHANNELS = 4


def _few_channel_input_gradient(g, kernel, padding, x_shape, precision):
  """``dx`` of a stride-1 convolution with few input channels.

  Every output position sends ``g[p] @ kernel[i, j].T`` to input position
  ``p + (i, j)`` of the padded input: one (B*H'*W', O) x (O, kh*kw*I) matmul,
  then a sum of kh*kw shifted slices. Why: XLA:CPU runs the equivalent
  convolution with I output channels far below its matmul rate
  (`benchmarks/conv_gradient_throughput.py`).
  """
  kh, kw, i, o = kernel.shape
  b, h_out, w_out, _ = g.shape
  (top, bottom), (left, right) = padding
  h_pad, w_pad = x_shape[1] + top + bottom, x_shape[2] + left + right
  taps = kernel.reshape(kh * kw * i, o)
  cols = jnp.einsum('bhwo,ko->bhwk', g, taps.astype(g.dtype),
                    precision=precision).reshape(b, h_out, w_out, kh, kw, i)
  dx = 0
  for a in range(kh):
    for c in range(kw):
      dx = dx + jnp.pad(cols[:, :, :, a, c],
                        ((0, 0), (a, h_pad - h_out - a),
                         (c, w_pad - w_out - c), (0, 0)))
  return dx[:, top:top + x_shape[1], left:left + x_shape[2]]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, kernel, padding, precision):
  return _routed(x, kernel, padding, precision)


def _conv_fwd(x, kernel, padding, precision):
  return _routed(x, kernel, padding, precision), (x, kernel)


def _conv_bwd(padding, precision, residuals, g):
  x, kernel = residuals
  # The kernel gradient is XLA's own (the transpose of the linear map
  # k -> conv(x, k); no forward convolution is evaluated for it).
  dk, = jax.linear_transpose(lambda k: _plain(x, k, padding, precision),
                             kernel)(g)
  if kernel.shape[2] <= FEW_CHANNELS:
    return (_few_channel_input_gradient(g, kernel, padding, x.shape,
                                        precision), dk)
  # The input gradient of a stride-1 convolution is the convolution of the
  # cotangent with the kernel flipped in space and with its input and output
  # channels swapped, padded by (k - 1 - lo, k - 1 - hi).
  flipped = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
  g_padding = tuple((k - 1 - lo, k - 1 - hi)
                    for k, (lo, hi) in zip(kernel.shape[:2], padding))
  g_cropped, g_padding = _crop_negative_padding(g, g_padding)
  return _routed(g_cropped, flipped, g_padding, precision), dk


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv2d(x: jax.Array, kernel: jax.Array,
           padding: Sequence[tuple[int, int]], *,
           precision=None) -> jax.Array:
  """Stride-1 convolution, NHWC input, HWIO kernel, explicit zero padding.

  Args:
    x: (B, H, W, I) input.
    kernel: (kh, kw, I, O) kernel.
    padding: ``((top, bottom), (left, right))`` zero padding, non-negative.
    precision: passed to ``lax.conv_general_dilated``.

  Returns:
    ``lax.conv_general_dilated(x, kernel, (1, 1), padding,
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))``, computed with the faster
    XLA:CPU kernel on CPU (see the module docstring).
  """
  if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[2] != x.shape[3]:
    raise ValueError('conv2d needs an NHWC input and an HWIO kernel with '
                     f'matching input channels; got {x.shape} and '
                     f'{kernel.shape}.')
  padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  if len(padding) != 2 or min(min(p) for p in padding) < 0:
    raise ValueError('conv2d padding must be ((top, bottom), (left, right)) '
                     f'of non-negative ints; got {padding}.')
  return _conv(x, kernel, padding, precision)


def same_conv2d(x: jax.Array, kernel: jax.Array, *,
                precision=None) -> jax.Array:
  """Stride-1 convolution of an odd square kernel, zero padding ``k // 2``.

  Args:
    x: (B, H, W, I) input.
    kernel: (k, k, I, O) kernel, HWIO, odd k.
    precision: passed to ``lax.conv_general_dilated``.

  Returns:
    (B, H, W, O).
  """
  k = kernel.shape[0]
  if kernel.ndim != 4 or kernel.shape[1] != k or k % 2 != 1:
    raise ValueError('same_conv2d needs a square kernel of odd size in HWIO '
                     f'layout; got shape {kernel.shape}.')
  return conv2d(x, kernel, ((k // 2, k // 2),) * 2, precision=precision)


# ----------------------------------------------------------------------------
# Any NHWC/HWIO convolution (strides, dilations): input gradient with a
# physically transposed kernel.

_NHWC_HWIO = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2),
                                      rhs_spec=(3, 2, 0, 1),
                                      out_spec=(0, 3, 1, 2))


def _is_nhwc_hwio(dimension_numbers, ndim) -> bool:
  if ndim != 4 or dimension_numbers is None:
    return False
  return lax.conv_dimension_numbers(
      (1,) * 4, (1,) * 4, dimension_numbers) == _NHWC_HWIO


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _general(x, kernel, strides, padding, lhs_dilation, rhs_dilation,
             precision):
  return lax.conv_general_dilated(x, kernel, strides, padding, lhs_dilation,
                                  rhs_dilation, _DIMENSION_NUMBERS,
                                  precision=precision)


def _general_fwd(x, kernel, *static):
  return _general(x, kernel, *static), (x, kernel)


def _general_bwd(strides, padding, lhs_dilation, rhs_dilation, precision,
                 residuals, g):
  x, kernel = residuals
  conv = functools.partial(lax.conv_general_dilated, window_strides=strides,
                           padding=padding, lhs_dilation=lhs_dilation,
                           rhs_dilation=rhs_dilation, precision=precision)
  dk, = jax.linear_transpose(
      lambda k: conv(x, k, dimension_numbers=_DIMENSION_NUMBERS), kernel)(g)
  # The same convolution, its kernel stored (H, W, O, I): its transpose in x
  # (autodiff's input gradient) then reads that kernel as an ordinary HWIO
  # one, instead of one with swapped feature dimensions.
  swapped = jnp.swapaxes(kernel, 2, 3)
  dx, = jax.linear_transpose(
      lambda x: conv(x, swapped, dimension_numbers=('NHWC', 'HWOI', 'NHWC')),
      x)(g)
  return dx, dk


_general.defvjp(_general_fwd, _general_bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None,
                         feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None):
  """``lax.conv_general_dilated`` whose input gradient XLA:CPU runs fast.

  Same signature and value (pass it as ``nn.Conv(...,
  conv_general_dilated=conv_general_dilated)``). The input gradient
  convolves with a physically transposed kernel instead of autodiff's
  kernel with swapped feature dimensions, which XLA:CPU runs several times
  slower inside a while loop (a `lax.scan` over optimisation steps); inside
  a loop the transpose of a frozen kernel is loop-invariant. NHWC/HWIO
  convolutions without feature groups take this route; any other is
  ``lax.conv_general_dilated`` itself.
  """
  if (not _is_nhwc_hwio(dimension_numbers, lhs.ndim) or
      feature_group_count != 1 or batch_group_count != 1 or
      preferred_element_type is not None or isinstance(padding, str)):
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
        dimension_numbers, feature_group_count, batch_group_count,
        precision=precision, preferred_element_type=preferred_element_type)
  padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  tup = lambda v: None if v is None else tuple(int(a) for a in v)
  return _general(lhs, rhs, tup(window_strides), padding, tup(lhs_dilation),
                  tup(rhs_dilation), precision)


# ----------------------------------------------------------------------------
# LPIPS's square convolutions: small maps as one im2col matmul.

#: Feature maps with at most this many positions are convolved by
#: `square_conv` as one matmul of im2col patches.
SMALL_MAP_POSITIONS = 64


def _conv_as_matmul(x, kernel, padding):
  """Stride-1 convolution of a small map as a single im2col matmul."""
  k = kernel.shape[0]
  _, h, w, c = x.shape
  x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  h_out, w_out = h + 2 * padding - k + 1, w + 2 * padding - k + 1
  patches = jnp.concatenate([x[:, i:i + h_out, j:j + w_out, :]
                             for i in range(k) for j in range(k)], axis=-1)
  return patches @ kernel.reshape(k * k * c, -1)  # HWIO rows: (i, j, c)


def square_conv(x: jax.Array, kernel: jax.Array, stride: int,
                padding: int) -> jax.Array:
  """Convolution with a square kernel, equal strides and equal zero padding.

  Args:
    x: (B, H, W, I) input.
    kernel: (k, k, I, O) kernel, HWIO.
    stride: Stride in both directions.
    padding: Zero padding on every side.

  Returns:
    ``lax.conv_general_dilated(x, kernel, (stride, stride), ((padding,
    padding),) * 2, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))``: stride-1
    maps of at most `SMALL_MAP_POSITIONS` positions as one im2col matmul,
    stride-1 "same" ones through `same_conv2d`, others directly.
  """
  k = kernel.shape[0]
  if stride == 1 and x.shape[1] * x.shape[2] <= SMALL_MAP_POSITIONS:
    return _conv_as_matmul(x, kernel, padding)
  if stride == 1 and 2 * padding + 1 == k:
    return same_conv2d(x, kernel)
  pad = (padding, padding)
  return lax.conv_general_dilated(x, kernel, (stride, stride), (pad, pad),
                                  dimension_numbers=_DIMENSION_NUMBERS)
