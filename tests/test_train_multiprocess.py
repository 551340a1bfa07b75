"""Training, resuming and the end-of-training sweep on 1 and 2 processes.

One run of two `jax.distributed` processes on localhost (2 fake CPU devices
each, as a 2-host pod would be) serves every check: it resumes a one-process
run stopped after step 2, trains steps 3 and 4 (checkpointing each) and
sweeps the final model; its step-3 checkpoint is then resumed by one
process. The final parameters of both resumed runs must equal an
uninterrupted one-process run's (up to float reassociation: the devices
split the batch differently), and the sweep's summary must equal a
one-process sweep of the same parameters: every test image transmitted once,
whatever the number of processes.

A stopped run is its directory without the checkpoints after the step it
stopped at, exactly what a kill after that step's commit leaves
(test_train.py kills real processes).
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments.configs import deepjscc_ffhq
from gjscc_jax import data
from gjscc_jax import sharding
from gjscc_jax.evaluation import runner
from gjscc_jax.train import loop
from gjscc_jax.train import runs
from tests._helpers import restored_params

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 4

#: The tiny demo: 32x32 images, a narrow network, 8 test images, 2 SNRs.
OVERRIDES = {
    "data.resolution": 32, "data.sample_train_size": 32,
    "data.sample_test_size": 8, "model.arch": "small", "model.num_filters": 16,
    "batch_size": 8, "log_every": 1, "optimizer.warmup_steps": 1,
    "total_steps": STEPS, "checkpoint_every": 1, "eval.batch_size": 8,
    "eval.snrs_db": (-5.0, 5.0), "eval.lpips_nets": (), "eval.num_examples": 4,
}


def _flag(key, value):
  if isinstance(value, tuple):
    value = "(" + "".join(f"{v!r}," for v in value) + ")"
  return f"--config.{key}={value}"


def launch(workdir, tfds_dir, processes, env_extra=None):
  """Starts `experiments.train` as `processes` processes; returns them."""
  port = None
  if processes > 1:
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      port = s.getsockname()[1]
  cmd = [sys.executable, "-m", "experiments.train",
         "--config=deepjscc_ffhq:demo", f"--workdir={workdir}",
         f"--config.data.tfds_dir={tfds_dir}",
         *(_flag(k, v) for k, v in OVERRIDES.items())]
  procs = []
  for p in range(processes):
    env = dict(os.environ, **(env_extra or {}))
    env["XLA_FLAGS"] = ("--xla_force_host_platform_device_count="
                        f"{4 // processes}")
    if processes > 1:
      env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                 JAX_NUM_PROCESSES=str(processes), JAX_PROCESS_ID=str(p))
    procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, text=True,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT))
  return procs


def finish(procs, timeout=600):
  """Waits for every process; returns `[(returncode, log)]`."""
  logs = [p.communicate(timeout=timeout)[0] for p in procs]
  return [(p.returncode, log) for p, log in zip(procs, logs)]


def tiny_config(tfds_dir):
  config = deepjscc_ffhq.get_config("demo")
  for key, value in {**OVERRIDES, "data.tfds_dir": str(tfds_dir)}.items():
    *path, leaf = key.split(".")
    node = config
    for name in path:
      node = node[name]
    node[leaf] = value
  return config


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  """The tiny dataset, prepared once before any process reads it."""
  path = tmp_path_factory.mktemp("tfds")
  data.prepare(tiny_config(path).data)
  return path


def stopped_after(workdir, step, copy_to):
  """A copy of `workdir` as a run stopped after `step` would have left it."""
  shutil.copytree(workdir, copy_to)
  checkpoints = os.path.join(copy_to, "checkpoints")
  for name in os.listdir(checkpoints):
    if name.isdigit() and int(name) > step:
      shutil.rmtree(os.path.join(checkpoints, name))
  shutil.rmtree(os.path.join(copy_to, "eval"), ignore_errors=True)
  return copy_to


def assert_close_params(workdir, reference):
  (step_a, a), (step_b, b) = restored_params(workdir), restored_params(reference)
  assert step_a == step_b == STEPS
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b) > 0
  # Steps of lr 1e-3 on other batches would move parameters by ~1e-3.
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tfds_dir):
  """One process, STEPS uninterrupted steps (in this process, 8 devices)."""
  workdir = str(tmp_path_factory.mktemp("reference") / "run")
  loop.train(tiny_config(tfds_dir), workdir, eval_at_end=False)
  return workdir


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, tfds_dir, reference):
  """Two processes resume the reference stopped after step 2, train, sweep."""
  workdir = stopped_after(reference, 2,
                          str(tmp_path_factory.mktemp("two") / "run"))
  results = finish(launch(workdir, tfds_dir, 2))
  for returncode, log in results:
    assert returncode == 0, log[-5000:]
    assert "Resumed from step 2" in log
  return workdir


def test_one_process_run_resumes_on_two_processes(two_process_run, reference):
  with open(os.path.join(two_process_run, "checkpoints", "3", "meta",
                         "metadata")) as f:
    assert json.load(f)["process_count"] == 2
  assert_close_params(two_process_run, reference)


def test_two_process_run_resumes_on_one_process(two_process_run, reference,
                                                tfds_dir, tmp_path):
  workdir = stopped_after(two_process_run, 3, str(tmp_path / "run"))
  loop.train(tiny_config(tfds_dir), workdir, eval_at_end=False)
  assert_close_params(workdir, reference)


def test_two_process_sweep_equals_a_one_process_sweep(two_process_run,
                                                      tmp_path):
  with open(os.path.join(two_process_run, "eval", "summary.json")) as f:
    two = json.load(f)
  config, scheme, params = runs.load_run(str(two_process_run))
  assert config.total_steps == STEPS
  one = runner.evaluate_params(
      config, scheme, params, sharding.make_mesh(devices=jax.devices()[:4]),
      str(tmp_path), label=scheme.name, lpips=({}, {}))
  key = lambda r: (r["snr_db"], r["metric"])
  assert sorted(map(key, two)) == sorted(map(key, one))
  assert {(r["snr_db"], r["metric"]) for r in two} == {
      (s, m) for s in (-5.0, 5.0) for m in ("psnr", "ssim")}
  one = {key(r): r for r in one}
  for row in two:
    # Each of the 8 test images once (not once per process).
    assert row["n"] == one[key(row)]["n"] == 8
    assert row["mean"] == pytest.approx(one[key(row)]["mean"], rel=1e-5)
    assert row["ci95"] == pytest.approx(one[key(row)]["ci95"], rel=1e-3)
