"""StyleGAN2's upsampling convolution, in the form each platform runs fastest.

Computes official ``conv2d_resample(x, w, f=[1, 3, 3, 1], up=2, padding=1)``
for NHWC `x` and a 3x3 HWIO kernel in the official orientation: the stride-2
transposed convolution ``t[n] = sum_j x[j] w[n - 2j]`` (output ``2H + 1``
per axis), then the FIR ``y[n] = (t[n-1] + 3 t[n] + 3 t[n+1] + t[n+2]) / 4``
per axis (``t[-1] = t[2H+1] = 0``; output ``2H``). Two exact re-orderings of
that arithmetic, picked by `lax.platform_dependent` when the program is
lowered:

* **GPU and TPU** (`transposed`): one transposed convolution, i.e. a
  convolution of the 2x-dilated input with the flipped kernel (cuDNN runs it
  as a strided data-gradient kernel, without multiplying the dilation's
  zeros), then the FIR as shifted adds at the output resolution. Why: it
  runs the StyleGAN2 forward faster than the phase form on an H200, in bf16
  and fp32 (`benchmarks/stylegan2_gpu_breakdown.py`; figures in
  benchmarks/README.md).
* **CPU** (`phases`): the transposed convolution split into its four output
  phases, each a small stride-1 convolution of the input (together the
  multiplies of one 3x3 convolution at the input resolution): an even phase
  ``t[2m] = x[m - 1] w[2] + x[m] w[0]`` and an odd one
  ``t[2m + 1] = x[m] w[1]`` per axis. The FIR is evaluated on the phases
  with shifted, weighted adds (the phase convolutions are zero-padded so
  that these are plain slices) and the four output phases are interleaved
  once. Why: on XLA:CPU the dilated form is the slower one in float32,
  forward and backward (same benchmark, `--tiny`).
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

from gjscc_jax.ops import conv2d as conv2d_lib
from gjscc_jax.ops.interleave import interleave

_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')


def _taps(x, axis, n, offsets):
  """``[x[o : o + n] for o in offsets]`` along `axis`."""
  return [lax.slice_in_dim(x, o, o + n, 1, axis) for o in offsets]


def _fir(t, axis):
  """``y[n] = (t[n-1] + 3 t[n] + 3 t[n+1] + t[n+2]) / 4`` along `axis`, for
  `t` already padded by one zero on each side (length 2H + 3 -> 2H)."""
  a, b, c, d = _taps(t, axis, t.shape[axis] - 3, range(4))
  return (a + 3 * b + 3 * c + d) * 0.25


def transposed(x, kernel, *, precision=None):
  """The accelerator form: one transposed convolution, then the FIR.

  Args:
    x: (B, H, W, I).
    kernel: (3, 3, I, O), official orientation.
    precision: passed to the convolution.

  Returns:
    (B, 2H, 2W, O) in the dtype of `x`.
  """
  t = lax.conv_general_dilated(
      x, kernel[::-1, ::-1], window_strides=(1, 1), padding=((2, 2), (2, 2)),
      lhs_dilation=(2, 2), dimension_numbers=_DIMENSION_NUMBERS,
      precision=precision)                                 # (2H + 1, 2W + 1)
  t = jnp.pad(t, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return _fir(_fir(t, 1), 2)


def _fir_on_phases(t_even, t_odd, axis):
  """The FIR on the phases of `t`.

  Args:
    t_even: ``t[2m]`` for ``m = 0..n`` (length n + 1 along `axis`).
    t_odd: ``t[2m + 1]`` for ``m = -1..n`` (length n + 2: zero-padded by
      one on each side, as the padded phase convolution delivers it).
    axis: the axis to filter.

  Returns:
    ``(y[2j], y[2j + 1])`` for ``j = 0..n-1``, each of length n.
  """
  n = t_even.shape[axis] - 1
  e0, e1 = _taps(t_even, axis, n, (0, 1))        # t[2j], t[2j+2]
  o0, o1, o2 = _taps(t_odd, axis, n, (0, 1, 2))  # t[2j-1], t[2j+1], t[2j+3]
  y_even = (o0 + 3 * e0 + 3 * o1 + e1) * 0.25
  y_odd = (e0 + 3 * o1 + 3 * e1 + o2) * 0.25
  return y_even, y_odd


def phases(x, kernel, *, precision=None):
  """The CPU form: four phase convolutions, the FIR on the phases, one
  interleave. Arguments and result as `transposed`."""

  def conv(taps_h, taps_w):
    # Padding 1 everywhere: the even phase (2 taps) gets its H + 1 outputs,
    # the odd phase (1 tap) its H outputs plus one zero on each side.
    return conv2d_lib.conv2d(x, kernel[taps_h][:, taps_w], ((1, 1), (1, 1)),
                             precision=precision)

  even_taps, odd_taps = slice(None, None, -2), slice(1, 2)  # [w2, w0], [w1]
  t_ee = conv(even_taps, even_taps)   # (H + 1, W + 1)
  t_eo = conv(even_taps, odd_taps)    # (H + 1, W + 2)
  t_oe = conv(odd_taps, even_taps)    # (H + 2, W + 1)
  t_oo = conv(odd_taps, odd_taps)     # (H + 2, W + 2)
  # FIR along H, separately for the even and odd W phases of t.
  y_e_we, y_o_we = _fir_on_phases(t_ee, t_oe, axis=1)
  y_e_wo, y_o_wo = _fir_on_phases(t_eo, t_oo, axis=1)
  # FIR along W.
  y00, y01 = _fir_on_phases(y_e_we, y_e_wo, axis=2)
  y10, y11 = _fir_on_phases(y_o_we, y_o_wo, axis=2)
  return interleave([[y00, y01], [y10, y11]])


def upsample_conv_2x(x, kernel, *, precision=None):
  """Official ``conv2d_resample(x, w, f=[1,3,3,1], up=2, padding=1)``.

  `phases` on CPU, `transposed` elsewhere (module docstring).

  Args:
    x: input of shape (B, H, W, I).
    kernel: (3, 3, I, O) kernel in HWIO layout, in the official orientation
      (official OIHW ``weight.transpose(2, 3, 1, 0)``, *not* flipped).
    precision: passed to the convolutions.

  Returns:
    Array of shape (B, 2H, 2W, O).
  """
  if kernel.shape[:2] != (3, 3):
    raise ValueError(f'upsample_conv_2x needs a 3x3 kernel, got {kernel.shape}')

  def cpu(x, kernel):
    with jax.named_scope(conv2d_lib.CPU_ROUTE_SCOPE):
      return phases(x, kernel, precision=precision)
  return lax.platform_dependent(
      x, kernel, cpu=cpu,
      default=functools.partial(transposed, precision=precision))
