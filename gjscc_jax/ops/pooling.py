"""2x2 max-pooling with a gradient of compares and selects.

`max_pool_2x2` has the values and the gradient of
``flax.linen.max_pool(x, (2, 2), strides=(2, 2))`` (PyTorch's
``MaxPool2d(2)``): ties send the cotangent to the first maximum of the
window in row-major order, as PyTorch and XLA do. It is written as a
reshape + max with a hand-written VJP because XLA:CPU lowers the generic
max-pool gradient to a select-and-scatter, far slower than four compares
and selects (`benchmarks/lpips_throughput.py` times LPIPS-VGG's value and
gradient, where VGG's four pools sit). On other backends the same ops are
plain elementwise work.
"""

import jax
import jax.numpy as jnp

from gjscc_jax.ops.interleave import interleave


@jax.custom_vjp
def _max_pool_2x2_even(x: jax.Array) -> jax.Array:
  b, h, w, c = x.shape
  return jnp.max(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))


def _max_pool_2x2_fwd(x):
  y = _max_pool_2x2_even(x)
  return y, (x, y)


def _max_pool_2x2_bwd(residuals, g):
  """Routes each cotangent to the first maximum of its window (row-major)."""
  x, y = residuals
  b, h, w, c = x.shape
  windows = x.reshape(b, h // 2, 2, w // 2, 2, c)
  taken = jnp.zeros(g.shape, bool)
  phases = [[None, None], [None, None]]
  for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):
    hit = (windows[:, :, i, :, j] == y) & ~taken
    taken = taken | hit
    phases[i][j] = jnp.where(hit, g, jnp.zeros_like(g))
  return (interleave(phases),)


_max_pool_2x2_even.defvjp(_max_pool_2x2_fwd, _max_pool_2x2_bwd)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max-pool with stride 2 of an NHWC batch.

  Args:
    x: (B, H, W, C); an odd last row or column is dropped, as PyTorch does.

  Returns:
    (B, H // 2, W // 2, C), ``y[b, i, j, c] = max_{r, s < 2} x[b, 2i + r,
    2j + s, c]``.
  """
  _, h, w, _ = x.shape
  return _max_pool_2x2_even(x[:, :h - h % 2, :w - w % 2, :])
