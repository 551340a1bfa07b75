"""Interleaving k x k phase maps into one image ("phase to space").

A stride-k computation (a transposed convolution split into phases, the
output tiles of a Winograd convolution) yields k x k maps, each holding the
pixels at one offset ``(r, s)`` modulo k. `interleave` writes them into the
full-size image.
"""

from typing import Sequence

import jax
import jax.numpy as jnp


def interleave(phases: Sequence[Sequence[jax.Array]]) -> jax.Array:
  """``y[:, k*i + r, k*j + s] = phases[r][s][:, i, j]`` for (B, H, W, C) maps.

  Args:
    phases: k rows of k arrays of equal shape (B, H, W, C).

  Returns:
    (B, k*H, k*W, C).

  Done in two steps, each a stack on an inner axis and a reshape: the k
  phases of a row into image rows, then the k row sets into the image. Why:
  on XLA:CPU one stack of all k*k maps and a 6-D transpose made a fusion
  that ran at a fraction of memory speed (Winograd's output transform in
  `benchmarks/stylegan2_throughput.py`).
  """
  k = len(phases)
  if k == 0 or any(len(row) != k for row in phases):
    raise ValueError('interleave needs a square grid of phase maps; got rows '
                     f'of lengths {[len(row) for row in phases]}.')
  b, h, w, c = phases[0][0].shape
  rows = [jnp.stack(row, axis=3).reshape(b, h, k * w, c) for row in phases]
  return jnp.stack(rows, axis=2).reshape(b, k * h, k * w, c)
