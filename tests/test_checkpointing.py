"""Checkpoints that can be trusted: checksums, fallback past corrupt steps,
quarantine, one clear error when nothing restores, the pinned data stream.

Tiny states (a few small arrays), no training: the end-to-end checks (a
corrupted run resumes and finishes with the uninterrupted run's parameters)
are in test_train.py.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from gjscc_jax import sharding
from gjscc_jax.train import checkpointing
from tests._helpers import flip_largest_array_file


def _state(scale=1.0):
  return {"w": jnp.arange(64 * 32, dtype=jnp.float32).reshape(64, 32) * scale,
          "b": jnp.linspace(-1, 1, 8, dtype=jnp.float32),
          "step": jnp.array(3, jnp.int32),
          "rng": jax.random.PRNGKey(5),
          "half": jnp.ones((16,), jnp.bfloat16)}


def _abstract(state):
  repl = sharding.replicated(sharding.make_mesh())
  return checkpointing.abstract_with_shardings(
      jax.eval_shape(lambda: state), jax.tree.map(lambda _: repl, state))


def _saved(directory, steps):
  ckpt = checkpointing.Checkpointer(directory, save_every=1, keep=10,
                                    asynchronous=False)
  for step in steps:
    ckpt.save(step, _state(step), {"data": {"seed": 0}})
  return ckpt


def test_checksums_ignore_sharding_and_see_every_change():
  state = _state()
  plain = checkpointing.state_checksums(state)
  assert len(plain) == len(jax.tree.leaves(state))
  mesh = sharding.make_mesh(data=4, fsdp=2)
  sharded = dict(state, w=jax.device_put(
      state["w"], NamedSharding(mesh, P("data", "fsdp"))))
  assert checkpointing.state_checksums(sharded) == plain
  one_bit = dict(state, w=state["w"].at[7, 3].set(
      jax.lax.bitcast_convert_type(jax.lax.bitcast_convert_type(
          state["w"][7, 3], jnp.uint32) ^ 1, jnp.float32)))
  swapped = dict(state, b=state["b"][::-1])  # Same values, other places.
  for changed, leaf in ((one_bit, "w"), (swapped, "b")):
    names = sorted(state)  # jax.tree.leaves order of a dict.
    differs = [a != b for a, b in zip(checkpointing.state_checksums(changed),
                                      plain)]
    assert differs == [n == leaf for n in names]


def test_corrupt_newest_step_falls_back_and_is_moved_aside(tmp_path):
  directory = str(tmp_path / "checkpoints")
  ckpt = _saved(directory, (1, 2, 3))
  flip_largest_array_file(os.path.join(directory, "3"))
  restored = ckpt.restore(None, _abstract(_state()), quarantine=True)
  assert restored.step == 2 and restored.meta["data"] == {"seed": 0}
  np.testing.assert_array_equal(restored.state["w"], _state(2)["w"])
  assert ckpt.all_steps() == [1, 2]
  assert os.listdir(os.path.join(directory, "corrupt")) == ["3"]
  # The run goes on and saves step 3 again; a second bad step 3 does not
  # overwrite the first one kept aside.
  ckpt.save(3, _state(3))
  ckpt.wait()
  assert ckpt.all_steps() == [1, 2, 3]
  flip_largest_array_file(os.path.join(directory, "3"))
  assert ckpt.restore(None, _abstract(_state()), quarantine=True).step == 2
  assert sorted(os.listdir(os.path.join(directory, "corrupt"))) == ["3", "3.1"]
  ckpt.close()


def test_readers_fall_back_without_moving_anything(tmp_path):
  directory = str(tmp_path / "checkpoints")
  ckpt = _saved(directory, (1, 2))
  flip_largest_array_file(os.path.join(directory, "2"))
  assert ckpt.restore(None, _abstract(_state())).step == 1
  assert ckpt.all_steps() == [1, 2]
  assert not os.path.exists(os.path.join(directory, "corrupt"))
  # An explicit step does not fall back.
  with pytest.raises(checkpointing.RestoreError, match="steps tried: 2"):
    ckpt.restore(2, _abstract(_state()))
  ckpt.close()


def test_nothing_restores_one_error_naming_directory_and_steps(tmp_path):
  directory = str(tmp_path / "checkpoints")
  ckpt = _saved(directory, (1, 2))
  other_shape = dict(_state(), w=jnp.zeros((3, 3), jnp.float32))
  with pytest.raises(checkpointing.RestoreError) as error:
    ckpt.restore(None, _abstract(other_shape), quarantine=True)
  message = str(error.value)
  assert directory in message and "steps tried: 2, 1" in message
  assert "\n" not in message
  assert ckpt.all_steps() == [1, 2]  # A config change moves nothing aside.
  ckpt.close()


def test_changed_data_stream_is_named():
  saved = {"data": {"global_batch_size": 8, "seed": 0, "train_images": 32}}
  checkpointing.check_data_stream(saved, dict(saved["data"]), "/run")
  with pytest.raises(ValueError, match=r"batch_size: 8 -> 16.*config.json"):
    checkpointing.check_data_stream(
        saved, dict(saved["data"], global_batch_size=16), "/run")
