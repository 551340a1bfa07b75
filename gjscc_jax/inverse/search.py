"""The ILO search over a batch: vmapped, jitted, sharded over devices.

`inverter(generator, config, objective, mesh)` returns
`(frozen, targets, keys) -> Result` for a batch of images (every argument
and result but `frozen` has a leading batch axis). Images never interact:
with a mesh the batch is split over its devices, `frozen` (generator, LPIPS,
DeepJSCC parameters) is replicated, and the devices never communicate.

Two ways to run the steps, with the same results (the same pure functions
of one image, `ilo.round_step` etc., vmapped over the batch):

* `'scan'`: the whole search is one XLA program, one `lax.scan` per round
  (`ilo.invert_one`, vmapped). One dispatch per batch.
* `'stepwise'`: one jitted, vmapped program per round for the step, called
  from a Python loop. Calls are dispatched asynchronously and nothing is
  read back, so the host never waits on the devices inside the search; the
  state buffers are donated from step to step.

`'auto'` picks `'scan'` on every backend: inside the scan the networks are
frozen, so the kernel transposes of the custom convolution gradients and
the Winograd kernel transforms (`gjscc_jax.ops.conv2d`) are hoisted out of
the loop, where a stepwise program redoes them every step; the comparison
is `benchmarks/inverse_throughput.py --loop stepwise`. `'stepwise'` stays
available (smaller programs, faster compiles).
"""

import jax
import jax.numpy as jnp

from gjscc_jax import sharding
from gjscc_jax.inverse import ilo
from gjscc_jax.ops import conv2d

LOOPS = ("auto", "scan", "stepwise")


def resolve_loop(loop: str) -> str:
  """'scan' or 'stepwise' for `loop` in LOOPS on the default backend."""
  if loop not in LOOPS:
    raise ValueError(f"loop={loop!r}: use one of {LOOPS}.")
  return "scan" if loop == "auto" else loop


def batch_inverter(generator, config, objective):
  """`ilo.invert_one` vmapped over images: `(frozen, targets, keys) -> Result`.

  Not jitted; see `inverter`.
  """
  one = lambda frozen, target, key: ilo.invert_one(
      generator, config, objective, frozen, target, key)
  batched = jax.vmap(one, in_axes=(None, 0, 0))

  def search_batch(frozen, targets, keys):
    # The networks are frozen across the scan: Winograd kernel transforms
    # are loop-invariant (gjscc_jax.ops.conv2d).
    with conv2d.loop_invariant_kernels():
      return batched(frozen, targets, keys)
  return search_batch


def jit_batched(mesh, fn, in_batched, donate=()):
  """jit; with a mesh, batched args/outputs split over it, others replicated."""
  if mesh is None:
    return jax.jit(fn, donate_argnums=donate)
  batch, repl = sharding.batch_sharding(mesh), sharding.replicated(mesh)
  return jax.jit(fn, in_shardings=tuple(batch if b else repl
                                        for b in in_batched),
                 out_shardings=batch, donate_argnums=donate)


class StepwiseInverter:
  """The batch search as one jitted program per round step (module doc)."""

  def __init__(self, generator, config, objective, mesh=None):
    ilo.check_rounds(generator, config)
    self.config = config
    g, c = generator, config
    vmap = jax.vmap
    self._start = jit_batched(mesh, vmap(
        lambda frozen, key: ilo.start_search(g, c, frozen, key), (None, 0)),
                       (False, True))
    self._rounds = []
    for r in range(config.num_rounds):
      start = vmap(lambda s, r=r: ilo.start_round(g, c, r, s))
      step = vmap(
          lambda frozen, target, key, state, i, r=r: ilo.round_step(
              g, c, objective, r, frozen, target, key, state, i),
          (None, 0, 0, 0, None))
      end = vmap(lambda frozen, state, r=r: ilo.end_round(g, c, r, frozen,
                                                          state), (None, 0))
      self._rounds.append((
          jit_batched(mesh, start, (True,)),
          jit_batched(mesh, step, (False, True, True, True, False),
                      donate=(3,)),
          jit_batched(mesh, end, (False, True))))
    self._finish = jit_batched(mesh, vmap(
        lambda frozen, s: ilo.finish(g, c, frozen, s), (None, 0)),
                               (False, True))

  def __call__(self, frozen, targets, keys) -> ilo.Result:
    search_state, run_keys = self._start(frozen, keys)
    history, index = [], 0
    for (start, step, end), steps in zip(self._rounds, self.config.steps):
      state = start(search_state)
      for _ in range(steps):
        state, terms = step(frozen, targets, run_keys, state,
                            jnp.int32(index))
        history.append(terms)
        index += 1
      search_state = end(frozen, state)
    terms = jax.tree.map(lambda *t: jnp.stack(t, axis=1), *history)
    image, best, best_step, chosen = self._finish(frozen, search_state)
    return ilo.Result(image, best, best_step, terms, chosen)


def inverter(generator, config, objective, mesh=None, loop="auto"):
  """The batch search `(frozen, targets, keys) -> Result` (module doc).

  Args:
    generator: A `LayeredGenerator`.
    config: An `ILOConfig`.
    objective: The data terms, as for `ilo.invert_one`.
    mesh: Optional device mesh (`gjscc_jax.sharding.make_mesh`); the
      batch size must then be a multiple of its device count.
    loop: 'auto', 'scan' or 'stepwise'.
  """
  if resolve_loop(loop) == "stepwise":
    return StepwiseInverter(generator, config, objective, mesh)
  ilo.check_rounds(generator, config)
  return jit_batched(mesh, batch_inverter(generator, config, objective),
              (False, True, True))
