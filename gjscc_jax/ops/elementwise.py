"""Activations and small reductions written in the forms XLA fuses best.

Each function computes the textbook value with the textbook gradient; only
the form differs, chosen so that XLA:CPU keeps it inside a loop fusion
rather than materialising full-size temporaries or running a slow reduction
(the StyleGAN2 and LPIPS benchmarks in `benchmarks/` time the networks that
use them). On GPU and TPU the forms cost the same as the textbook ones.
"""

import jax
import jax.numpy as jnp


def relu(x: jax.Array) -> jax.Array:
  """``max(x, 0)``, gradient 0 at 0 (as ``jax.nn.relu``), as one select.

  Why: XLA:CPU hands ``maximum(conv + bias, 0)`` to its library fusions,
  which materialise the zero and the bias at full size; a select keeps the
  bias add and the ReLU in one loop fusion.
  """
  return jnp.where(x > 0, x, jnp.zeros_like(x))


def scaled_leaky_relu(x: jax.Array, slope: float, gain: float) -> jax.Array:
  """``gain * leaky_relu(x, slope)``: ``gain x`` for ``x >= 0``, else
  ``gain slope x``.

  Why: the gain is folded into both branches of one select; a separate
  multiply by a constant becomes a materialised full-size broadcast inside
  XLA:CPU's library fusions of the backward pass.
  """
  return jnp.where(x >= 0, x * jnp.asarray(gain, x.dtype),
                   x * jnp.asarray(slope * gain, x.dtype))


def sum_leading_axes(x: jax.Array) -> jax.Array:
  """``x.sum(axis=(0, 1))`` of a (kh, kw, ...) array, as kh * kw slices added.

  Why: summed as explicit slices the reduction over a kernel's taps stays an
  elementwise fusion; a reduction over the two major axes runs far slower
  on XLA:CPU.
  """
  return sum(x[i, j] for i in range(x.shape[0]) for j in range(x.shape[1]))
