"""The compute of one training step, as XLA counts it.

`step_flops(config)` lowers and compiles the trainer's step
(`step.make_train_step` with the config's scheme, loss and optimiser) for
one global batch on one device and returns the floating-point operations
of the compiled program, from `compiled.cost_analysis()['flops']`: the
figure for comparing schemes at equal compute (equal FLOPs), which, unlike
wall time, does not move with the host's load.

XLA's count covers the whole step: forward, backward, LPIPS in the loss,
the optimiser update. It counts a multiply-add as two FLOPs and is exact
for convolutions and matmuls, approximate (per element) for the rest.
"""

import jax
import jax.numpy as jnp

from gjscc_jax import schemes
from gjscc_jax.train import loop
from gjscc_jax.train import step as step_lib


def step_flops(config):
  """FLOPs of one training step of `config` (a training config), a float.

  Nothing is trained or initialised: the state is abstract
  (`jax.eval_shape`), so only compilation time is spent.

  Raises:
    ValueError: if the backend reports no FLOP count.
  """
  scheme = schemes.build_scheme(config)
  tx, schedule = scheme.make_optimizer(config.total_steps)
  loss, frozen = loop.build_loss(config)
  res = config.data.resolution
  images = jnp.zeros((config.batch_size, res, res, 3), jnp.float32)
  key = jax.random.PRNGKey(0)
  state = jax.eval_shape(
      lambda k: step_lib.create_train_state(scheme.init(k, images), tx, k), key)
  batch = {"image": jax.ShapeDtypeStruct(images.shape, jnp.uint8)}
  train_step = step_lib.make_train_step(scheme, loss, tx,
                                        tuple(config.train_snr_db), schedule)
  compiled = jax.jit(train_step).lower(state, batch, key, frozen).compile()
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # Older JAX: one dict per program.
    cost = cost[0] if cost else {}
  if not cost or "flops" not in cost:
    raise ValueError("XLA reported no FLOP count for the training step on "
                     f"{jax.default_backend()}.")
  return float(cost["flops"])
