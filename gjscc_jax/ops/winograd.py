"""Winograd F(4x4, 3x3): a 3x3 "same" convolution in a quarter of the multiplies.

A stride-1 3x3 convolution computes every 4x4 block of outputs from a 6x6
block of inputs. Winograd's minimal filtering algorithm (Lavin & Gray, "Fast
Algorithms for Convolutional Neural Networks", CVPR 2016) writes that as

    Y = A^T [ (G g G^T) * (B^T d B) ] A

per input/output channel pair, where ``*`` is elementwise over the 6x6
"transform domain" and the sum over input channels moves inside it. So the
convolution becomes: transform the input tiles (additions only), 36
independent (tiles x I) @ (I x O) matmuls, transform back (additions). The
matmuls do 36 / 16 = 2.25 multiplies per output and input channel instead of
9, which pays where XLA's matmul is fast (many channels, many tiles) and the
transforms are cheap relative to it.

The price is rounding: the interpolation points 0, +-1, +-2 give transform
coefficients up to 8, so an fp32 result differs from a direct convolution's
by ~5e-6 relative (L2; up to ~2e-5 at the worst element) instead of ~1e-7.
That is why `conv2d` takes this route only for float32 at default matmul
precision, never under ``precision='highest'``, and never for bf16.

Everything here is ``jax.numpy``; the matmul is a batched ``einsum``.
"""

import numpy as np

import jax
import jax.numpy as jnp
from jax import lax

from gjscc_jax.ops.interleave import interleave

#: Output tile side (m) and input tile side (m + 3 - 1).
TILE = 4
_SPAN = TILE + 2

# F(4, 3) with interpolation points 0, 1, -1, 2, -2 and infinity.
_INPUT_T = np.array([[4, 0, -5, 0, 1, 0],
                     [0, -4, -4, 1, 1, 0],
                     [0, 4, -4, -1, 1, 0],
                     [0, -2, -1, 2, 1, 0],
                     [0, 2, -1, -2, 1, 0],
                     [0, 4, 0, -5, 0, 1]], np.float64)            # B^T, 6x6
_KERNEL_T = np.array([[1 / 4, 0, 0],
                      [-1 / 6, -1 / 6, -1 / 6],
                      [-1 / 6, 1 / 6, -1 / 6],
                      [1 / 24, 1 / 12, 1 / 6],
                      [1 / 24, -1 / 12, 1 / 6],
                      [0, 0, 1]], np.float64)                     # G, 6x3
_OUTPUT_T = np.array([[1, 1, 1, 1, 1, 0],
                      [0, 1, -1, 2, -2, 0],
                      [0, 1, 1, 4, 4, 0],
                      [0, 1, -1, 8, -8, 1]], np.float64)          # A^T, 4x6


def _combine(parts, matrix):
  """``[sum_j matrix[i, j] * parts[j] for i]`` without the zero terms."""
  out = []
  for row in matrix:
    terms = []
    for c, p in zip(row, parts):
      if c == 1:
        terms.append(p)
      elif c == -1:
        terms.append(-p)
      elif c != 0:
        terms.append(float(c) * p)
    total = terms[0]
    for t in terms[1:]:
      total = total + t
    out.append(total)
  return out


def _two_sided(first, second, matrix):
  """``matrix`` applied along two axes, stacked (a, b): ``first`` are the
  parts along the first axis, ``second(r)`` those of a result ``r`` along
  the second."""
  return jnp.stack([jnp.stack(_combine(second(r), matrix))
                    for r in _combine(first, matrix)])


#: ``G (x) G``: row ``6a + b``, column ``3i + j`` holds ``G[a, i] G[b, j]``.
_KERNEL_T2 = np.kron(_KERNEL_T, _KERNEL_T)                    # (36, 9)


def transform_kernel(kernel: jax.Array) -> jax.Array:
  """``G g G^T`` of every channel pair: (3, 3, I, O) -> (36, I, O).

  One (36 x 9) @ (9 x I*O) matmul with ``G (x) G``. Why: XLA runs it near
  memory speed, where the same sums as 36 stacked combinations were
  markedly slower (`benchmarks/stylegan2_throughput.py`).
  """
  if kernel.ndim != 4 or kernel.shape[:2] != (3, 3):
    raise ValueError('Winograd F(4x4, 3x3) needs a (3, 3, I, O) kernel; got '
                     f'shape {kernel.shape}.')
  i, o = kernel.shape[2:]
  u = jnp.dot(jnp.asarray(_KERNEL_T2, kernel.dtype), kernel.reshape(9, i * o),
              precision=lax.Precision.HIGHEST)
  return u.reshape(_SPAN * _SPAN, i, o)


def _tile_taps(x: jax.Array, axis: int, n: int) -> list[jax.Array]:
  """Tap ``o`` (0..5) of each of `n` input tiles along `axis`.

  Tile ``t`` reads ``x[4t + o - 1]``: one zero of "same" padding before the
  first element and zeros past the end (the tiles cover a multiple of 4
  outputs; the extra ones are cropped). Each tap is a stride-4 slice of `x`,
  padded by at most a tile at either end. Why not pad the whole input first:
  XLA:CPU fuses such a pad into the producer of `x` (in StyleGAN2 the
  upsampling FIR, noise, bias, activation and style of ``conv0``), and that
  fusion runs several times slower per element
  (`benchmarks/stylegan2_throughput.py`).
  """
  size = x.shape[axis]
  taps = []
  for o in range(_SPAN):
    valid = [t for t in range(n) if 0 <= TILE * t + o - 1 < size]
    if not valid:
      shape = list(x.shape)
      shape[axis] = n
      taps.append(jnp.zeros(shape, x.dtype))
      continue
    first, last = valid[0], valid[-1]
    tap = lax.slice_in_dim(x, TILE * first + o - 1, TILE * last + o,
                           stride=TILE, axis=axis)
    if first > 0 or last < n - 1:
      config = [(0, 0, 0)] * x.ndim
      config[axis] = (first, n - 1 - last, 0)
      tap = lax.pad(tap, jnp.zeros((), x.dtype), config)
    taps.append(tap)
  return taps


def _input_tiles(x: jax.Array) -> tuple[jax.Array, tuple[int, int]]:
  """``B^T d B`` of every 6x6 input tile: (B, H, W, I) -> (36, B*h*w, I)."""
  b, height, width, channels = x.shape
  h, w = -(-height // TILE), -(-width // TILE)
  v = _two_sided(_tile_taps(x, 1, h), lambda r: _tile_taps(r, 2, w), _INPUT_T)
  return v.reshape(_SPAN * _SPAN, b * h * w, channels), (h, w)


def _output_tiles(m: jax.Array, x_shape, tiles) -> jax.Array:
  """``A^T M A``: (36, B*h*w, O) -> (B, H, W, O)."""
  b, height, width, _ = x_shape
  h, w = tiles
  out = m.shape[-1]
  m = m.reshape(_SPAN, _SPAN, b, h, w, out)
  y = interleave([_combine(list(r), _OUTPUT_T)             # 4 x 4 x (B, h,
                  for r in _combine(list(m), _OUTPUT_T)])  # w, O)
  return y[:, :height, :width]


def winograd_conv3x3(x: jax.Array, kernel: jax.Array, *,
                     precision=None) -> jax.Array:
  """3x3 stride-1 convolution with zero padding 1 ("same"), by Winograd.

  Args:
    x: (B, H, W, I) input, NHWC; any H, W >= 1.
    kernel: (3, 3, I, O) kernel, HWIO.
    precision: passed to the transform-domain matmuls.

  Returns:
    (B, H, W, O), equal to ``lax.conv_general_dilated(x, kernel, (1, 1),
    ((1, 1), (1, 1)), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))`` up to
    float rounding (see the module docstring for its size).
  """
  if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[:2] != (3, 3) or (
      kernel.shape[2] != x.shape[3]):
    raise ValueError('winograd_conv3x3 needs an NHWC input and a (3, 3, I, O) '
                     f'kernel with matching I; got {x.shape} and '
                     f'{kernel.shape}.')
  v, tiles = _input_tiles(x)
  u = transform_kernel(kernel).astype(v.dtype)
  m = jnp.einsum('tpi,tio->tpo', v, u, precision=precision)
  return _output_tiles(m, x.shape, tiles)
