"""Tests for gjscc_jax.metrics: closed forms, skimage and a SciPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal
from skimage import data
from skimage.metrics import structural_similarity

from gjscc_jax import metrics, pixels

_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def _photo_crops(size, count=4):
  """Crops of natural photos as float64 in [0, 1], shape (count, *size, 3)."""
  crops = []
  for i in range(count):
    image = getattr(data, _PHOTOS[i % len(_PHOTOS)])()
    top, left = 40 + 13 * i, 60 + 7 * i
    crops.append(image[top:top + size[0], left:left + size[1]] / 255.0)
  return np.stack(crops)


def _noisy(unit, sigma, seed=0):
  rng = np.random.default_rng(seed)
  return np.clip(unit + rng.normal(0.0, sigma, unit.shape), 0.0, 1.0)


def _model_space(unit):
  return jnp.asarray(unit * 2.0 - 1.0, jnp.float32)


# --- PSNR --------------------------------------------------------------------


def test_psnr_closed_form():
  x = jax.random.uniform(jax.random.key(0), (3, 8, 8, 3), minval=-0.5,
                         maxval=0.5)
  deltas = jnp.array([0.1, 0.02, 0.5])
  y = x + deltas[:, None, None, None]  # MSE = delta^2 exactly
  np.testing.assert_allclose(metrics.psnr(x, y),
                             10 * np.log10(4.0 / np.asarray(deltas) ** 2),
                             rtol=1e-5)
  assert np.isinf(metrics.psnr(x, x)).all()


def test_psnr_equals_uint8_psnr():
  rng = np.random.default_rng(1)
  a = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
  b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0,
              255).astype(np.uint8)
  mse = np.mean((a.astype(np.float64) - b) ** 2, axis=(1, 2, 3))
  expected = 10 * np.log10(255.0**2 / mse)
  ours = metrics.psnr(pixels.from_uint8(a), pixels.from_uint8(b))
  np.testing.assert_allclose(ours, expected, rtol=1e-5)


# --- SSIM --------------------------------------------------------------------


def _skimage_ssim(a, b):
  return np.array([
      structural_similarity(a[i], b[i], channel_axis=-1, data_range=1.0,
                            gaussian_weights=True, sigma=1.5,
                            use_sample_covariance=False)
      for i in range(a.shape[0])
  ])


def test_ssim_matches_skimage_on_photos():
  clean = _photo_crops((48, 72)).astype(np.float32)
  # Clean, noisy at two levels and a shifted copy: a range of SSIM values.
  others = np.concatenate([
      _noisy(clean, 0.05, 1), _noisy(clean, 0.3, 2),
      np.roll(clean, 2, axis=2), clean[::-1],
  ]).astype(np.float32)
  refs = np.concatenate([clean] * 4)
  expected = _skimage_ssim(refs, others)
  ours = jax.jit(metrics.ssim)(_model_space(refs), _model_space(others))
  assert expected.min() < 0.3 and expected.max() > 0.8  # spans a real range
  np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)


def test_ssim_of_identical_images_is_one():
  clean = _model_space(_photo_crops((48, 72)))
  np.testing.assert_allclose(metrics.ssim(clean, clean), 1.0, atol=1e-6)


def test_ssim_is_differentiable():
  clean = _model_space(_photo_crops((24, 24), 2))
  noisy = _model_space(_noisy(np.asarray(clean) * 0.5 + 0.5, 0.1))
  grad = jax.grad(lambda y: jnp.sum(metrics.ssim(clean, y)))(noisy)
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)
  # A small step along the gradient increases SSIM.
  step = noisy + 1e-2 * grad / jnp.max(jnp.abs(grad))
  assert np.all(metrics.ssim(clean, step) > metrics.ssim(clean, noisy))


def test_ssim_input_errors():
  with pytest.raises(ValueError, match="at least 11x11"):
    metrics.ssim(jnp.zeros((1, 10, 32, 3)), jnp.zeros((1, 10, 32, 3)))
  with pytest.raises(ValueError, match="same shape"):
    metrics.ssim(jnp.zeros((1, 16, 16, 3)), jnp.zeros((1, 16, 17, 3)))
  with pytest.raises(ValueError, match="NHWC"):
    metrics.psnr(jnp.zeros((16, 16, 3)), jnp.zeros((16, 16, 3)))


# --- MS-SSIM -----------------------------------------------------------------


def _reference_ms_ssim(a, b, num_scales):
  """MS-SSIM from the paper's definition with SciPy 'valid' 2-D correlation.

  Independent of the library code path: a full 2-D window (outer product)
  built here, `scipy.signal.correlate2d`, float64, explicit loops.
  """
  offsets = np.arange(-5, 6)
  g = np.exp(-offsets**2 / (2 * 1.5**2))
  window = np.outer(g, g) / np.outer(g, g).sum()
  c1, c2 = 0.01**2, 0.03**2
  weights = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])[:num_scales]
  weights = weights / weights.sum()
  out = np.zeros(a.shape[0])
  for n in range(a.shape[0]):
    per_channel = []
    for c in range(a.shape[-1]):
      x, y = a[n, ..., c].astype(np.float64), b[n, ..., c].astype(np.float64)
      value = 1.0
      for j in range(num_scales):
        filt = lambda img: signal.correlate2d(img, window, mode="valid")
        mx, my = filt(x), filt(y)
        sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(
            x * y) - mx * my
        cs = (2 * sxy + c2) / (sxx + syy + c2)
        if j == num_scales - 1:
          lum = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
          value *= max(np.mean(lum * cs), 0.0)**weights[j]
        else:
          value *= max(np.mean(cs), 0.0)**weights[j]
          h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
          pool = lambda img: img[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(
              axis=(1, 3))
          x, y = pool(x), pool(y)
      per_channel.append(value)
    out[n] = np.mean(per_channel)
  return out


def test_ms_ssim_five_scales_matches_reference():
  clean = _photo_crops((176, 190), 2)
  noisy = _noisy(clean, 0.1, 3)
  expected = _reference_ms_ssim(clean, noisy, 5)
  ours = jax.jit(metrics.ms_ssim)(_model_space(clean), _model_space(noisy))
  np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)
  np.testing.assert_allclose(
      metrics.ms_ssim(_model_space(clean), _model_space(clean)), 1.0,
      atol=1e-6)


def test_ms_ssim_fewer_scales_matches_reference_and_is_monotone():
  clean = np.repeat(_photo_crops((64, 64), 1), 5, axis=0)
  sigmas = [0.02, 0.05, 0.1, 0.2, 0.4]
  noisy = np.concatenate(
      [_noisy(clean[:1], s, i) for i, s in enumerate(sigmas)])
  ours = np.asarray(
      metrics.ms_ssim(_model_space(clean), _model_space(noisy), num_scales=3))
  np.testing.assert_allclose(ours, _reference_ms_ssim(clean, noisy, 3),
                             atol=1e-4, rtol=0)
  assert np.all(np.diff(ours) < 0), ours  # more noise, lower MS-SSIM
  np.testing.assert_allclose(
      metrics.ms_ssim(_model_space(clean[:1]), _model_space(clean[:1]), 3),
      1.0, atol=1e-6)


def test_ms_ssim_gradient_is_finite_even_with_negative_terms():
  x = jax.random.uniform(jax.random.key(4), (1, 44, 44, 3), minval=-1,
                         maxval=1)
  y = -x  # anti-correlated: negative contrast-structure terms
  value, grad = jax.value_and_grad(
      lambda y: jnp.sum(metrics.ms_ssim(x, y, num_scales=3)))(y)
  assert value >= 0 and np.all(np.isfinite(grad))


def test_ms_ssim_size_and_scale_errors():
  small = jnp.zeros((1, 64, 64, 3))
  with pytest.raises(ValueError, match="at least 176x176"):
    metrics.ms_ssim(small, small)
  with pytest.raises(ValueError, match="num_scales must be"):
    metrics.ms_ssim(small, small, num_scales=6)
  assert metrics.ms_ssim_min_size(5) == 176
  assert metrics.ms_ssim_min_size(3) == 44
