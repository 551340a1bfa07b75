"""Constraints and regularisers on the variables of a latent search.

Pure functions of one image's variables (no batch axis): `jax.vmap` them over
images. They implement the projections and the latent regulariser of
Intermediate Layer Optimization (ILO, Daras et al., ICML 2021):

* `preserve_norm`: rescale each vector (a W+ row, a noise map) back to a
  reference norm, the "spherical optimiser" of PULSE and ILO, which keeps a
  variable on the sphere it started on.
* `project_l1_ball`: Euclidean projection onto an L1 ball (Duchi et al.,
  ICML 2008). ILO projects the *deviation* of each variable from its value
  at the start of a round, so a round can move a variable by a bounded
  amount (`project_deviation`).
* `geocross`: the mean squared geodesic distance between W+ rows, which
  pulls the per-layer styles towards each other (PULSE's "GEOCROSS").
"""

import jax.numpy as jnp

#: Added to squared norms before the square root (gradient-safe at zero).
NORM_EPS = 1e-9


def vector_norms(x, vector_axes):
  """Euclidean norms over `vector_axes`, kept as size-1 axes for broadcasting.

  Args:
    x: An array.
    vector_axes: The axes that form one vector, e.g. `(-1,)` for the rows of
      W+ `(num_ws, w_dim)`, or `(0, 1)` for the channels of a noise map
      `(H, W, C)`.

  Returns:
    `sqrt(sum(x**2) + NORM_EPS)` over those axes, same rank as `x`.
  """
  return jnp.sqrt(jnp.sum(jnp.square(x), axis=vector_axes, keepdims=True)
                  + NORM_EPS)


def preserve_norm(x, reference_norms, vector_axes):
  """Rescales every vector of `x` to the matching reference norm.

  Args:
    x: The variable after an optimiser step.
    reference_norms: `vector_norms(x0, vector_axes)` of its value `x0` at
      the start of the round.
    vector_axes: As in `vector_norms`.

  Returns:
    `x / ||x|| * reference_norms`, vector by vector.
  """
  return x / vector_norms(x, vector_axes) * reference_norms


def project_l1_ball(v, radius):
  """Euclidean projection of `v` (any shape, taken as one vector) onto
  `{u : ||u||_1 <= radius}`.

  The sort-based algorithm of Duchi, Shalev-Shwartz, Singer and Chandra
  (2008): with `mu` the magnitudes sorted in decreasing order, the projection
  soft-thresholds `v` at `theta = (sum_{j <= rho} mu_j - radius) / rho`, where
  `rho` is the largest `j` with `mu_j > (sum_{i <= j} mu_i - radius) / j`.
  Points inside the ball are returned unchanged. Cost: one sort of `v.size`
  values.

  Args:
    v: An array.
    radius: A positive scalar (may be traced).

  Returns:
    The projection, with the shape and dtype of `v`.
  """
  flat = v.reshape(-1)
  magnitudes = jnp.abs(flat)
  mu = -jnp.sort(-magnitudes)
  cumulative = jnp.cumsum(mu)
  ranks = jnp.arange(1, flat.size + 1, dtype=flat.dtype)
  active = mu * ranks > cumulative - radius
  rho = jnp.max(jnp.where(active, ranks, 1.0))
  theta = (jnp.take(cumulative, rho.astype(jnp.int32) - 1) - radius) / rho
  projected = jnp.sign(flat) * jnp.maximum(magnitudes - theta, 0.0)
  inside = jnp.sum(magnitudes) <= radius
  return jnp.where(inside, flat, projected).reshape(v.shape)


def project_deviation(x, anchor, radius):
  """Moves `x` to the closest point whose deviation from `anchor` has L1
  norm at most `radius`: `anchor + project_l1_ball(x - anchor, radius)`."""
  return anchor + project_l1_ball(x - anchor, radius)


def geocross(ws):
  """Mean squared geodesic distance between the rows of W+ (PULSE/ILO).

  For rows `w_i` of `ws` (shape `(n, d)`), the angle between two rows is
  `2 atan2(||w_i - w_j||, ||w_i + w_j||)`; the regulariser is
  `mean_{i,j}(angle^2) * d / 8`. It is zero when all rows are parallel and
  has a finite gradient everywhere (the norms carry `NORM_EPS`).

  Args:
    ws: `(n, d)` latent rows; `n == 1` gives 0.

  Returns:
    A scalar.
  """
  if ws.ndim != 2:
    raise ValueError(f"geocross takes W+ rows of shape (n, d); got {ws.shape}.")
  n, d = ws.shape
  if n < 2:
    return jnp.zeros((), ws.dtype)
  diff = ws[:, None, :] - ws[None, :, :]
  total = ws[:, None, :] + ws[None, :, :]
  a = jnp.sqrt(jnp.sum(jnp.square(diff), -1) + NORM_EPS)
  b = jnp.sqrt(jnp.sum(jnp.square(total), -1) + NORM_EPS)
  angles = 2.0 * jnp.arctan2(a, b)
  return jnp.mean(jnp.square(angles)) * d / 8.0

