"""The trainer end to end: demo steps, exact resume after a kill, sharding, errors."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import config_cli
from experiments.configs import deepjscc_ffhq
from gjscc_jax import faults
from gjscc_jax import preemption
from gjscc_jax import schemes
from gjscc_jax import sharding
from gjscc_jax import workdir_lock
from gjscc_jax.train import step as step_lib
from tests._helpers import flip_largest_array_file
from tests._helpers import restored_params

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A tiny variant of the demo: 32x32 images, a narrow network, few images.
TINY_OVERRIDES = {
    "data.resolution": 32, "data.sample_train_size": 32, "data.sample_test_size": 8,
    "model.arch": "small", "model.num_filters": 16, "batch_size": 8, "log_every": 1,
    "eval.batch_size": 8, "eval.snrs_db": (-5.0, 5.0), "eval.num_examples": 4,
}


def tiny_config(tfds_dir, **overrides):
  config = deepjscc_ffhq.get_config("demo")
  for key, value in {**TINY_OVERRIDES, "data.tfds_dir": str(tfds_dir), **overrides}.items():
    node = config
    *path, leaf = key.split(".")
    for name in path:
      node = node[name]
    node[leaf] = value
  return config


def run_train_subprocess(workdir, tfds_dir, total_steps, env_extra=None):
  cmd = train_command(workdir, tfds_dir, total_steps)
  env = dict(os.environ, **(env_extra or {}))
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=600)


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, tfds_dir):
  """Two training steps of the (tiny) demo config, with the SNR sweep at the end."""
  from gjscc_jax.evaluation import runner
  from gjscc_jax.train import loop as train
  workdir = str(tmp_path_factory.mktemp("demo_run"))
  config = tiny_config(tfds_dir, total_steps=2, checkpoint_every=2)
  state = train.train(config, workdir, evaluate=runner.evaluate_params)
  return workdir, config, state


def test_demo_trains_two_steps_and_writes_its_outputs(demo_run):
  workdir, config, state = demo_run
  assert int(state.step) == 2
  records = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  train_records = [r for r in records if r["split"] == "train"]
  assert [r["step"] for r in train_records] == [1, 2]
  assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in train_records)
  # The PSNR logged is the PSNR of the logged MSE of [-1, 1] images.
  r = train_records[-1]
  assert r["psnr"] == pytest.approx(10 * np.log10(4 / r["mse"]), rel=1e-5)
  saved = json.load(open(os.path.join(workdir, "config.json")))
  assert saved["model"]["latent_channels"] == config.model.latent_channels
  run = json.load(open(os.path.join(workdir, "run.json")))
  assert (run["kind"], run["produced_by"]["module"]) == (
      "training", "gjscc_jax.train.loop")
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  step, _ = restored_params(workdir)
  assert step == 2


def test_end_of_training_sweep_writes_tables_plots_and_grid(demo_run):
  workdir, config, _ = demo_run
  out = os.path.join(workdir, "eval")
  rows = json.load(open(os.path.join(out, "summary.json")))
  metrics = {r["metric"] for r in rows}
  assert {"psnr", "ssim", "lpips_alex"} <= metrics
  assert sorted({r["snr_db"] for r in rows}) == [-5.0, 5.0]
  assert all(r["n"] == config.data.sample_test_size for r in rows)
  for metric in metrics:
    assert os.path.getsize(os.path.join(out, f"{metric}_vs_snr.png")) > 1000
  assert os.path.exists(os.path.join(out, "summary.csv"))
  assert os.path.exists(os.path.join(out, "grid_deepjscc.png"))


def test_evaluate_cli_puts_runs_on_one_plot(demo_run, tmp_path):
  workdir, _, _ = demo_run
  cmd = [sys.executable, "-m", "experiments.evaluate", f"--run=A={workdir}",
         f"--run=B={workdir}", f"--output_dir={tmp_path}", "--snrs=0",
         "--realisations=2", "--lpips=", "--batch_size=8"]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = json.load(open(tmp_path / "summary.json"))
  assert {r["label"] for r in rows} == {"A", "B"}
  # The 8 test images (two realisations each, averaged per image first);
  # same seed, same numbers.
  psnr = {r["label"]: r for r in rows if r["metric"] == "psnr"}
  assert psnr["A"]["n"] == 8
  assert psnr["A"]["mean"] == pytest.approx(psnr["B"]["mean"], rel=1e-6)
  assert (tmp_path / "psnr_vs_snr.png").exists()


def test_evaluate_rejects_a_directory_that_is_not_a_run(tmp_path):
  from gjscc_jax.train import runs
  with pytest.raises(FileNotFoundError, match="not a training run"):
    runs.load_run(str(tmp_path))


#: `straight_run`'s workdir -> (pid of its trainer, the refused second one).
SECOND_WRITER = {}


def train_command(workdir, tfds_dir, total_steps, *extra):
  flags = [f"--config.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
           for k, v in TINY_OVERRIDES.items()]
  return [sys.executable, "-m", "experiments.train", "--config=deepjscc_ffhq:demo",
          f"--workdir={workdir}", f"--config.data.tfds_dir={tfds_dir}",
          f"--config.total_steps={total_steps}", "--config.checkpoint_every=3",
          "--noeval_at_end", *flags, *extra]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, tfds_dir):
  """Six uninterrupted steps, checkpoints at 3 and 6: the reference.

  While it holds its workdir, a second trainer (another lr) is started on
  the same workdir: its result is kept in `second_writer`.
  """
  workdir = tmp_path_factory.mktemp("straight")
  first = subprocess.Popen(train_command(workdir, tfds_dir, 6), cwd=REPO,
                           text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
  lock = os.path.join(workdir, workdir_lock.LOCK_FILE)
  while not (os.path.exists(lock) and os.path.getsize(lock)):
    assert first.poll() is None, first.communicate()[1][-3000:]
    time.sleep(0.05)
  # Paused while holding the lock, so the second one surely finds it held.
  os.kill(first.pid, signal.SIGSTOP)
  try:
    second = subprocess.run(
        train_command(workdir, tfds_dir, 6, "--config.optimizer.lr=3e-3"),
        cwd=REPO, capture_output=True, text=True, timeout=600)
  finally:
    os.kill(first.pid, signal.SIGCONT)
  _, stderr = first.communicate(timeout=600)
  assert first.returncode == 0, stderr[-3000:]
  SECOND_WRITER[str(workdir)] = (first.pid, second)
  return workdir


def test_a_second_trainer_on_a_workdir_is_refused(straight_run):
  # Both used to exit 0, leaving two interleaved histories in metrics.jsonl
  # and the second run's checkpoints under the first run's config.json.
  first_pid, second = SECOND_WRITER[str(straight_run)]
  assert second.returncode == 1, second.stderr[-3000:]
  errors = [l for l in second.stderr.splitlines() if l.startswith("Error: ")]
  assert len(errors) == 1 and "Traceback" not in second.stderr
  assert "is in use by another training run" in errors[0]
  assert f"pid {first_pid}, started " in errors[0]
  config = json.load(open(os.path.join(straight_run, "config.json")))
  assert config["optimizer"]["lr"] == deepjscc_ffhq.get_config(
      "demo").optimizer.lr != 3e-3
  steps = [json.loads(l)["step"]
           for l in open(os.path.join(straight_run, "metrics.jsonl"))]
  assert steps == [1, 2, 3, 4, 5, 6]


def assert_same_final_params(workdir, reference):
  step_a, params_a = restored_params(reference)
  step_b, params_b = restored_params(workdir)
  assert step_a == step_b == 6
  leaves_a, leaves_b = jax.tree.leaves(params_a), jax.tree.leaves(params_b)
  assert len(leaves_a) == len(leaves_b) > 0
  for a, b in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(a, b)


def test_resume_after_kill_gives_identical_parameters(tmp_path, tfds_dir,
                                                      straight_run):
  resumed = tmp_path / "resumed"
  proc = run_train_subprocess(resumed, tfds_dir, 6,
                              {"GJSCC_FAULT_KILL_AFTER_STEP": "3"})
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  assert restored_params(resumed)[0] == 3
  proc = run_train_subprocess(resumed, tfds_dir, 6)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Resumed from step 3" in proc.stdout
  assert_same_final_params(resumed, straight_run)


def test_sigterm_checkpoints_the_step_in_flight_and_resumes(
    tmp_path, tfds_dir, straight_run):
  # A step that is not a periodic checkpoint step (3, 6), drawn at random.
  step = random.choice([1, 2, 4, 5])
  workdir = tmp_path / "terminated"
  proc = run_train_subprocess(workdir, tfds_dir, 6,
                              {faults.TERM_AFTER_STEP: str(step)})
  assert proc.returncode == preemption.EXIT_CODE, (step, proc.stderr[-3000:])
  assert f"Stopped by SIGTERM after step {step}" in proc.stderr
  assert "Traceback" not in proc.stderr
  assert restored_params(workdir)[0] == step
  proc = run_train_subprocess(workdir, tfds_dir, 6)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"Resumed from step {step}" in proc.stdout
  assert_same_final_params(workdir, straight_run)


def test_corrupt_newest_checkpoint_is_set_aside_and_the_run_finishes(
    tmp_path, tfds_dir, straight_run):
  from gjscc_jax.train import loop as train
  workdir = str(tmp_path / "corrupted")
  shutil.copytree(straight_run, workdir)  # Checkpoints of steps 3 and 6.
  flip_largest_array_file(os.path.join(workdir, "checkpoints", "6"))
  config = tiny_config(tfds_dir, total_steps=6, checkpoint_every=3)
  train.train(config, workdir, eval_at_end=False)
  assert os.listdir(os.path.join(workdir, "checkpoints", "corrupt")) == ["6"]
  # Resumed from step 3, trained steps 4-6 on the same batches again.
  assert_same_final_params(workdir, straight_run)
  # ... and logged them once: the records of steps 4-6 written before were
  # dropped at the resume.
  steps = [json.loads(l)["step"]
           for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert steps == [1, 2, 3, 4, 5, 6]


def test_non_finite_loss_stops_with_error_and_keeps_last_checkpoint(
    demo_run, tmp_path, tfds_dir):
  from gjscc_jax.train import loop as train
  workdir = str(tmp_path / "run")
  shutil.copytree(demo_run[0], workdir)  # A good run with a step-2 checkpoint.
  _, params_before = restored_params(workdir)
  bad = tiny_config(tfds_dir, total_steps=8, checkpoint_every=2)
  bad.optimizer.lr = 1e30  # Adam steps of ~1e30 overflow the network at once.
  with pytest.raises(FloatingPointError, match="Non-finite"):
    train.train(bad, workdir, eval_at_end=False)
  step, params_after = restored_params(workdir)
  for a in jax.tree.leaves(params_after):
    assert np.all(np.isfinite(a))
  if step == 2:  # Nothing newer was saved: the checkpoint is untouched.
    for a, b in zip(jax.tree.leaves(params_before), jax.tree.leaves(params_after)):
      np.testing.assert_array_equal(a, b)
  # Before any checkpoint, the message does not speak of "step None".
  bad.checkpoint_every = 100
  with pytest.raises(FloatingPointError) as error:
    train.train(bad, str(tmp_path / "fresh"), eval_at_end=False)
  assert "None" not in str(error.value)
  assert "no checkpoint was saved before it" in str(error.value)


def _two_steps(config, mesh):
  """Params and losses after two train steps on `mesh` (fixed batches)."""
  from gjscc_jax.train import loop as train
  scheme = schemes.build_scheme(config)
  loss, frozen = train.build_loss(config)
  tx, _ = scheme.make_optimizer(config.total_steps)
  rng = np.random.default_rng(0)
  res = config.data.resolution
  batches = [rng.integers(0, 256, (8, res, res, 3), dtype=np.uint8) for _ in range(2)]
  state = step_lib.create_train_state(
      scheme.init(jax.random.PRNGKey(0), jnp.zeros((8, res, res, 3))), tx,
      jax.random.PRNGKey(1))
  state_sh = sharding.param_shardings(state, mesh, min_size=256)
  split = [sh for sh in jax.tree.leaves(state_sh.params) if "fsdp" in sh.spec]
  assert bool(split) == (mesh.shape["fsdp"] > 1)  # FSDP really splits params.
  state = jax.device_put(state, state_sh)
  fn = jax.jit(step_lib.make_train_step(scheme, loss, tx, (-5.0, 5.0)),
               in_shardings=(state_sh, sharding.batch_sharding(mesh), None, None),
               out_shardings=(state_sh, None))
  losses = []
  for i, images in enumerate(batches):
    batch = jax.device_put({"image": images}, sharding.batch_sharding(mesh))
    state, metrics = fn(state, batch, jax.random.PRNGKey(10 + i), frozen)
    losses.append(float(metrics["loss"]))
  return jax.device_get(state.params), losses


def test_sharded_steps_equal_single_device_step(tfds_dir):
  """Data-parallel (8x1) and FSDP (4x2) steps match one device."""
  assert jax.device_count() == 8, "tests/conftest.py sets 8 fake CPU devices"
  config = tiny_config(tfds_dir)
  with jax.default_matmul_precision("highest"):
    params_1, losses_1 = _two_steps(config, sharding.make_mesh(devices=jax.devices()[:1]))
    for fsdp in (1, 2):
      params_n, losses_n = _two_steps(config, sharding.make_mesh(data=8 // fsdp, fsdp=fsdp))
      np.testing.assert_allclose(losses_n, losses_1, rtol=1e-5)
      for a, b in zip(jax.tree.leaves(params_n), jax.tree.leaves(params_1)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_fsdp_rule_splits_large_parameters_only():
  from jax.sharding import PartitionSpec as P
  assert sharding.fsdp_spec((3, 3, 512, 512), 4) == P(None, None, "fsdp", None)
  assert sharding.fsdp_spec((512,), 4) == P()  # Small: replicated.
  assert sharding.fsdp_spec((3, 3, 512, 512), 1) == P()
  assert sharding.fsdp_spec((1023, 1025), 2, min_size=1) == P()  # Nothing divides.


def test_bare_config_names_resolve_and_unknown_names_fail():
  path = config_cli.resolve_config_value("deepjscc_ffhq:demo")
  assert path.endswith(os.path.join("experiments", "configs", "deepjscc_ffhq.py:demo"))
  assert config_cli.resolve_config_value("x/y.py:a") == "x/y.py:a"
  with pytest.raises(ValueError, match="Available configs: .*deepjscc_ffhq"):
    config_cli.resolve_config_value("no_such_config")


def test_config_arguments_select_bcr_and_reject_typos():
  assert deepjscc_ffhq.get_config("bcr=1/768").model.latent_channels == 2
  assert deepjscc_ffhq.get_config("bcr=1/384").model.latent_channels == 4
  assert deepjscc_ffhq.get_config(None).model.latent_channels == 8
  with pytest.raises(ValueError, match="valid arguments are"):
    deepjscc_ffhq.get_config("bcr=1/192,dmeo")
  with pytest.raises(ValueError):
    deepjscc_ffhq.get_config("bcr=1/100")  # C would not be an even integer.


def test_bad_config_values_give_clear_errors(tfds_dir):
  config = tiny_config(tfds_dir)
  config.scheme = "nope"
  with pytest.raises(ValueError, match="not a known scheme"):
    schemes.build_scheme(config)
  config = tiny_config(tfds_dir)
  config.dtype = "float16"
  with pytest.raises(ValueError, match="dtype"):
    schemes.build_scheme(config)
  mesh = sharding.make_mesh()
  with pytest.raises(ValueError, match="divisible by the 8 devices"):
    sharding.batch_size_per_process(12, mesh)
  with pytest.raises(ValueError, match="fsdp"):
    sharding.make_mesh(fsdp=3)


def test_cli_reports_unknown_config_override(tmp_path):
  cmd = [sys.executable, "-m", "experiments.train", "--config=deepjscc_ffhq:demo",
         f"--workdir={tmp_path}", "--config.model.no_such_field=1"]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert "no_such_field" in proc.stderr


@pytest.mark.parametrize("field", ["total_steps", "log_every", "batch_size"])
def test_loop_settings_that_cannot_train_are_refused_naming_the_field(
    tmp_path, tfds_dir, field):
  # total_steps=0 exited 0 and wrote an evaluation of the random init as the
  # run's summary; log_every=0 and batch_size=0 ended in tracebacks.
  from gjscc_jax.train import loop as train
  config = tiny_config(tfds_dir, **{field: 0})
  with pytest.raises(ValueError, match=f"config.{field}=0: it must be an "
                     f"integer >= 1 .*--config.{field}="):
    train.train(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")  # Nothing written.


def test_a_refused_run_writes_nothing_and_a_changed_resume_keeps_config_json(
    demo_run, tmp_path, tfds_dir):
  from gjscc_jax.train import loop as train
  workdir = str(tmp_path / "run")
  shutil.copytree(demo_run[0], workdir)
  path = os.path.join(workdir, "config.json")
  first = open(path).read()
  # Another bandwidth ratio does not restore: refused, config.json intact
  # (it used to hold the rejected settings, so evaluate and invert then
  # failed on every checkpoint).
  other = tiny_config(tfds_dir, total_steps=2)
  other.model.latent_channels = 2 * other.model.latent_channels
  with pytest.raises(Exception, match="does not restore|No checkpoint"):
    train.train(other, workdir, eval_at_end=False)
  assert open(path).read() == first
  # A config error found after parsing (here a negative LPIPS weight) on a
  # fresh workdir writes nothing: no config.json, no empty checkpoints/.
  fresh = str(tmp_path / "fresh")
  bad = tiny_config(tfds_dir)
  bad.loss.lambda_lpips = -1.0
  with pytest.raises(ValueError):
    train.train(bad, fresh)
  assert not os.path.exists(fresh)
  # A resume with changed but compatible settings (one more step) keeps
  # config.json and records the new settings from step 2 on beside it.
  longer = tiny_config(tfds_dir, total_steps=3, checkpoint_every=3)
  train.train(longer, workdir, eval_at_end=False)
  assert open(path).read() == first
  assert json.load(open(os.path.join(workdir, "config.2.json")))[
      "total_steps"] == 3


def test_sigterm_during_the_end_of_training_sweep_exits_75_with_a_message(
    demo_run, tmp_path, tfds_dir, monkeypatch):
  # It exited with 143 and printed nothing.
  from gjscc_jax.evaluation import runner
  from gjscc_jax.train import loop as train
  workdir = str(tmp_path / "run")
  shutil.copytree(demo_run[0], workdir)  # Trained to its last step: only
  shutil.rmtree(os.path.join(workdir, "eval"))  # the sweep is left to do.
  monkeypatch.setenv(faults.TERM_AT_EVAL_BATCH, "1")
  with pytest.raises(preemption.Preempted) as stop:
    train.train(demo_run[1], workdir, evaluate=runner.evaluate_params)
  assert stop.value.code == preemption.EXIT_CODE == 75
  assert str(stop.value).startswith(
      "Stopped by SIGTERM during the end-of-training evaluation: training is "
      "complete (the checkpoint of step 2 is committed")
  assert "rerun the same command" in str(stop.value)
  assert not os.path.exists(os.path.join(workdir, "eval", "summary.json"))
  # The rerun sweeps it, and metrics.jsonl holds each record once.
  monkeypatch.delenv(faults.TERM_AT_EVAL_BATCH)
  train.train(demo_run[1], workdir, evaluate=runner.evaluate_params)
  assert os.path.exists(os.path.join(workdir, "eval", "summary.json"))
  records = [(r["split"], r["step"]) for r in map(
      json.loads, open(os.path.join(workdir, "metrics.jsonl")))]
  assert records == [("train", 1), ("train", 2), ("eval", 2)]
