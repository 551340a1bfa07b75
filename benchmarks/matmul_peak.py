"""The machine's fp32 matmul rate, the yardstick the benchmarks report against.

``matmul_peaks()`` times an n x n fp32 matmul under XLA (jitted) and, when
torch imports and is asked for, under PyTorch (MKL), interleaved so that a
load burst hits both, and returns the best GFLOP/s of each; ``matmul_fns()``
gives the same matmuls as callables, to time in the rounds of a benchmark
itself.
``compiled_flops(compiled)`` is XLA's FLOP count of a compiled program, the
numerator of the rates set against it.
"""

import time


def matmul_fns(n=2048, with_torch=True):
  """``{'jax': fn[, 'torch': fn]}``: blocking n x n fp32 matmuls.

  For timing beside other peers (``2 n^3`` FLOPs a call, see
  `matmul_gflops`), so that the yardstick sees the same machine conditions
  as what it measures.
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  f = jax.jit(lambda a, b: a @ b)
  fns = {'jax': lambda: f(a, a).block_until_ready()}
  if with_torch:
    try:
      import torch  # pylint: disable=import-outside-toplevel
      t = torch.randn(n, n)
      fns['torch'] = lambda: torch.mm(t, t)
    except ImportError:
      pass
  return fns


def matmul_gflops(seconds, n=2048):
  """GFLOP/s of one n x n matmul that took `seconds`."""
  return 2 * n**3 / seconds / 1e9


def matmul_peaks(n=2048, repeats=5, with_torch=True):
  """``{'jax': GFLOP/s[, 'torch': GFLOP/s]}``: best of `repeats` after a warm-up."""
  fns = matmul_fns(n, with_torch)
  best = {}
  for fn in fns.values():
    fn()  # Warm-up (compilation, allocator, caches).
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      best[name] = min(best.get(name, float('inf')),
                       time.perf_counter() - start)
  return {name: matmul_gflops(t, n) for name, t in best.items()}


def compiled_flops(compiled):
  """FLOPs of one call of `compiled` (a ``jax.stages.Compiled``), per XLA's
  cost analysis; NaN if the backend does not count them."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get('flops', float('nan')))
