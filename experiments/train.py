r"""Trains a transmission scheme (DeepJSCC, GenerativeJSCC) end to end.

  python -m experiments.train --config=deepjscc_ffhq:demo --workdir=/tmp/demo
  python -m experiments.train --config=deepjscc_ffhq:bcr=1/768 \
      --config.data.image_dir=/data/ffhq --workdir=runs/deepjscc_768

One readable loop: build the scheme, optimiser and data; restore the latest
checkpoint in --workdir if there is one (so a restarted job resumes exactly
where it stopped); then jitted, data-parallel (optionally FSDP) steps over a
device mesh with the train state donated; metrics to a progress bar, JSON
lines and TensorBoard; checkpoints every `config.checkpoint_every` steps; an
SNR sweep of the final model on the test split at the end.

Multi-host: start the same command on every host with --distributed (JAX
auto-detects TPU pods and SLURM), or set JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES and JAX_PROCESS_ID (then the flag is not needed).
"""

import os
import signal
import time

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
from ml_collections import config_flags

from experiments import config_cli
from gjscc_jax import data as data_lib
from gjscc_jax.train import checkpointing
from gjscc_jax.train import reporting
from gjscc_jax.train import schemes
from gjscc_jax.train import sharding
from gjscc_jax.train import step as step_lib

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config: NAME[:ARG] from experiments/configs/, or a path.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, metrics and plots. Rerunning "
    "with the same workdir resumes the run.")
_EVAL = flags.DEFINE_bool("eval_at_end", True, "Run the SNR sweep at the end.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() with cluster "
    "auto-detection (TPU pods, SLURM, ...). Without this flag it is called "
    "only when JAX_COORDINATOR_ADDRESS is set.")

#: Fault injection for the resume tests: SIGKILL the process right after the
#: checkpoint of this step is committed, as a pre-empted job would die.
_KILL_ENV = "GJSCC_FAULT_KILL_AFTER_STEP"


def build_loss(config):
  """The MSE + lambda * LPIPS objective and its frozen params ({} if lambda=0)."""
  from gjscc_jax.losses import PerceptualLoss
  loss = PerceptualLoss(lambda_lpips=config.loss.lambda_lpips,
                        net=config.loss.lpips_net,
                        dtype=schemes.compute_dtype(config))
  frozen = {"lpips": loss.load_params()} if config.loss.lambda_lpips > 0 else {}
  return loss, frozen


def write_config(config, workdir):
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def train(config, workdir, eval_at_end=True, distributed=False):
  """Trains `config` in `workdir`; returns the final train state.

  `distributed=True` forces `jax.distributed.initialize()` (cluster
  auto-detection); otherwise it runs only when JAX_COORDINATOR_ADDRESS is set.
  """
  sharding.maybe_initialize_distributed(force=distributed)
  mesh = sharding.make_mesh(**config.mesh)
  write_config(config, workdir)
  logging.info("Mesh %s over %d devices", dict(mesh.shape), jax.device_count())

  scheme = schemes.build_scheme(config)
  loss, frozen = build_loss(config)
  tx, schedule = scheme.make_optimizer(config.total_steps)
  local_batch = sharding.batch_size_per_process(config.batch_size, mesh)
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
  kill_after = int(os.environ.get(_KILL_ENV, "-1"))
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
    if step == kill_after:
      ckpt.wait()
      os.kill(os.getpid(), signal.SIGKILL)
  bar.close()
  ckpt.wait()
  ckpt.close()

  if eval_at_end and config.get("eval") is not None:
    from gjscc_jax.evaluation import runner
    rows = runner.evaluate_params(config, scheme, state.params, mesh,
                                  os.path.join(workdir, "eval"), label=scheme.name)
    summary = {r["snr_db"]: r["mean"] for r in rows if r["metric"] == "psnr"}
    writer.write(step, {f"psnr_{s:g}dB": v for s, v in summary.items()}, prefix="eval")
  writer.close()
  return state


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _CONFIG.value is None or _WORKDIR.value is None:
    raise app.UsageError("Pass --config=NAME[:ARG] and --workdir=DIR "
                         f"(configs: {', '.join(config_cli.available_configs())}).")
  train(_CONFIG.value, _WORKDIR.value, eval_at_end=_EVAL.value,
        distributed=_DISTRIBUTED.value)


if __name__ == "__main__":
  app.run(main, flags_parser=config_cli.parse_flags)
