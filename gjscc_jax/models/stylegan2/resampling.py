"""Resampling with StyleGAN2's [1, 3, 3, 1] FIR filter, written for XLA.

The generator upsamples and the discriminator downsamples, always with the
separable low-pass filter ``f = outer(a, a) / 64``, ``a = [1, 3, 3, 1]``, scaled by a gain of 4
(= up^2) so that the mean is preserved:

* the skip image: ``upfirdn2d(img, f, up=2, padding=(2, 1))`` -- insert a zero
  after every pixel, pad 2 before and 1 after, filter;
* the first convolution of each block (``conv0``): a stride-2 *transposed*
  convolution with the stored 3x3 kernel (output ``2H + 1``), followed by
  ``upfirdn2d(t, f, padding=(1, 1))`` (output ``2H``).

The skip upsampling is written without zero insertion (which would
multiply the arithmetic by four) and without depthwise convolutions (slow on
XLA:CPU); along one axis it is, with ``x[-1] = x[n] = 0``::

    y[2j]     = (x[j - 1] + 3 x[j]) / 4
    y[2j + 1] = (3 x[j] + x[j + 1]) / 4

``conv0``'s transposed convolution and FIR (`upsample_conv_2x`) take a
different form per platform: `gjscc_jax.ops.upsample_conv`.

The discriminator low-passes and then strides (`fir_lowpass`, `down_conv`),
the filter again written as shifted adds.

All functions take NHWC arrays and are exact re-orderings of the official
arithmetic (agreement to float rounding, borders included).
"""

import jax.numpy as jnp
from jax import lax

from gjscc_jax.ops import upsample_conv
from gjscc_jax.ops.interleave import interleave


_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')


def _taps(x, axis, n, offsets, stride=1):
  """``[x[o : o + stride * n : stride] for o in offsets]`` along `axis`."""
  return [lax.slice_in_dim(x, o, o + stride * (n - 1) + 1, stride, axis)
          for o in offsets]


def upsample_2x(x):
  """Official ``upfirdn2d.upsample2d(x, [1, 3, 3, 1])`` for NHWC `x`.

  Args:
    x: array of shape (B, H, W, C).

  Returns:
    Array of shape (B, 2H, 2W, C).
  """
  _, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))  # x[-1] = x[n] = 0.

  def along(v, axis, n):
    before, here, after = _taps(v, axis, n, (0, 1, 2))
    return (before + 3 * here) * 0.25, (3 * here + after) * 0.25

  even, odd = along(xp, 1, h)          # (B, H, W + 2, C) each.
  y00, y01 = along(even, 2, w)
  y10, y11 = along(odd, 2, w)
  return interleave([[y00, y01], [y10, y11]])


#: Official ``conv2d_resample(x, w, f=[1,3,3,1], up=2, padding=1)``, in the
#: platform's form (`gjscc_jax.ops.upsample_conv.upsample_conv_2x`).
upsample_conv_2x = upsample_conv.upsample_conv_2x


def fir_lowpass(x, pad, stride=1):
  """Official ``upfirdn2d(x, [1, 3, 3, 1], padding=pad, down=stride)``, NHWC.

  Pads `pad` zeros on every side, filters with ``outer(a, a) / 64``,
  ``a = [1, 3, 3, 1]``, and keeps every `stride`-th output.
  """
  x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  for axis in (1, 2):
    n = (x.shape[axis] - 4) // stride + 1
    a, b, c, d = _taps(x, axis, n, range(4), stride)
    x = (a + 3 * b + 3 * c + d) * 0.125
  return x


def down_conv(x, kernel, *, precision=None):
  """Official ``conv2d_resample(x, w, f=[1, 3, 3, 1], down=2, padding=k // 2)``.

  Args:
    x: (B, H, W, I) input, H and W even.
    kernel: (k, k, I, O) kernel, HWIO, k = 1 or 3.
    precision: passed to the convolution.

  Returns:
    (B, H / 2, W / 2, O).
  """
  k = kernel.shape[0]
  if k == 1:  # Downsample first, then the 1x1 convolution.
    x = fir_lowpass(x, 1, stride=2)
    return lax.conv_general_dilated(x, kernel, (1, 1), 'VALID',
                                    dimension_numbers=_DIMENSION_NUMBERS,
                                    precision=precision)
  x = fir_lowpass(x, k // 2 + 1)
  return lax.conv_general_dilated(x, kernel, (2, 2), 'VALID',
                                  dimension_numbers=_DIMENSION_NUMBERS,
                                  precision=precision)
