"""The training loop: `train(config, workdir)` for every scheme.

One readable loop: build the scheme, optimiser and data; restore the latest
checkpoint in `workdir` if there is one (so a restarted job resumes exactly
where it stopped); then jitted, data-parallel (optionally FSDP) steps over a
device mesh with the train state donated; metrics to a progress bar, JSON
lines and TensorBoard; checkpoints every `config.checkpoint_every` steps; an
SNR sweep of the final model on the test split at the end.

`python -m experiments.train` is its command line.
"""

import os
import time

from absl import logging
import jax
import jax.numpy as jnp

from gjscc_jax import data as data_lib
from gjscc_jax import faults
from gjscc_jax import generated_data
from gjscc_jax import schemes
from gjscc_jax import sharding
from gjscc_jax.train import checkpointing
from gjscc_jax.train import reporting
from gjscc_jax.train import step as step_lib


def build_loss(config):
  """The MSE + lambda * LPIPS objective and its frozen params ({} if lambda=0)."""
  from gjscc_jax.losses import PerceptualLoss  # pylint: disable=import-outside-toplevel
  loss = PerceptualLoss(lambda_lpips=config.loss.lambda_lpips,
                        net=config.loss.lpips_net,
                        dtype=schemes.compute_dtype(config))
  frozen = {"lpips": loss.load_params()} if config.loss.lambda_lpips > 0 else {}
  return loss, frozen


def write_config(config, workdir):
  """Writes the resolved config to `workdir/config.json` (process 0)."""
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def train(config, workdir, eval_at_end=True, distributed=False):
  """Trains `config` in `workdir`; returns the final train state.

  Args:
    config: A training config (`experiments/configs/deepjscc_ffhq.py`,
      `generative_ffhq.py`).
    workdir: Checkpoints, metrics, `config.json` and the evaluation go here;
      an existing run in it is resumed.
    eval_at_end: Sweep the final model over `config.eval` SNRs.
    distributed: Force `jax.distributed.initialize()` (cluster
      auto-detection); otherwise it runs only when JAX_COORDINATOR_ADDRESS
      is set.
  """
  sharding.maybe_initialize_distributed(force=distributed)
  mesh = sharding.make_mesh(**config.mesh)
  write_config(config, workdir)
  logging.info("Mesh %s over %d devices", dict(mesh.shape), jax.device_count())

  scheme = schemes.build_scheme(config)
  loss, frozen = build_loss(config)
  tx, schedule = scheme.make_optimizer(config.total_steps)
  local_batch = sharding.batch_size_per_process(config.batch_size, mesh)
  generated_data.ensure_prepared(config.data)  # 'generator' data only.
  loader = data_lib.train_loader(config.data, global_batch_size=config.batch_size,
                                 seed=config.seed)
  data_iter = iter(loader)

  init_key, run_key = jax.random.split(jax.random.PRNGKey(config.seed))
  res = config.data.resolution
  dummy = jnp.zeros((local_batch, res, res, 3), jnp.float32)

  def init_state(key):
    return step_lib.create_train_state(scheme.init(key, dummy), tx, run_key)

  abstract = jax.eval_shape(init_state, init_key)
  state_sh = sharding.param_shardings(abstract, mesh)
  repl = sharding.replicated(mesh)
  frozen = jax.device_put(frozen, repl)

  ckpt = checkpointing.Checkpointer(
      os.path.join(workdir, "checkpoints"), save_every=config.checkpoint_every,
      keep=config.keep_checkpoints)
  if ckpt.latest_step() is not None:
    state = ckpt.restore(None, checkpointing.abstract_with_shardings(abstract, state_sh),
                         data_iter)
    logging.info("Resumed from step %d of %s", int(state.step), ckpt.directory)
    print(f"Resumed from step {int(state.step)}", flush=True)
  else:
    params = jax.jit(lambda k: scheme.init(k, dummy),
                     out_shardings=state_sh.params)(init_key)
    if scheme.load_pretrained is not None:
      params = scheme.load_pretrained(params)
    state = jax.jit(lambda p: step_lib.create_train_state(p, tx, run_key),
                    out_shardings=state_sh, donate_argnums=0)(params)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    logging.info("Initialised %s: %.2fM parameters, bcr %.5f", scheme.name,
                 n_params / 1e6, scheme.bandwidth_ratio)

  train_step = jax.jit(
      step_lib.make_train_step(scheme, loss, tx, tuple(config.train_snr_db), schedule),
      in_shardings=(state_sh, sharding.batch_sharding(mesh), repl, repl),
      out_shardings=(state_sh, repl), donate_argnums=(0,))

  step = int(state.step)
  base_key = jax.device_get(state.rng)  # A host copy: state is donated.
  writer = reporting.MetricWriter(workdir)
  bar = reporting.ProgressBar(config.total_steps, initial=step)
  t0, images_seen = time.perf_counter(), 0
  while step < config.total_steps:
    batch = sharding.global_batch(next(data_iter), mesh)
    state, metrics = train_step(state, batch, jax.random.fold_in(base_key, step), frozen)
    step += 1
    images_seen += config.batch_size
    bar.update()
    saving = ckpt.should_save(step) or step == config.total_steps
    if step % config.log_every == 0 or saving:
      metrics = jax.device_get(metrics)  # The only host sync in the loop.
      if metrics["nonfinite_steps"] > 0:
        ckpt.wait()
        raise FloatingPointError(
            f"Non-finite loss or gradients at or before step {step} (loss="
            f"{float(metrics['loss'])}). Training stopped; the last good "
            f"checkpoint (step {ckpt.latest_step()}) is intact in "
            f"{ckpt.directory}. Lower --config.optimizer.lr or enable "
            "--config.optimizer.grad_clip_norm, then rerun to resume.")
      elapsed = time.perf_counter() - t0
      metrics.update(steps_per_s=images_seen / config.batch_size / elapsed,
                     images_per_s=images_seen / elapsed)
      metrics.pop("nonfinite_steps")
      writer.write(step, metrics)
      bar.show({k: metrics[k] for k in ("loss", "psnr", "lr") if k in metrics})
    if saving:
      ckpt.save(step, state, data_iter, force=step == config.total_steps)
    faults.maybe_kill(faults.KILL_AFTER_STEP, step, before=ckpt.wait)
  bar.close()
  ckpt.wait()
  ckpt.close()

  if eval_at_end and config.get("eval") is not None:
    from gjscc_jax.evaluation import runner  # pylint: disable=import-outside-toplevel
    rows = runner.evaluate_params(config, scheme, state.params, mesh,
                                  os.path.join(workdir, "eval"), label=scheme.name)
    summary = {r["snr_db"]: r["mean"] for r in rows if r["metric"] == "psnr"}
    writer.write(step, {f"psnr_{s:g}dB": v for s, v in summary.items()}, prefix="eval")
  writer.close()
  return state
