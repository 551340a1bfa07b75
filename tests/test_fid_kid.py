"""FID and KID against NumPy/SciPy references on fixed features; KID's
unbiasedness tested statistically; the bootstrap intervals' coverage."""

import numpy as np
import pytest
from scipy import linalg

from gjscc_jax.perception import distribution


def _reference_fid(x, y):
  """pytorch-fid's formula: scipy.linalg.sqrtm of the covariance product."""
  mu1, mu2 = x.mean(0), y.mean(0)
  s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
  covmean = linalg.sqrtm(s1 @ s2)
  if not np.all(np.isfinite(covmean)):
    offset = np.eye(s1.shape[0]) * 1e-6
    covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
  covmean = np.real(covmean)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
               - 2 * np.trace(covmean))


def _reference_mmd2(a, b):
  """Unbiased MMD^2 with the cubic kernel, written out as double sums."""
  d = a.shape[1]
  k = lambda u, v: (u @ v / d + 1) ** 3  # noqa: E731
  n, m = len(a), len(b)
  xx = sum(k(a[i], a[j]) for i in range(n) for j in range(n) if i != j)
  yy = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j)
  xy = sum(k(a[i], b[j]) for i in range(n) for j in range(m))
  return xx / (n * (n - 1)) + yy / (m * (m - 1)) - 2 * xy / (n * m)


@pytest.mark.parametrize('n,d', [(200, 16), (40, 64)])  # n > d and n < d
def test_fid_equals_scipy_sqrtm_reference(n, d):
  rng = np.random.default_rng(n)
  mix = rng.normal(size=(d, d)) / np.sqrt(d)
  x = rng.normal(size=(n, d)) @ mix
  y = 0.8 * rng.normal(size=(n + 5, d)) @ mix + 0.3
  ours = distribution.fid(x, y)
  np.testing.assert_allclose(ours, _reference_fid(x, y), rtol=1e-6)
  assert abs(distribution.fid(x, x)) < 1e-8 * np.trace(np.cov(x.T))


def test_kid_equals_reference_on_fixed_subsets():
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(30, 5)), rng.normal(size=(25, 5)) + 0.2
  subsets_x = [rng.choice(30, 12, replace=False) for _ in range(3)]
  subsets_y = [rng.choice(25, 12, replace=False) for _ in range(3)]
  ours = distribution.kid_subsets(x, y, subsets_x, subsets_y)
  ref = [_reference_mmd2(x[i], y[j]) for i, j in zip(subsets_x, subsets_y)]
  np.testing.assert_allclose(ours, ref, rtol=1e-10)
  mean, std = distribution.kid(x, y, num_subsets=3, subset_size=12)
  assert np.isfinite(mean) and std > 0


def test_kid_is_unbiased_for_one_distribution():
  """Two samples of one distribution: MMD^2_u has expectation 0, so the mean
  of many independent estimates is within 4 standard errors of 0; the
  biased (V-statistic) estimate of the same draws is far above 0."""
  rng = np.random.default_rng(7)
  unbiased, biased = [], []
  for _ in range(300):
    x, y = rng.normal(size=(20, 4)), rng.normal(size=(20, 4))
    unbiased.append(distribution.kid(x, y)[0])
    kxx, kyy = (distribution.polynomial_kernel(a, a) for a in (x, y))
    biased.append(kxx.mean() + kyy.mean()
                  - 2 * distribution.polynomial_kernel(x, y).mean())
  unbiased, biased = np.asarray(unbiased), np.asarray(biased)
  sem = unbiased.std(ddof=1) / np.sqrt(len(unbiased))
  assert abs(unbiased.mean()) < 4 * sem
  assert biased.mean() > 10 * sem


def test_kid_of_paired_sets_skips_same_image_pairs():
  """With y_i made from x_i, k(x_i, y_i) is not an independent cross pair:
  the paired estimate skips it, and a bootstrap replicate that draws image
  0 twice (image 1 never) counts the copies as one sample."""
  rng = np.random.default_rng(3)
  x = rng.normal(size=(40, 3))
  y = x + 0.5 * rng.normal(size=x.shape) + 0.4
  kxx, kyy, kxy = (distribution.polynomial_kernel(a, b)
                   for a, b in ((x, x), (y, y), (x, y)))
  counts = np.ones(len(x))
  np.testing.assert_allclose(
      distribution._kid_counts(kxx, kyy, kxy, counts),  # pylint: disable=protected-access
      distribution.mmd2_paired(kxx, kyy, kxy))
  counts[0], counts[1] = 2, 0
  idx = np.repeat(np.arange(len(x)), counts.astype(int))
  distinct = idx[:, None] != idx[None, :]
  mean = lambda k: k[distinct].mean()  # noqa: E731
  a, b = x[idx], y[idx]
  want = (mean(distribution.polynomial_kernel(a, a))
          + mean(distribution.polynomial_kernel(b, b))
          - 2 * mean(distribution.polynomial_kernel(a, b)))
  np.testing.assert_allclose(
      distribution._kid_counts(kxx, kyy, kxy, counts), want)  # pylint: disable=protected-access


def test_bootstrap_intervals_cover_the_population_values():
  """Over 60 independent test sets of 60 paired images the 95% intervals
  cover the population FID (closed form) and KID (independent samples of
  3000) in at least 80% of the sets (percentile bootstrap at n = 60 is
  somewhat narrow: ~90% measured)."""
  shift, noise = 0.4, 0.5
  true_fid = 3 * shift ** 2 + 3 * (2 + noise ** 2 - 2 * np.sqrt(1 + noise ** 2))
  rng = np.random.default_rng(0)
  big_x = rng.normal(size=(3000, 3))
  big_y = rng.normal(size=(3000, 3)) * np.sqrt(1 + noise ** 2) + shift
  true_kid = distribution.mmd2_unbiased(
      *(distribution.polynomial_kernel(a, b)
        for a, b in ((big_x, big_x), (big_y, big_y), (big_x, big_y))))
  covered = np.zeros(2)
  for t in range(60):
    rng = np.random.default_rng(100 + t)
    x = rng.normal(size=(60, 3))
    y = x + noise * rng.normal(size=x.shape) + shift
    fid = distribution.fid_interval(x, y, num_bootstrap=100, seed=t)
    kid = distribution.kid_interval(x, y, num_bootstrap=100, seed=t,
                                    subset_size=60)
    covered += [fid.low < true_fid < fid.high, kid.low < true_kid < kid.high]
    assert fid.low < fid.value < fid.high and np.isnan(fid.spread)
    assert kid.spread == 0 and kid.n == 60
  assert np.all(covered >= 48), covered
  # Subsets of a larger set: mean and spread over 20 subsets of 30.
  value, spread = distribution.kid(x, y, num_subsets=20, subset_size=30)
  assert spread > 0 and abs(value - true_kid) < 5 * spread
