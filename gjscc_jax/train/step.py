"""The train state and the pure, jit-able training step."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from gjscc_jax import channel as channel_lib
from gjscc_jax import pixels


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs (besides the data-iterator state).

  Attributes:
    step: Number of optimiser steps taken (int32 scalar).
    params: Trainable parameters.
    opt_state: Optimiser state.
    rng: Base PRNG key of the run; step keys are `fold_in(rng, step)`.
    nonfinite_steps: Steps whose loss or gradients were not finite. Such a
      step leaves params and optimiser state unchanged; the training loop
      stops with an error when this is non-zero.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  nonfinite_steps: jax.Array


def create_train_state(params, tx, rng):
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
      rng=rng, nonfinite_steps=jnp.zeros((), jnp.int32))


def _all_finite(tree):
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def psnr_from_mse(mse):
  """PSNR in dB of [-1, 1] images (peak-to-peak 2) from their MSE."""
  return 10.0 * jnp.log10(pixels.DATA_RANGE**2 / mse)


def make_train_step(scheme, loss, tx, train_snr_db, schedule=None):
  """Builds `train_step(state, batch, key, frozen) -> (state, metrics)`.

  Args:
    scheme: A `gjscc_jax.schemes.Scheme`.
    loss: `loss(frozen['lpips'], reconstruction, target) -> (value, aux)`, e.g.
      a `gjscc_jax.losses.PerceptualLoss`.
    tx: The optax transformation.
    train_snr_db: (low, high): one SNR per image is drawn uniformly from it.
    schedule: Optional learning-rate schedule, only for logging.

  Returns:
    The pure step function. `batch['image']` is uint8 (B, H, W, 3); `frozen`
    holds parameters that are used but never trained (LPIPS weights): passed
    as an argument, so they are neither jit constants nor optimiser state.
  """
  low, high = train_snr_db

  def train_step(state, batch, key, frozen):
    images = pixels.from_uint8(batch["image"])
    snr_key, channel_key = jax.random.split(key)
    snr_db = channel_lib.sample_snr_db(snr_key, images.shape[0], low, high)

    def objective(params):
      recon = scheme.reconstruct(params, images, snr_db, channel_key)
      value, aux = loss(frozen.get("lpips"), recon.astype(jnp.float32), images)
      if scheme.extra_loss is not None:
        extra, extra_aux = scheme.extra_loss(
            params, images, recon, jax.random.fold_in(key, 2), state.step)
        value, aux = value + extra, {**aux, **extra_aux}
      return value, aux

    (value, aux), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(value) & _all_finite(grads)
    # One conditional rather than a select per leaf: the same result, but a
    # per-leaf jnp.where(finite, ...) makes XLA compile the step much slower
    # (every output then depends on the global finiteness reduction).
    params, opt_state = jax.lax.cond(
        finite, lambda: (params, opt_state),
        lambda: (state.params, state.opt_state))
    state = state.replace(
        step=state.step + 1, params=params, opt_state=opt_state,
        nonfinite_steps=state.nonfinite_steps + (~finite).astype(jnp.int32))
    metrics = dict(aux, loss=value, psnr=psnr_from_mse(aux["mse"]),
                   grad_norm=optax.tree.norm(grads),
                   nonfinite_steps=state.nonfinite_steps)
    if schedule is not None:
      metrics["lr"] = schedule(state.step - 1)
    return state, metrics

  return train_step
