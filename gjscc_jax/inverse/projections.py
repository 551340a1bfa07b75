"""Constraints and regularisers on the variables of a latent search.

Pure functions of one image's variables (no batch axis): `jax.vmap` them over
images. They implement the projections and the latent regulariser of
Intermediate Layer Optimization (ILO, Daras et al., ICML 2021):

* `preserve_norm`: rescale each vector (a W+ row, a noise map) back to a
  reference norm, the "spherical optimiser" of PULSE and ILO, which keeps a
  variable on the sphere it started on.
* `project_deviation`: ILO projects the *deviation* of each variable from
  its value at the start of a round onto an L1 ball, so a round can move a
  variable by a bounded amount; the Euclidean projection onto the ball is
  optax's (`optax.projections.projection_l1_ball`).
* `geocross`: the mean squared geodesic distance between W+ rows, which
  pulls the per-layer styles towards each other (PULSE's "GEOCROSS").
"""

import jax.numpy as jnp
import optax

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


def project_deviation(x, anchor, radius):
  """Moves `x` to the closest point whose deviation from `anchor` has L1
  norm at most `radius`.

  Args:
    x: An array.
    anchor: An array of the same shape.
    radius: A positive scalar (may be traced).

  Returns:
    `anchor + P(x - anchor)`, `P` the Euclidean projection onto
    `{u : ||u||_1 <= radius}` (`optax.projections.projection_l1_ball`).
  """
  return anchor + optax.projections.projection_l1_ball(x - anchor, radius)


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

