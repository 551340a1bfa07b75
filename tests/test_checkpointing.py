"""Checkpoints that can be trusted: checksums, fallback past corrupt steps,
quarantine, one clear error when nothing restores, the pinned data stream.

Tiny states (a few small arrays), no training: the end-to-end checks (a
corrupted run resumes and finishes with the uninterrupted run's parameters)
are in test_train.py.
"""

import errno
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from gjscc_jax import errors
from gjscc_jax import run_record
from gjscc_jax import sharding
from gjscc_jax import workdir_lock
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


def test_a_missing_step_lists_the_steps_that_exist(tmp_path):
  # `evaluate --step=999` said "trying an older one", tried none and did
  # not say which steps exist.
  directory = str(tmp_path / "checkpoints")
  ckpt = _saved(directory, (1, 2))
  with pytest.raises(FileNotFoundError,
                     match=r"no checkpoint of step 999 .*saved are: 1, 2"):
    ckpt.restore(999, _abstract(_state()))
  ckpt.close()


def test_full_disk_is_one_line_and_removes_the_partial_step(
    tmp_path, monkeypatch):
  directory = str(tmp_path / "checkpoints")
  ckpt = _saved(directory, (1, 2))

  def full_disk(step, **_):
    # As orbax fails: the step's temporary directory is half written, and
    # the error (here raised at once; asynchronously at the next wait)
    # wraps the OS's ENOSPC.
    partial = os.path.join(directory, f"{step}.orbax-checkpoint-tmp-1234")
    os.makedirs(os.path.join(partial, "state"))
    raise ValueError("Error writing ... [OS error: No space left on device]")

  monkeypatch.setattr(ckpt.manager, "save", full_disk)
  with pytest.raises(checkpointing.DiskFull) as error:
    ckpt.save(3, _state(3))
  message = str(error.value)
  assert "\n" not in message and "Traceback" not in message
  mount, device = checkpointing._mount_of(directory)  # pylint: disable=protected-access
  assert f"No space left on {device} (mounted on {mount})" in message
  assert "checkpoint of step 3" in message
  assert "intact checkpoints: 1, 2" in message
  assert not [n for n in os.listdir(directory) if "tmp" in n]
  assert isinstance(error.value, errors.USER_ERRORS)  # One-line CLI error.

  def fails_later():
    raise OSError(errno.ENOSPC, "No space left on device")

  # Asynchronously: the save starts, and its error comes at the wait.
  monkeypatch.setattr(ckpt.manager, "save", lambda step, **_: None)
  ckpt.save(4, _state(4))
  monkeypatch.setattr(ckpt.manager, "wait_until_finished", fails_later)
  with pytest.raises(checkpointing.DiskFull,
                     match="step 4 .*intact checkpoints: 1, 2"):
    ckpt.wait()
  # Another error is not mistaken for a full disk.
  monkeypatch.setattr(ckpt.manager, "wait_until_finished",
                      lambda: (_ for _ in ()).throw(OSError(errno.EIO, "I/O")))
  with pytest.raises(OSError, match="I/O"):
    ckpt.wait()


def test_a_directory_has_one_writer_and_a_dead_writers_lock_is_taken_over(
    tmp_path, capsys):
  directory = str(tmp_path / "run")
  with workdir_lock.DirectoryLock(directory, "training run"):
    holder = json.load(open(os.path.join(directory, workdir_lock.LOCK_FILE)))
    assert holder["pid"] == os.getpid()
    # A second writer (flock locks are per open file, so this holds within
    # one process as across processes) is refused, naming the holder.
    with pytest.raises(workdir_lock.DirectoryInUse) as error:
      workdir_lock.DirectoryLock(directory, "training run").acquire()
    message = str(error.value)
    assert f"pid {os.getpid()}" in message and holder["started"] in message
    assert "in use by another training run" in message
    # Another process index has its own lock.
    with workdir_lock.DirectoryLock(directory, process_index=1):
      pass
  # A process killed while holding it leaves its record but no lock.
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  with open(os.path.join(directory, workdir_lock.LOCK_FILE), "w") as f:
    json.dump(dict(host="node7", pid=dead.pid, started="2026-01-01T00:00:00"),
              f)
  with workdir_lock.DirectoryLock(directory):
    out = capsys.readouterr().out
    assert (f"Taking over the lock of {directory} left by a process that is "
            f"gone (host node7, pid {dead.pid}") in out
  # A run refused before writing anything leaves no directory behind.
  fresh = str(tmp_path / "fresh")
  with workdir_lock.DirectoryLock(fresh):
    assert os.path.isdir(fresh)
  assert not os.path.exists(fresh)


def test_a_directory_holds_one_kind_of_output(tmp_path):
  run = tmp_path / "run"
  run_record.write(str(run), run_record.TRAINING, __name__)
  workdir_lock.check_kind(str(run), run_record.TRAINING)
  with pytest.raises(ValueError, match="holds a training run.*another "
                     "--output_dir for the separation output"):
    workdir_lock.check_kind(str(run), run_record.SEPARATION)
  # A run killed before it wrote its records is a training run too.
  killed = tmp_path / "killed"
  (killed / "checkpoints").mkdir(parents=True)
  with pytest.raises(ValueError, match="holds a training run"):
    workdir_lock.check_kind(str(killed), run_record.INVERSEJSCC)
  workdir_lock.check_kind(str(tmp_path / "none"), run_record.SEPARATION)
