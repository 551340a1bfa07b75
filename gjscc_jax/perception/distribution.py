"""FID and KID between two sets of features, with bootstrap intervals.

Both compare the distribution of reconstructions with that of the original
test images through features ``X`` (n, d) and ``Y`` (m, d), e.g. the pool
features of `gjscc_jax.perception.inception.FIDInceptionV3`. Everything is
float64 NumPy on the host.

* **FID** (Heusel et al. 2017): ``|mu_X - mu_Y|^2 + tr(S_X) + tr(S_Y) -
  2 tr((S_X S_Y)^{1/2})`` with sample means and covariances (``ddof=1``, as
  ``pytorch-fid``). The trace of the matrix square root is computed without
  ``scipy.linalg.sqrtm`` (whose Schur iteration is slow and can return
  complex noise for the singular covariances of few images):
  ``S_X S_Y`` is similar to a symmetric PSD matrix, so the trace is the sum of
  the square roots of its eigenvalues. With ``S_X = A^T A`` and ``S_Y = B^T B``
  (``A``, ``B`` the centred features over ``sqrt(n - 1)``) those are the
  squared singular values of ``A B^T``, so ``tr((S_X S_Y)^{1/2}) =
  ||A B^T||_*`` (nuclear norm): an (n, m) SVD when there are fewer images
  than dimensions, otherwise the eigenvalues of ``S_X^{1/2} S_Y S_X^{1/2}``
  (two symmetric d x d eigendecompositions).
* **KID** (Binkowski et al. 2018): the unbiased estimate of the squared MMD
  with the cubic polynomial kernel ``k(x, y) = (x . y / d + 1)^3``,
  ``MMD^2_u = sum_{i != j} k(x_i, x_j) / (n (n - 1)) + sum_{i != j}
  k(y_i, y_j) / (m (m - 1)) - 2 sum_{i, j} k(x_i, y_j) / (n m)``, averaged
  over ``num_subsets`` random subsets of ``subset_size`` images of each set
  (drawn without replacement, as ``torch-fidelity`` and the KID paper);
  its standard deviation over subsets is reported as the field does.
  Reconstruction ``i`` is made from original ``i``, so ``k(x_i, y_i)`` is
  not a draw of ``k(x, y')`` for independent ``x, y'``: where both sets are
  used whole (and in the bootstrap) the cross term skips ``i == j`` too
  (`mmd2_paired`), which keeps the estimate unbiased; independent subset
  draws meet such pairs in a fraction ``1 / n`` of the cross terms only.
* **Intervals**: 95% percentile bootstrap over test images. Reconstruction
  ``i`` pairs with original ``i``, so a replicate resamples image indices
  with replacement and takes both sets' rows at those indices. An image
  drawn several times is one sample: KID's replicate (`mmd2_paired`)
  omits the pairs of an image with its own copies from all three sums. FID's
  replicate uses the resampled mean and covariance; FID is biased upwards
  at small n, and its bootstrap distribution shares that bias, so the
  interval measures the spread of the test-set estimate, not the distance
  at infinitely many images.
"""

import dataclasses

import numpy as np

#: Defaults of the field (torch-fidelity, the KID paper).
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
BOOTSTRAP = 100
CONFIDENCE = 0.95


def _features(x, name):
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or x.shape[0] < 2:
    raise ValueError(f'{name}: expects features (n, d) with n >= 2; got shape '
                     f'{x.shape}.')
  return x


def _check_pair(x, y):
  x, y = _features(x, 'FID/KID'), _features(y, 'FID/KID')
  if x.shape[1] != y.shape[1]:
    raise ValueError(f'FID/KID: feature dimensions differ ({x.shape[1]} and '
                     f'{y.shape[1]}).')
  return x, y


def _weighted_centred(x, counts):
  """``sqrt(c_i) (x_i - mu) / sqrt(n - 1)`` and ``mu`` for multiplicities c."""
  n = counts.sum()
  mu = counts @ x / n
  return np.sqrt(counts)[:, None] * (x - mu) / np.sqrt(n - 1), mu


def _sqrt_psd(matrix):
  values, vectors = np.linalg.eigh(matrix)
  return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def trace_sqrt_product(a: np.ndarray, b: np.ndarray) -> float:
  """``tr((A^T A B^T B)^{1/2})`` for factors ``A`` (n, d), ``B`` (m, d)."""
  if min(a.shape[0], b.shape[0]) <= a.shape[1]:
    return float(np.linalg.svd(a @ b.T, compute_uv=False).sum())
  sx = _sqrt_psd(a.T @ a)
  values = np.linalg.eigvalsh(sx @ (b.T @ b) @ sx)
  return float(np.sqrt(np.clip(values, 0, None)).sum())


def _fid_counts(x, y, cx, cy):
  a, mx = _weighted_centred(x, cx)
  b, my = _weighted_centred(y, cy)
  return float(np.sum(np.square(mx - my)) + np.sum(np.square(a))
               + np.sum(np.square(b)) - 2 * trace_sqrt_product(a, b))


def fid(x: np.ndarray, y: np.ndarray) -> float:
  """Fréchet Inception Distance between features ``x`` (n, d), ``y`` (m, d).

  Returns:
    ``|mu_x - mu_y|^2 + tr(S_x + S_y - 2 (S_x S_y)^{1/2})`` (module docstring).
  """
  x, y = _check_pair(x, y)
  return _fid_counts(x, y, np.ones(len(x)), np.ones(len(y)))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """KID's kernel matrix ``(x y^T / d + 1)^3``: (n, m)."""
  return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
  """The unbiased squared MMD from the three kernel matrices."""
  n, m = kxx.shape[0], kyy.shape[0]
  within_x = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
  within_y = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
  return float(within_x + within_y - 2 * kxy.mean())


def kid_subsets(x: np.ndarray, y: np.ndarray, subsets_x, subsets_y
                ) -> np.ndarray:
  """MMD^2_u of every pair of index subsets: (num_subsets,) float64."""
  x, y = _check_pair(x, y)
  out = []
  for ix, iy in zip(subsets_x, subsets_y, strict=True):
    a, b = x[np.asarray(ix)], y[np.asarray(iy)]
    out.append(mmd2_unbiased(polynomial_kernel(a, a), polynomial_kernel(b, b),
                             polynomial_kernel(a, b)))
  return np.asarray(out)


def kid(x: np.ndarray, y: np.ndarray, *, num_subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE, seed: int = 0
        ) -> tuple[float, float]:
  """Kernel Inception Distance: ``(mean, std)`` of MMD^2_u over subsets.

  Args:
    x, y: features (n, d) and (m, d).
    num_subsets: random subsets drawn from each set.
    subset_size: images per subset, at most ``min(n, m)``. Sets of at
      most ``subset_size`` images of equal size are taken whole, as pairs
      (`mmd2_paired`), with std 0.
    seed: seed of the subset draws.
  """
  x, y = _check_pair(x, y)
  size = min(subset_size, len(x), len(y))
  if size == len(x) == len(y):  # All images, taken as pairs.
    value = mmd2_paired(polynomial_kernel(x, x), polynomial_kernel(y, y),
                        polynomial_kernel(x, y))
    return value, 0.0
  rng = np.random.default_rng(seed)
  draw = lambda n: [rng.choice(n, size, replace=False)  # noqa: E731
                    for _ in range(num_subsets)]
  values = kid_subsets(x, y, draw(len(x)), draw(len(y)))
  return float(values.mean()), float(values.std())


def mmd2_paired(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
  """MMD^2_u of paired sets (``y_i`` made from ``x_i``): the cross term also
  skips ``i == j``, whose correlated pairs would bias it by O(1/n)."""
  n = kxx.shape[0]
  off = lambda k: (k.sum() - np.trace(k)) / (n * (n - 1))  # noqa: E731
  return float(off(kxx) + off(kyy) - 2 * off(kxy))


def _kid_counts(kxx, kyy, kxy, counts):
  """`mmd2_paired` of a bootstrap replicate with image multiplicities
  ``counts``: the copies of one image are one sample (no pairs among them)."""
  n = counts.sum()
  pairs = n * n - np.sum(counts ** 2)
  off = lambda k: (counts @ k @ counts  # noqa: E731
                   - np.sum(counts ** 2 * np.diag(k))) / pairs
  return float(off(kxx) + off(kyy) - 2 * off(kxy))


@dataclasses.dataclass(frozen=True)
class Interval:
  """A point estimate with its 95% bootstrap interval.

  Attributes:
    value: the estimate on all images.
    low, high: the 2.5% and 97.5% percentiles of the bootstrap replicates.
    spread: KID's standard deviation over subsets (NaN for FID).
    n: number of image pairs.
    num_bootstrap: bootstrap replicates.
  """
  value: float
  low: float
  high: float
  spread: float
  n: int
  num_bootstrap: int

  @property
  def half_width(self) -> float:
    """Half the interval's width: the ``ci95`` of summary rows."""
    return (self.high - self.low) / 2


def _percentiles(replicates):
  tail = (1 - CONFIDENCE) / 2 * 100
  low, high = np.percentile(replicates, [tail, 100 - tail])
  return float(low), float(high)


def _bootstrap_counts(n, num_bootstrap, seed):
  rng = np.random.default_rng(seed)
  for _ in range(num_bootstrap):
    yield np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)


def _check_paired(x, y):
  x, y = _check_pair(x, y)
  if len(x) != len(y):
    raise ValueError('bootstrap intervals pair reconstruction i with original'
                     f' i; got {len(x)} and {len(y)} feature rows.')
  return x, y


def fid_interval(x, y, *, num_bootstrap: int = BOOTSTRAP, seed: int = 0
                 ) -> Interval:
  """FID of paired features with its 95% bootstrap interval over images."""
  x, y = _check_paired(x, y)
  reps = [_fid_counts(x, y, c, c)
          for c in _bootstrap_counts(len(x), num_bootstrap, seed)]
  return Interval(fid(x, y), *_percentiles(reps), float('nan'), len(x),
                  num_bootstrap)


def kid_interval(x, y, *, num_bootstrap: int = BOOTSTRAP, seed: int = 0,
                 num_subsets: int = KID_SUBSETS,
                 subset_size: int = KID_SUBSET_SIZE) -> Interval:
  """KID of paired features: the subset mean and std (`kid`) and a 95%
  bootstrap interval over images of the all-images `mmd2_paired`."""
  x, y = _check_paired(x, y)
  value, spread = kid(x, y, num_subsets=num_subsets, subset_size=subset_size,
                      seed=seed)
  kxx, kyy = polynomial_kernel(x, x), polynomial_kernel(y, y)
  kxy = polynomial_kernel(x, y)
  reps = [_kid_counts(kxx, kyy, kxy, c)
          for c in _bootstrap_counts(len(x), num_bootstrap, seed)]
  return Interval(value, *_percentiles(reps), spread, len(x), num_bootstrap)
