"""The training loop: `train(config, workdir)` for every scheme.

One readable loop: build the scheme and optimiser; restore the newest good
checkpoint in `workdir` if there is one (so a restarted job resumes exactly
where it stopped, on any number of processes); load the weights; start the
data stream at the restored step; then jitted, data-parallel (optionally
FSDP) steps over a device mesh with the train state donated; metrics to a
progress bar, JSON lines and TensorBoard; checkpoints every `config.checkpoint_every` steps and
when SIGTERM/SIGINT asks the job to stop; at the end, the `evaluate`
callable it is given (the entry point passes
`gjscc_jax.evaluation.runner.evaluate_params`: an SNR sweep of the final
model on the test split). Training never imports evaluation.

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
from gjscc_jax import preemption
from gjscc_jax import run_record
from gjscc_jax import schemes
from gjscc_jax import sharding
from gjscc_jax import workdir_lock
from gjscc_jax.train import checkpointing
from gjscc_jax.train import reporting
from gjscc_jax.train import step as step_lib


def build_loss(config):
  """The MSE + lambda * LPIPS objective and its frozen params ({} if lambda=0).

  Built without the loss's run-time value check (`check_inputs=False`),
  which would put a host callback in the train step: the step's targets
  are uint8 batches mapped by `pixels.from_uint8`, in [-1, 1] by
  construction, and the data pipeline checks each image's dtype and shape
  as it reads it (`gjscc_jax.data.pipeline`). A diverging reconstruction
  is caught by the step's non-finite guard instead.
  """
  from gjscc_jax.losses import PerceptualLoss  # pylint: disable=import-outside-toplevel
  loss = PerceptualLoss(lambda_lpips=config.loss.lambda_lpips,
                        net=config.loss.lpips_net,
                        dtype=schemes.compute_dtype(config),
                        remat=schemes.remat_enabled(config),
                        check_inputs=False,
                        perceptual=config.loss.get("perceptual", "lpips"))
  frozen = {"lpips": loss.load_params()} if config.loss.lambda_lpips > 0 else {}
  return loss, frozen


def use_compilation_cache(config, workdir):
  """Points JAX's persistent compilation cache at a directory; returns it.

  `config.compilation_cache_dir` when set; otherwise a cache already
  configured (`JAX_COMPILATION_CACHE_DIR` or `jax.config`) is kept;
  otherwise `workdir/compilation_cache`. A restarted run then loads its
  compiled steps from disk instead of compiling them again. Call it before
  the first compilation whose result should be cached.
  """
  directory = config.get("compilation_cache_dir")
  if not directory:
    directory = (jax.config.jax_compilation_cache_dir
                 or os.path.join(workdir, "compilation_cache"))
  if directory != jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", directory)
  logging.info("Persistent compilation cache: %s", directory)
  return directory


#: Config fields that must be integers of at least this value.
_MINIMUMS = dict(total_steps=1, log_every=1, batch_size=1, checkpoint_every=0,
                 keep_checkpoints=1)


def validate_config(config):
  """Raises on loop settings that cannot train, naming the field.

  Raises:
    ValueError: e.g. `total_steps=0`, `log_every=0`, `batch_size=0`.
  """
  for name, minimum in _MINIMUMS.items():
    value = config.get(name)
    if value is None and name == "keep_checkpoints":
      continue
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
      raise ValueError(
          f"config.{name}={value!r}: it must be an integer >= {minimum} "
          f"(pass --config.{name}=N with N >= {minimum}).")


def write_config(config, workdir, step=0):
  """Records the resolved config in `workdir` (process 0), atomically.

  The first run writes `config.json`; it is never rewritten. A resume with
  other settings that the checkpoint accepts (e.g. more steps) keeps it and
  writes `config.<step>.json` beside it (the settings from `step` on).
  """
  if jax.process_index() != 0:
    return
  text = config.to_json_best_effort(indent=2, sort_keys=True)
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    with open(path) as f:
      if f.read() == text:
        return
    path = os.path.join(workdir, f"config.{step}.json")
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def train(config, workdir, evaluate=None, distributed=False, *, eval_at_end=None):
  """Trains `config` in `workdir`; returns the final train state.

  Inputs are checked in the order a user would fix them: the checkpoint to
  resume (the newest one that restores; see `checkpointing`), the weights
  (LPIPS, pretrained), then the data; a fresh model without pretrained
  weights is initialised after the data is found.

  The workdir has one writer (`gjscc_jax.workdir_lock`). Nothing is
  written to it before every check has passed (`validate_config`, the
  checkpoint and data stream, the model, loss, data and train step):
  `config.json` once, atomically (`write_config`); `metrics.jsonl` keeps
  each step once across resumes.

  SIGTERM or SIGINT (`gjscc_jax.preemption`) stops the run after the step
  in flight: that step is checkpointed and committed, then `Preempted`
  (exit status 75) is raised; rerunning resumes. During the final SNR
  sweep the sweep is abandoned (`Preempted` says so); a rerun restores the
  final checkpoint and sweeps it.

  Args:
    config: A training config (`experiments/configs/deepjscc_ffhq.py`,
      `generative_ffhq.py`).
    workdir: Checkpoints, metrics, `config.json` and the evaluation go here;
      an existing run in it is resumed, with any number of processes.
    evaluate: Run on the final model when `config.eval` is set, as
      `evaluate(config, scheme, params, mesh, output_dir, label=scheme.name)`
      returning summary rows (`gjscc_jax.evaluation.runner.evaluate_params`);
      its PSNR per SNR is also logged under `eval/`. None skips it.
    distributed: Force `jax.distributed.initialize()` (cluster
      auto-detection); otherwise it runs only when JAX_COORDINATOR_ADDRESS
      is set.
    eval_at_end: Accepted for older callers: False is the same as
      `evaluate=None`; True needs `evaluate`.

  Raises:
    preemption.Preempted: after a stop signal, once the checkpoint is saved.
    ValueError: naming the field, for loop settings that cannot train.
    workdir_lock.DirectoryInUse: if another process trains in `workdir`.
    checkpointing.RestoreError: if checkpoints exist but none restores.
    checkpointing.DiskFull: if a checkpoint does not fit on the disk.
    ValueError: if the run was trained on another data stream.
    FloatingPointError: on a non-finite loss or gradient.
  """
  if eval_at_end is False:
    evaluate = None
  elif eval_at_end and evaluate is None:
    raise TypeError("train(eval_at_end=True) needs the evaluation to run: pass "
                    "evaluate=gjscc_jax.evaluation.runner.evaluate_params.")
  validate_config(config)
  sharding.maybe_initialize_distributed(force=distributed)
  workdir_lock.check_kind(workdir, run_record.TRAINING, "--workdir")
  with workdir_lock.DirectoryLock(workdir, "training run",
                                  jax.process_index()):
    return _train(config, workdir, evaluate)


def _train(config, workdir, evaluate):
  """`train` once the workdir is locked: every check, then the first write."""
  use_compilation_cache(config, workdir)
  mesh = sharding.make_mesh(**config.mesh)
  logging.info("Mesh %s over %d devices", dict(mesh.shape), jax.device_count())

  scheme = schemes.build_scheme(config)
  tx, schedule = scheme.make_optimizer(config.total_steps)
  shard_index, shard_count = sharding.process_shard(mesh, config.batch_size)
  local_batch = config.batch_size // shard_count
  generated_data.ensure_prepared(config.data)  # 'generator' data only.

  init_key, run_key = jax.random.split(jax.random.PRNGKey(config.seed))
  res = config.data.resolution
  dummy = jnp.zeros((local_batch, res, res, 3), jnp.float32)

  def init_state(key):
    return step_lib.create_train_state(scheme.init(key, dummy), tx, run_key)

  abstract = jax.eval_shape(init_state, init_key)
  state_sh = sharding.param_shardings(abstract, mesh)
  repl = sharding.replicated(mesh)

  # 1. The checkpoint to resume.
  # Nothing is written to the workdir before every check has passed.
  ckpt_dir = os.path.join(workdir, "checkpoints")

  def checkpointer():
    return checkpointing.Checkpointer(
        ckpt_dir, save_every=config.checkpoint_every,
        keep=config.keep_checkpoints)

  ckpt = checkpointer() if os.path.isdir(ckpt_dir) else None
  restored = None
  if ckpt is not None and ckpt.all_steps():
    restored = ckpt.restore(
        None, checkpointing.abstract_with_shardings(abstract, state_sh),
        quarantine=True)
  # 2. The weights: LPIPS, and pretrained ones grafted onto a fresh init.
  loss, frozen = build_loss(config)
  frozen = jax.device_put(frozen, repl)

  def fresh_params():
    params = jax.jit(lambda k: scheme.init(k, dummy),
                     out_shardings=state_sh.params)(init_key)
    return params if scheme.load_pretrained is None else scheme.load_pretrained(params)

  params = None
  if restored is None and scheme.load_pretrained is not None:
    params = fresh_params()
  # 3. The data: global batch `step` comes next, whoever saved the step.
  stream = data_lib.train_stream_spec(
      config.data, global_batch_size=config.batch_size, seed=config.seed)
  if restored is not None:
    state = restored.state
    checkpointing.check_data_stream(restored.meta, stream, ckpt.directory)
  else:
    params = fresh_params() if params is None else params
    state = jax.jit(lambda p: step_lib.create_train_state(p, tx, run_key),
                    out_shardings=state_sh, donate_argnums=0)(params)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    logging.info("Initialised %s: %.2fM parameters, bcr %.5f", scheme.name,
                 n_params / 1e6, scheme.bandwidth_ratio)
  step = int(state.step)
  data_iter = iter(data_lib.train_loader(
      config.data, global_batch_size=config.batch_size, seed=config.seed,
      start_step=step, shard_index=shard_index, shard_count=shard_count))

  train_step = jax.jit(
      step_lib.make_train_step(scheme, loss, tx, tuple(config.train_snr_db), schedule),
      in_shardings=(state_sh, sharding.batch_sharding(mesh), repl, repl),
      out_shardings=(state_sh, repl), donate_argnums=(0,))

  # Every check passed: the run's first writes.
  write_config(config, workdir, step)
  if jax.process_index() == 0:
    run_record.write(workdir, run_record.TRAINING, __name__)
  ckpt = checkpointer() if ckpt is None else ckpt
  if restored is not None:
    logging.info("Resumed from step %d of %s (saved by %s processes)",
                 step, ckpt.directory, restored.meta.get("process_count", "?"))
    print(f"Resumed from step {step}", flush=True)
  base_key = jax.device_get(state.rng)  # A host copy: state is donated.
  # Records of steps after the resumed one are recomputed: drop them.
  writer = reporting.MetricWriter(workdir, resume_step=step)
  bar = reporting.ProgressBar(config.total_steps, initial=step)
  window_start, window_step = time.perf_counter(), step
  with preemption.PreemptionGuard(coordinated=True) as guard:
    while step < config.total_steps:
      batch = sharding.global_batch(next(data_iter), mesh)
      state, metrics = train_step(state, batch, jax.random.fold_in(base_key, step), frozen)
      step += 1
      faults.maybe_kill(faults.TERM_AFTER_STEP, step)
      stop = guard.reached(step)
      bar.update()
      saving = stop or ckpt.should_save(step) or step == config.total_steps
      if step % config.log_every == 0 or saving:
        metrics = jax.device_get(metrics)  # The only host sync in the loop.
        if metrics["nonfinite_steps"] > 0:
          ckpt.wait()
          last = ckpt.latest_step()
          kept = (f"the last good checkpoint (step {last}) is intact in "
                  f"{ckpt.directory}" if last is not None else
                  "no checkpoint was saved before it, so a rerun starts "
                  "from scratch")
          raise FloatingPointError(
              f"Non-finite loss or gradients at or before step {step} (loss="
              f"{float(metrics['loss'])}). Training stopped; {kept}. Lower "
              "--config.optimizer.lr or enable "
              "--config.optimizer.grad_clip_norm, then rerun.")
        # Rates over the steps since the last log (the device_get above
        # waited for them), not since the start: compilation and restarts
        # do not linger in them.
        now = time.perf_counter()
        steps_per_s = (step - window_step) / (now - window_start)
        window_start, window_step = now, step
        metrics.update(steps_per_s=steps_per_s,
                       images_per_s=steps_per_s * config.batch_size)
        metrics.pop("nonfinite_steps")
        writer.write(step, metrics)
        bar.show({k: metrics[k] for k in ("loss", "psnr", "lr") if k in metrics})
      if saving:
        ckpt.save(step, state, dict(data=stream), force=True)
      if stop:
        ckpt.wait()
        ckpt.close()
        bar.close()
        writer.close()
        message = (f"Stopped by {guard.signal_name or 'a preemption notice'} "
                   f"after step {step}: its checkpoint is committed in "
                   f"{ckpt.directory}. Rerun the same command to resume.")
        logging.warning(message)
        raise preemption.Preempted(message)
      faults.maybe_kill(faults.KILL_AFTER_STEP, step, before=ckpt.wait)
  bar.close()
  ckpt.wait()
  ckpt.close()

  if evaluate is not None and config.get("eval") is not None:
    with preemption.abandon_on_signal(
        "the end-of-training evaluation",
        f"training is complete (the checkpoint of step {step} is committed "
        f"in {ckpt.directory}); rerun the same command to evaluate it."):
      rows = evaluate(config, scheme, state.params, mesh,
                      os.path.join(workdir, "eval"), label=scheme.name)
    summary = {r["snr_db"]: r["mean"] for r in rows if r["metric"] == "psnr"}
    writer.write(step, {f"psnr_{s:g}dB": v for s, v in summary.items()}, prefix="eval")
  writer.close()
  return state
