"""GenerativeJSCC through the trainer: exact resume after SIGKILL (frozen and
fine-tuned generator, the adversarial ablation on) and the adversarial
ablation's routing of gradients, read from the trainer's own optimiser state.
"""

import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import traverse_util

from gjscc_jax import generated_data
from gjscc_jax.train import loop as train
from tests import _helpers
from tests.test_generative import TINY, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Four steps with a checkpoint after each (the adversarial test reads the
# first), a warm-up of one step (so every later step moves the parameters),
# R1 every second step (so lazy R1 runs both before and after the kill).
STEPS, KILL_AT = 4, 2
RESUME = {"total_steps": STEPS, "checkpoint_every": 1,
          "keep_checkpoints": STEPS, "optimizer.warmup_steps": 1,
          "adversarial.r1_interval": 2}
# The matched-prior config at test size: G0 is a 16x16 random StyleGAN2
# drawing 16 training images; MSE only (LPIPS-AlexNet needs 31x31 images).
MATCHED_TINY = {
    "loss.lambda_lpips": 0.0,
    "data.resolution": 16, "data.generator.train_size": 16,
    "data.generator.test_size": 8, "data.generator.random.resolution": 16,
    "data.generator.random.z_dim": 16, "data.generator.random.w_dim": 16,
    "data.generator.random.channel_base": 64,
    "data.generator.random.channel_max": 16,
    "data.generator.random.w_avg_samples": 64}
VARIANTS = {
    # G0 of the 'generator' dataset as the frozen synthesis network.
    "frozen-matched": ("matched,generator=frozen", MATCHED_TINY),
    # Fine-tuned generator and the discriminator (weight 1: a visible term).
    "finetune-adversarial": ("demo,adversarial", {"adversarial.weight": 1.0}),
}


def _flag(key, value):
  if isinstance(value, tuple):
    value = ",".join(map(str, value))
  return f"--config.{key}={value}"


def _settings(overrides):
  return {**TINY, **RESUME, **overrides}


def _train(arg, workdir, tfds_dir, overrides, kill_after=None):
  """`python -m experiments.train --config=generative_ffhq:ARG` at TINY size."""
  settings = {k: v for k, v in _settings(overrides).items()
              if not k.startswith("eval.")}  # No sweep: --noeval_at_end.
  cmd = [sys.executable, "-m", "experiments.train",
         f"--config=generative_ffhq:{arg}", f"--workdir={workdir}",
         f"--config.data.tfds_dir={tfds_dir}", "--noeval_at_end",
         *(_flag(k, v) for k, v in settings.items())]
  env = dict(os.environ)
  if kill_after is not None:
    env["GJSCC_FAULT_KILL_AFTER_STEP"] = str(kill_after)
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=900)


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="module")
def straight_runs(tmp_path_factory, tfds_dir):
  """`variant -> workdir` of uninterrupted runs, each trained once."""
  done = {}

  def run(variant):
    if variant not in done:
      arg, overrides = VARIANTS[variant]
      workdir = tmp_path_factory.mktemp(f"straight-{variant}")
      proc = _train(arg, workdir, tfds_dir, overrides)
      assert proc.returncode == 0, proc.stderr[-3000:]
      done[variant] = str(workdir)
    return done[variant]

  return run


def _assert_synthesis_is(synthesis, g0):
  """The decoder's synthesis variables hold G0's (grafted, slices read maps)."""
  ours = traverse_util.flatten_dict(synthesis, sep="/")
  for k, p in traverse_util.flatten_dict(g0, sep="/").items():
    p = np.asarray(p)
    kept = np.asarray(ours[k])[tuple(slice(0, n) for n in p.shape)]
    if k.endswith("torgb/weight"):  # Rescaled for the wider fan-in.
      p = p * np.sqrt(ours[k].shape[2] / p.shape[2])
    np.testing.assert_allclose(kept, p, rtol=1e-6, err_msg=k)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_resume_after_kill_gives_identical_parameters(tmp_path, tfds_dir,
                                                      straight_runs, variant):
  """Killed after the step-2 checkpoint and restarted = uninterrupted, bit for bit.

  The restored state is everything: encoder, receiver, synthesis network
  and its map scales, noise buffers, the discriminator, every optimiser
  group's Adam moments (lazy R1 depends on the restored step count), and
  the data iterator (the 'generator' dataset's too). The frozen matched
  variant's synthesis network is G0, the data's generator, throughout.
  """
  arg, overrides = VARIANTS[variant]
  straight = straight_runs(variant)
  resumed = tmp_path / "resumed"
  proc = _train(arg, resumed, tfds_dir, overrides, kill_after=KILL_AT)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  assert _helpers.restored_params(resumed)[0] == KILL_AT
  proc = _train(arg, resumed, tfds_dir, overrides)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"Resumed from step {KILL_AT}" in proc.stdout

  step_a, params_a = _helpers.restored_params(straight)
  step_b, params_b = _helpers.restored_params(resumed)
  assert step_a == step_b == STEPS
  flat_a = traverse_util.flatten_dict(params_a, sep="/")
  flat_b = traverse_util.flatten_dict(params_b, sep="/")
  assert flat_a.keys() == flat_b.keys()
  assert any(k.startswith("discriminator/") for k in flat_a) == ("adversarial" in arg)
  for k in flat_a:
    np.testing.assert_array_equal(flat_a[k], flat_b[k], err_msg=k)
  # The run really trained after the restart: the map scales (0 at first)
  # moved.
  scales = [v for k, v in flat_a.items() if "inject_scale_" in k]
  assert scales and all(abs(float(v)) > 0 for v in scales)
  if variant == "frozen-matched":
    config = tiny_config(arg, **_settings(overrides))
    _, g0 = generated_data.load_generator(config.data.generator)
    for name in ("params", "buffers"):
      _assert_synthesis_is(params_a[name]["synthesis"], g0[name]["synthesis"])


# --- The adversarial ablation in the trainer ---------------------------------


def _first_step_gradients(workdir):
  """Per parameter path, the gradient of a run's first step.

  Read from the step-1 checkpoint's Adam moments: after one step the first
  moment is `(1 - b1) * g`, with b1 = 0.9 for the model's groups
  (`optimizer.b1`) and 0 for the discriminator's (`adversarial.b1`).
  """
  _, state = _helpers.restored_state(workdir, step=1)
  out = {}
  for group, inner in state["opt_state"]["inner_states"].items():
    # Every Adam state of the group: one, or two for the 'grafted' group
    # (`split_by_mask`: each sees the gradient with the other's elements
    # zeroed, so their first moments add up to the whole gradient's).
    for mu in _adam_moments(inner["inner_state"]):
      for k, g in traverse_util.flatten_dict(mu, sep="/").items():
        if g is None:  # A leaf of another group.
          continue
        g = np.asarray(g) / (1.0 if group == "discriminator" else 0.1)
        out[k] = out[k] + g if k in out else g
  return out


def _adam_moments(state):
  """The `mu` trees of every Adam state nested in a restored optimiser state."""
  if isinstance(state, dict):
    if "mu" in state:
      return [state["mu"]]
    return [m for v in state.values() for m in _adam_moments(v)]
  if isinstance(state, (list, tuple)):
    return [m for v in state for m in _adam_moments(v)]
  return []  # The frozen group's EmptyState (None once restored).


def _run(tmp_path, tfds_dir, name, arg, **overrides):
  """One step of the tiny `arg` config in `tmp_path/name` (in process)."""
  config = tiny_config(arg, **{
      **_settings(overrides), "data.tfds_dir": str(tfds_dir), "total_steps": 1})
  workdir = str(tmp_path / name)
  train.train(config, workdir, eval_at_end=False)
  return workdir


def test_adversarial_trainer_routes_each_term_to_its_own_parameters(
    tmp_path, tfds_dir, straight_runs):
  """Three runs from the same initial state and first batch.

  * adversarial, weight 1 (A, the uninterrupted run of the resume test) vs
    adversarial, weight 0 (B): the discriminator's first-step gradients are
    equal (the generator term does not reach the discriminator) and the
    model's differ (it reaches the model);
  * B vs no adversarial term (C): the model's gradients are equal (the
    discriminator's loss and R1 do not reach the model);
  * the discriminator has a first-step gradient, moves in every later step,
    and the checkpoints hold it.
  """
  work_a = straight_runs("finetune-adversarial")
  with jax.default_matmul_precision("highest"):
    work_b = _run(tmp_path, tfds_dir, "b", "demo,adversarial",
                  **{"adversarial.weight": 0.0})
    work_c = _run(tmp_path, tfds_dir, "c", "demo")
  grads_a, grads_b, grads_c = map(_first_step_gradients, (work_a, work_b, work_c))
  model = sorted(grads_c)
  disc = sorted(k for k in grads_b if k.startswith("discriminator/"))
  assert model and all(k.startswith("params/") for k in model) and disc
  assert sorted(grads_a) == sorted(grads_b) == sorted(model + disc)
  for k in model:  # The discriminator's terms do not reach the model ...
    np.testing.assert_allclose(grads_b[k], grads_c[k], rtol=1e-4, atol=1e-8,
                               err_msg=k)
  for k in disc:  # ... nor the generator term the discriminator,
    np.testing.assert_allclose(grads_a[k], grads_b[k], rtol=1e-4, atol=1e-8,
                               err_msg=k)
  # which does reach the model.
  assert max(np.max(np.abs(grads_a[k] - grads_b[k])) /
             (np.max(np.abs(grads_b[k])) + 1e-12) for k in model) > 1e-2
  assert all(np.max(np.abs(grads_a[k])) > 0 for k in disc)
  discs = [traverse_util.flatten_dict(_helpers.restored_params(work_a, s)[1]
                                      ["discriminator"], sep="/")
           for s in range(1, STEPS + 1)]
  assert sorted(discs[0]) == [k.split("/", 1)[1] for k in disc]
  for before, after in zip(discs, discs[1:]):
    assert all(np.max(np.abs(np.asarray(after[k]) - np.asarray(before[k]))) > 0
               for k in before)
