"""`interleave`: k x k phase maps into one image, against numpy indexing."""

import numpy as np
import pytest

from gjscc_jax.ops.interleave import interleave


@pytest.mark.parametrize('k', [1, 2, 3, 4])
def test_each_phase_lands_at_its_offset(k):
  rng = np.random.default_rng(k)
  phases = [[rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
             for _ in range(k)] for _ in range(k)]
  expected = np.zeros((2, 3 * k, 5 * k, 4), np.float32)
  for r in range(k):
    for s in range(k):
      expected[:, r::k, s::k] = phases[r][s]
  np.testing.assert_array_equal(np.asarray(interleave(phases)), expected)


def test_a_grid_that_is_not_square_is_refused():
  x = np.zeros((1, 2, 2, 1), np.float32)
  with pytest.raises(ValueError, match='square grid'):
    interleave([[x, x], [x]])
