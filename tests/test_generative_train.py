"""GenerativeJSCC through the project trainer: demo steps with a frozen,
converted generator + SNR sweep; gradients and optimiser groups; sharded
steps equal to the single-device step (8 fake CPU devices).
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from gjscc_jax.evaluation import runner
from gjscc_jax.train import loop as train
from gjscc_jax.models import stylegan2
from gjscc_jax import schemes
from gjscc_jax import sharding
from gjscc_jax.train import step as step_lib
from tests import _helpers
from tests.test_generative import (RES, changes, init_key,  # noqa: F401
                                   official_weights, tiny_config)


def test_demo_trains_two_steps_with_a_frozen_converted_generator(
    tmp_path, official_weights):
  """The trainer grafts converted weights, keeps them frozen, and sweeps.

  The demo config (tiny sizes) with the official generator converted for
  16x16, 'add' injection (no widened layers, so the synthesis variables are
  exactly the converted ones) and `generator.train='frozen'`: after two
  steps the checkpointed synthesis network and noise buffers are
  bit-identical to the converted file, while encoder and receiver trained.
  """
  _, path = official_weights
  workdir = str(tmp_path / "run")
  config = tiny_config(**{
      "data.tfds_dir": str(tmp_path / "tfds"), "total_steps": 2,
      "checkpoint_every": 2, "eval.snrs_db": (0.0,), "generator.weights": path,
      "generator.train": "frozen", "model.injection": "add"})
  state = train.train(config, workdir, evaluate=runner.evaluate_params)
  assert int(state.step) == 2
  records = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  steps = [r for r in records if r["split"] == "train"]
  assert [r["step"] for r in steps] == [1, 2]
  for r in steps:
    assert np.isfinite(r["loss"]) and r["loss"] > 0
    assert r["psnr"] == pytest.approx(10 * np.log10(4 / r["mse"]), rel=1e-5)

  step, params = _helpers.restored_params(workdir)
  assert step == 2
  _, converted = stylegan2.load_stylegan2(path)
  for name in ("params", "buffers"):
    ours = traverse_util.flatten_dict(params[name]["synthesis"])
    theirs = traverse_util.flatten_dict(converted[name]["synthesis"])
    assert ours.keys() == theirs.keys()
    for k in ours:
      np.testing.assert_array_equal(ours[k], theirs[k])
  # The W+ offset started at the generator's w_avg and trains with the receiver.
  w_offset = params["params"]["receiver"]["w_offset"]
  assert 0 < np.max(np.abs(w_offset - converted["buffers"]["mapping"]["w_avg"])) < 1e-2

  rows = json.load(open(os.path.join(workdir, "eval", "summary.json")))
  assert {r["scheme"] for r in rows} == {"generative"}
  assert {"psnr", "ssim"} <= {r["metric"] for r in rows}
  assert {r["snr_db"] for r in rows} == {0.0}
  assert os.path.exists(os.path.join(workdir, "eval", "grid_generative.png"))


# Distinct learning rates per group, constant, so that Adam's first step
# moves every weight with a non-zero gradient by exactly ~lr.
LR_GROUPS = {"generator.lr": 1e-5, "optimizer.lr": 1e-3,
             "optimizer.warmup_steps": 0, "optimizer.schedule": "constant"}


def _two_steps(config, params, mesh):
  """Params after each of two train steps on `mesh` (fixed batches), losses."""
  scheme = schemes.build_scheme(config)
  loss, frozen = train.build_loss(config)
  tx, _ = scheme.make_optimizer(config.total_steps)
  state = step_lib.create_train_state(params, tx, jax.random.PRNGKey(1))
  state_sh = sharding.param_shardings(state, mesh, min_size=256)
  split = [s for s in jax.tree.leaves(state_sh.params) if "fsdp" in s.spec]
  assert bool(split) == (mesh.shape["fsdp"] > 1)  # FSDP really splits params.
  state = jax.device_put(state, state_sh)
  batch_sh = sharding.batch_sharding(mesh)
  fn = jax.jit(step_lib.make_train_step(scheme, loss, tx, (-5.0, 5.0)),
               in_shardings=(state_sh, batch_sh, None, None),
               out_shardings=(state_sh, None))
  rng = np.random.default_rng(0)
  trajectory, losses = [], []
  for i in range(2):
    images = rng.integers(0, 256, (8, RES, RES, 3), dtype=np.uint8)
    batch = jax.device_put({"image": images}, batch_sh)
    state, metrics = fn(state, batch, jax.random.PRNGKey(10 + i), frozen)
    trajectory.append(jax.device_get(state.params))
    losses.append(float(metrics["loss"]))
  return trajectory, losses


@pytest.fixture(scope="module")
def single_device_run():
  config = tiny_config(**LR_GROUPS)
  scheme = schemes.build_scheme(config)
  params = jax.device_get(
      jax.jit(scheme.init)(init_key(), jnp.zeros((8, RES, RES, 3))))
  with jax.default_matmul_precision("highest"):
    trajectory, losses = _two_steps(
        config, params, sharding.make_mesh(devices=jax.devices()[:1]))
  return config, params, trajectory, losses


def _feeds_only_the_maps(path):
  """Receiver parts after the 4x4 received map that W+ does not read."""
  top = path[0].key
  return top.startswith(("inject_", "up_")) or top in ("af_8", "af_16")


def test_gradients_reach_every_parameter_at_its_group_learning_rate(
    single_device_run):
  """Adam's first step moves a weight by ~lr where its gradient is non-zero.

  So every leaf of the encoder, the receiver and the fine-tuned synthesis
  network moving by ~lr shows that gradients reach all of them, each at the
  learning rate of its group: 1e-3 for encoder and receiver, 1e-5 for the
  generator (`generator.lr`); StyleGAN2's stored noise (buffers) never moves.
  The map scales (`inject_scale_*`, 0 at first) train at the receiver's
  rate; while they are 0 the maps are off, so the receiver parts that only
  feed the maps get no gradient in the first step, and do in the second.
  Every layer gets a map here, and adds no noise (GPEN's layer), so the
  noise strengths get no gradient.
  """
  _, params, trajectory, _ = single_device_run
  moved = changes(params, trajectory[0])
  synthesis = moved["params"]["synthesis"]
  scales = {k: synthesis.pop(k) for k in list(synthesis)
            if k.startswith("inject_scale_")}
  assert len(scales) == 5 and all(
      v == pytest.approx(1e-3, rel=0.01) for v in scales.values()), scales
  for group, lr in (("encoder", 1e-3), ("receiver", 1e-3), ("synthesis", 1e-5)):
    leaves = jax.tree_util.tree_leaves_with_path(moved["params"][group])
    assert leaves
    for path, change in leaves:
      off = (_feeds_only_the_maps(path) if group == "receiver" else
             group == "synthesis" and path[-1].key == "noise_strength")
      want = 0.0 if off else lr
      assert change == pytest.approx(want, rel=0.01), (group, jax.tree_util.keystr(path))
  assert max(jax.tree.leaves(moved["buffers"])) == 0
  second = changes(trajectory[0], trajectory[1])["params"]["receiver"]
  for path, change in jax.tree_util.tree_leaves_with_path(second):
    assert change > 1e-4, jax.tree_util.keystr(path)


def test_data_parallel_fsdp_steps_equal_single_device_step(single_device_run):
  """Two steps on a 4 (data) x 2 (fsdp) mesh of 8 devices match one device.

  The batch is split 8 ways and every large parameter (and its Adam state)
  2 ways; the trainer's pure data-parallel mesh (8 x 1) is the special case
  fsdp = 1 (tested for DeepJSCC in test_train.py).
  """
  assert jax.device_count() == 8, "tests/conftest.py sets 8 fake CPU devices"
  config, params, trajectory_1, losses_1 = single_device_run
  with jax.default_matmul_precision("highest"):
    trajectory_n, losses_n = _two_steps(config, params,
                                        sharding.make_mesh(data=4, fsdp=2))
  np.testing.assert_allclose(losses_n, losses_1, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(trajectory_n[-1]), jax.tree.leaves(trajectory_1[-1])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
