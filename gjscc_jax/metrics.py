"""Image quality metrics in JAX: PSNR, SSIM and MS-SSIM, one value per image.

Inputs follow the project pixel convention (`gjscc_jax.pixels`): float NHWC
batches with values in [-1, 1]. Every metric returns an array of shape `(B,)`,
is jitted (so eager calls compile once per shape) and differentiable (so it
can also serve as a loss). Values are not clipped: if a model can leave
[-1, 1], clip (or quantise with `pixels.to_uint8`) before measuring, as an
evaluation on saved images would.

SSIM follows Wang et al. 2004 exactly as `skimage.metrics.structural_similarity`
computes it with `gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1.0, channel_axis=-1` on the [0, 1] images:

* images are mapped to [0, 1] by `(x + 1) / 2`, so `C1 = (0.01)^2` and
  `C2 = (0.03)^2`;
* local statistics use an 11 x 11 separable Gaussian window (sigma 1.5,
  radius `int(3.5 * 1.5 + 0.5) = 5`, weights normalised to sum 1) and
  population (biased) variances;
* border handling: skimage filters with `mode='reflect'` and then discards a
  5-pixel strip on every side before averaging. Every kept pixel's window lies
  entirely inside the image, so this equals a *valid* convolution: we compute
  only those `(H - 10) x (W - 10)` positions and never pad;
* the SSIM map is averaged over positions and then over colour channels.

MS-SSIM (Wang, Simoncelli and Bovik 2003) uses the same window and constants
at every scale; the image is 2 x 2 average-pooled (stride 2, an odd last row or
column is dropped) between scales. Per colour channel,
`MS-SSIM = prod_{j<M} cs_j^{w_j} * ssim_M^{w_M}`, where `cs_j` is the mean
contrast-structure term at scale `j`, `ssim_M` the mean SSIM at the coarsest
scale, and the result is averaged over channels (the convention of
`tf.image.ssim_multiscale` and `pytorch_msssim`). Negative `cs`/`ssim` values
are clamped to 0 before the fractional powers.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gjscc_jax import pixels

#: Standard MS-SSIM weights of the five scales, finest first (Wang et al. 2003).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

_K1, _K2 = 0.01, 0.03
_SIGMA = 1.5
_RADIUS = int(3.5 * _SIGMA + 0.5)  # as scipy.ndimage with truncate=3.5 -> 5
WINDOW_SIZE = 2 * _RADIUS + 1  # 11


def _check_pair(x, y, name):
  if x.shape != y.shape:
    raise ValueError(f"{name}: images must have the same shape; got "
                     f"{x.shape} and {y.shape}.")
  if x.ndim != 4:
    raise ValueError(f"{name}: expects NHWC batches (B, H, W, C); got shape "
                     f"{x.shape}. Add a batch axis with x[None] for one image.")


def _as_float(x):
  return jnp.asarray(x, jnp.promote_types(jnp.asarray(x).dtype, jnp.float32))


@jax.jit
def psnr(x, y):
  """Peak signal-to-noise ratio in dB per image, for images in [-1, 1].

  `PSNR = 10 log10(2^2 / MSE)`: the peak-to-peak range of [-1, 1] is 2, so the
  value equals the PSNR of the same images mapped to [0, 255] (PSNR is
  invariant to a common affine map of both images and the range). Identical
  images give `inf`.

  Args:
    x: images `(B, H, W, C)` in [-1, 1].
    y: images of the same shape.

  Returns:
    `(B,)` PSNR values in dB.
  """
  _check_pair(x, y, "psnr")
  mse = jnp.mean(jnp.square(_as_float(x) - _as_float(y)), axis=(1, 2, 3))
  return 10.0 * jnp.log10(pixels.DATA_RANGE**2 / mse)


def _gaussian_window():
  offsets = np.arange(-_RADIUS, _RADIUS + 1, dtype=np.float64)
  window = np.exp(-0.5 * (offsets / _SIGMA) ** 2)
  return window / window.sum()


def _filter_valid(images):
  """Separable 11-tap Gaussian filter of each channel, 'valid' borders only."""
  window = jnp.asarray(_gaussian_window(), images.dtype)
  channels = images.shape[-1]
  out = images
  for kernel_shape in ((WINDOW_SIZE, 1, 1, 1), (1, WINDOW_SIZE, 1, 1)):
    kernel = jnp.broadcast_to(window.reshape(kernel_shape),
                              kernel_shape[:3] + (channels,))
    out = jax.lax.conv_general_dilated(
        out, kernel, window_strides=(1, 1), padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=channels,
        precision=jax.lax.Precision.HIGHEST)
  return out


def _ssim_and_cs(x, y):
  """Per-channel mean SSIM and contrast-structure term, each `(B, C)`.

  `x` and `y` are float images in [0, 1] with H, W >= 11.
  """
  stats = _filter_valid(jnp.concatenate([x, y, x * x, y * y, x * y], axis=-1))
  mu_x, mu_y, e_xx, e_yy, e_xy = jnp.split(stats, 5, axis=-1)
  var_x = e_xx - mu_x * mu_x
  var_y = e_yy - mu_y * mu_y
  cov = e_xy - mu_x * mu_y
  c1, c2 = _K1**2, _K2**2  # data range 1
  luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
  cs_map = (2 * cov + c2) / (var_x + var_y + c2)
  ssim_c = jnp.mean(luminance * cs_map, axis=(1, 2))
  cs_c = jnp.mean(cs_map, axis=(1, 2))
  return ssim_c, cs_c


def _check_size(shape, min_size, name, hint):
  height, width = shape[1], shape[2]
  if min(height, width) < min_size:
    raise ValueError(
        f"{name} needs images of at least {min_size}x{min_size}; got "
        f"{height}x{width}. {hint}")


@jax.jit
def ssim(x, y):
  """Structural similarity (Wang et al. 2004) per image, as skimage computes it.

  See the module docstring for the exact settings (11 x 11 Gaussian window,
  sigma 1.5, K1 0.01, K2 0.03, valid borders, channel mean). Matches
  `skimage.metrics.structural_similarity(to_unit(x), to_unit(y),
  channel_axis=-1, data_range=1.0, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)` to float32 precision.

  Args:
    x: images `(B, H, W, C)` in [-1, 1], `H, W >= 11`.
    y: images of the same shape.

  Returns:
    `(B,)` SSIM values (1 for identical images).
  """
  _check_pair(x, y, "ssim")
  _check_size(x.shape, WINDOW_SIZE, "ssim",
              "The Gaussian window is 11x11; upsample or use PSNR.")
  x, y = (_as_float(x) + 1.0) * 0.5, (_as_float(y) + 1.0) * 0.5
  ssim_c, _ = _ssim_and_cs(x, y)
  return jnp.mean(ssim_c, axis=-1)


def ms_ssim_min_size(num_scales=5):
  """Smallest image side MS-SSIM accepts: `11 * 2^(num_scales - 1)`.

  176 pixels for the standard 5 scales.
  """
  return WINDOW_SIZE * 2 ** (num_scales - 1)


def _safe_pow(value, exponent):
  """`max(value, 0) ** exponent` with finite gradients at and below zero."""
  positive = value > 0
  base = jnp.where(positive, value, 1.0)
  return jnp.where(positive, base**exponent, 0.0)


def _avg_pool_2x2(images):
  height, width = images.shape[1] // 2 * 2, images.shape[2] // 2 * 2
  images = images[:, :height, :width]
  batch, channels = images.shape[0], images.shape[3]
  return images.reshape(batch, height // 2, 2, width // 2, 2,
                        channels).mean(axis=(2, 4))


@functools.partial(jax.jit, static_argnames="num_scales")
def ms_ssim(x, y, num_scales=5):
  """Multi-scale SSIM (Wang, Simoncelli and Bovik 2003) per image.

  Uses the standard weights `MS_SSIM_WEIGHTS` and 2 x 2 average pooling between
  scales (details in the module docstring). The coarsest scale must still fit
  the 11 x 11 window, so images need sides of at least
  `ms_ssim_min_size(num_scales)`: 176 pixels for the standard 5 scales.

  `num_scales < 5` is a non-standard option for small images (e.g. tests and
  64 x 64 demos: 3 scales need 44 pixels): it keeps the first `num_scales`
  weights (finest scales) and renormalises them to sum to 1. Values are then
  not comparable with published 5-scale MS-SSIM.

  Args:
    x: images `(B, H, W, C)` in [-1, 1].
    y: images of the same shape.
    num_scales: number of scales, 1 to 5 (static).

  Returns:
    `(B,)` MS-SSIM values in [0, 1] (1 for identical images).

  Raises:
    ValueError: for mismatched shapes, `num_scales` outside 1..5, or images
      smaller than `ms_ssim_min_size(num_scales)`.
  """
  _check_pair(x, y, "ms_ssim")
  if num_scales not in range(1, len(MS_SSIM_WEIGHTS) + 1):
    raise ValueError(f"num_scales must be 1 to {len(MS_SSIM_WEIGHTS)}; got "
                     f"{num_scales}.")
  min_size = ms_ssim_min_size(num_scales)
  hint = ("Use larger images, or fewer scales "
          f"(num_scales={num_scales - 1} needs "
          f"{ms_ssim_min_size(max(num_scales - 1, 1))} pixels)."
          if num_scales > 1 else "Use larger images.")
  _check_size(x.shape, min_size, f"ms_ssim with num_scales={num_scales}", hint)
  weights = np.asarray(MS_SSIM_WEIGHTS[:num_scales], np.float64)
  weights = weights / weights.sum()
  x, y = (_as_float(x) + 1.0) * 0.5, (_as_float(y) + 1.0) * 0.5
  value = 1.0
  for scale, weight in enumerate(weights.tolist()):
    ssim_c, cs_c = _ssim_and_cs(x, y)
    if scale == num_scales - 1:
      value = value * _safe_pow(ssim_c, weight)
    else:
      value = value * _safe_pow(cs_c, weight)
      x, y = _avg_pool_2x2(x), _avg_pool_2x2(y)
  return jnp.mean(value, axis=-1)
