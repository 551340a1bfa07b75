"""Orbax checkpoints of the train state: verified on restore, with fallback.

A checkpoint step directory holds two items:

* `state`: the `TrainState` (params, optimiser state, step, base RNG key,
  non-finite counter), saved asynchronously, sharded as in memory;
* `meta`: one small JSON file written by process 0: the step, what decides
  the training data (`gjscc_jax.data.train_stream_spec`; the data position
  is the step itself, so nothing per process is saved and a run resumes on
  any number of processes), the number of processes that wrote it, and a
  checksum of every state array (`state_checksums`).

Restoring both and continuing gives the same parameters as an uninterrupted
run. Orbax writes each step to a temporary directory and renames it when
complete, so a process killed mid-save leaves the previous checkpoints intact
and the partial one is ignored on restart.

A checkpoint that cannot be trusted (a read or decode error, arrays of the
wrong shape, or arrays whose checksum differs from the one written with
them: a bad disk or a half-synced copy can flip bytes that the storage
format does not notice) is skipped: `Checkpointer.restore` logs which step
failed and why and falls back to the newest step that restores and
verifies; training moves the failed newer steps to `corrupt/<step>` beside
them (never deleted). When no step restores, one `RestoreError` names the
directory and every step tried.
"""

import dataclasses
import errno
import glob
import os
import shutil
from typing import Any

from absl import logging
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from gjscc_jax import errors

#: Subdirectory of the checkpoint directory that holds quarantined steps.
CORRUPT_DIR = "corrupt"

#: How the data-stream fields are called in the config, for error messages.
_CONFIG_NAMES = dict(
    global_batch_size="batch_size", seed="seed", dataset="data.name",
    resolution="data.resolution", random_flip="data.random_flip",
    train_images="the number of training images",
    sample_train_size="data.sample_train_size",
    sample_test_size="data.sample_test_size",
    test_fraction="data.test_fraction",
    stream_version="the version of the data-stream definition")


class RestoreError(errors.UserError):
  """No checkpoint of a directory restores (the message lists each step)."""


class DiskFull(errors.UserError):
  """A checkpoint could not be written: no space left (or quota exceeded)."""


def _is_disk_full(error):
  """Whether `error` (or an error it wraps) is ENOSPC / EDQUOT."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC,
                                                      errno.EDQUOT):
      return True
    if any(text in str(error) for text in ("No space left on device",
                                           "Disk quota exceeded")):
      return True
    error = error.__cause__ or error.__context__
  return False


def _mount_of(path):
  """`(mount point, device)` of the file system holding `path`."""
  path = os.path.realpath(path)
  while not os.path.ismount(path):
    path = os.path.dirname(path)
  device = "?"
  try:
    with open("/proc/mounts") as f:
      for line in f:
        fields = line.split()
        if len(fields) > 1 and fields[1] == path:
          device = fields[0]
  except OSError:
    pass
  return path, device


@dataclasses.dataclass
class Restored:
  """A restored checkpoint: its step, train state and `meta` dict."""
  step: int
  state: Any
  meta: dict


def _as_uint32(x):
  """The bits of every element of `x`, widened to uint32."""
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[x.dtype.itemsize]
  return lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def _leaf_checksum(x):
  """Order-independent hash of (flat index, bits) pairs, summed mod 2**32.

  Each element's bits are mixed with its flat index (murmur3's finaliser),
  and the mixes are added with uint32 wrap-around: an exact, associative
  sum, so the result does not depend on how the array is sharded, and
  nothing is gathered.
  """
  bits = _as_uint32(x)
  index = jnp.zeros(bits.shape, jnp.uint32)
  for dim, size in enumerate(bits.shape):
    index = index * jnp.uint32(size) + lax.broadcasted_iota(
        jnp.uint32, bits.shape, dim)
  h = bits ^ (index * jnp.uint32(0x9E3779B9))
  h = (h ^ (h >> 16)) * jnp.uint32(0x85EBCA6B)
  h = (h ^ (h >> 13)) * jnp.uint32(0xC2B2AE35)
  h = h ^ (h >> 16)
  return jnp.sum(h, dtype=jnp.uint32)


@jax.jit
def _checksums(tree):
  return jnp.stack([_leaf_checksum(x) for x in jax.tree.leaves(tree)])


def state_checksums(state) -> list[int]:
  """One uint32 checksum per array of `state` (a list of ints, host side).

  The same on every process and for every sharding of the same values.
  """
  out = _checksums(state)
  return [int(v) for v in np.asarray(out.addressable_data(0))]


def _leaf_names(tree):
  return [jax.tree_util.keystr(path)
          for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _first_line(error):
  """A short cause: the first line, without TensorStore's spec dump."""
  text = str(error).strip().splitlines()
  text = text[0].split(" See full TensorStore details")[0] if text else ""
  return f"{type(error).__name__}: {text}"[:300]


def _failed_anywhere(error):
  """`error`, or an error if another process failed (all agree)."""
  if jax.process_count() == 1:
    return error
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  failed = np.asarray(multihost_utils.process_allgather(
      np.array([error is not None], np.int32)))
  if error is None and failed.any():
    error = RuntimeError("the restore failed on another process")
  return error


class Checkpointer:
  """Periodic, keep-N, asynchronous, verified checkpoints of a train state."""

  def __init__(self, directory, *, save_every, keep=3, asynchronous=True):
    self.directory = os.path.abspath(directory)
    self.save_every = save_every
    self._saving = None  # The step of the last save started.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True,
        enable_async_checkpointing=asynchronous)
    self.manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "meta"))

  def latest_step(self):
    return self.manager.latest_step()

  def all_steps(self):
    return sorted(self.manager.all_steps())

  def should_save(self, step):
    """Whether `step` is a periodic save step (a multiple of save_every)."""
    return self.save_every > 0 and step % self.save_every == 0

  def save(self, step, state, meta=None, force=False):
    """Saves if `step` is a save step (or `force`); returns whether it did.

    Args:
      step: The step (directory name).
      state: The train state.
      meta: JSON-serialisable facts to keep with it (e.g. the data stream's
        spec); the state's checksums are added.
      force: Save whatever the step.
    """
    if not (force or self.should_save(step)):
      return False
    meta = dict(meta or {}, step=int(step), process_count=jax.process_count(),
                state_checksums=state_checksums(state))
    try:
      self.manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                        force=True)
    except Exception as e:  # pylint: disable=broad-except
      self._raise_if_disk_full(e, step)
      raise
    self._saving = int(step)
    logging.info("Checkpoint of step %d started in %s", step, self.directory)
    return True

  def _raise_if_disk_full(self, error, step):
    """Removes the partial step and raises `DiskFull` if `error` says the
    disk is full; returns otherwise."""
    if not _is_disk_full(error):
      return
    if jax.process_index() == 0:
      for partial in glob.glob(os.path.join(self.directory,
                                            "*.orbax-checkpoint-tmp*")):
        shutil.rmtree(partial, ignore_errors=True)
    try:
      self.manager.reload()
      intact = [s for s in self.all_steps() if s != step]
    except Exception:  # pylint: disable=broad-except
      intact = sorted(int(n) for n in os.listdir(self.directory) if n.isdigit())
    mount, device = _mount_of(self.directory)
    raise DiskFull(
        f"No space left on {device} (mounted on {mount}) while writing the "
        f"checkpoint of step {step if step is not None else '?'} to "
        f"{self.directory}; its partial "
        "directory was removed; intact checkpoints: "
        f"{', '.join(map(str, intact)) or 'none'}. Free space, then rerun "
        "the same command to resume.") from None

  def _restore_step(self, step, abstract_state):
    items = dict(state=ocp.args.StandardRestore(abstract_state))
    has_meta = os.path.isdir(os.path.join(self.directory, str(step), "meta"))
    if has_meta:
      items["meta"] = ocp.args.JsonRestore()
    restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    state = restored["state"]
    meta = dict(restored["meta"] or {}) if has_meta else {}
    expected = meta.get("state_checksums")
    if expected is None:
      logging.warning("Checkpoint step %d has no checksums; not verified.", step)
      return Restored(step, state, meta)
    actual = state_checksums(state)
    if len(actual) != len(expected):
      raise ValueError(f"the state has {len(actual)} arrays but the checkpoint "
                       f"recorded checksums for {len(expected)}.")
    bad = [name for name, a, e in zip(_leaf_names(state), actual, expected)
           if a != e]
    if bad:
      raise ValueError(
          f"{len(bad)} of {len(actual)} arrays differ from what was saved "
          f"(checksum mismatch), e.g. {', '.join(bad[:3])}.")
    return Restored(step, state, meta)

  def restore(self, step, abstract_state, *, quarantine=False) -> Restored:
    """Restores a step, or the newest one that restores and verifies.

    Args:
      step: Step to restore; None for the newest good one.
      abstract_state: Pytree of `jax.ShapeDtypeStruct` with shardings, e.g.
        from `jax.eval_shape` plus the target shardings.
      quarantine: Move newer steps that failed to `corrupt/<step>` once an
        older one restored (training; readers leave the directory alone).

    Returns:
      A `Restored` (step, state sharded like `abstract_state`, meta).

    Raises:
      FileNotFoundError: If there is no checkpoint.
      RestoreError: If no candidate step restores; lists each step's error.
    """
    saved = self.all_steps()
    if step is not None and step not in saved:
      raise FileNotFoundError(
          f"There is no checkpoint of step {step} in {self.directory}; the "
          f"steps saved are: {', '.join(map(str, saved)) or 'none'}. Pass "
          "one of them, or no step for the newest.")
    candidates = [step] if step is not None else saved[::-1]
    if not candidates:
      raise FileNotFoundError(f"No checkpoint in {self.directory}.")
    failures = []
    for candidate in candidates:
      error = restored = None
      try:
        restored = self._restore_step(candidate, abstract_state)
      except Exception as e:  # pylint: disable=broad-except
        error = e  # Read, decode, shape or checksum: not to be trusted.
      error = _failed_anywhere(error)
      if error is None:
        if failures:
          logging.warning("Restored step %d of %s instead of %s.", candidate,
                          self.directory, ", ".join(str(s) for s, _ in failures))
        if failures and quarantine:
          self._quarantine([s for s, _ in failures])
        return restored
      logging.warning("Checkpoint step %d in %s does not restore: %s",
                      candidate, self.directory, _first_line(error))
      if candidate != candidates[-1]:
        print(f"WARNING: checkpoint step {candidate} in {self.directory} does "
              f"not restore ({_first_line(error)}); trying an older one.",
              flush=True)
      failures.append((candidate, error))
    raise RestoreError(
        f"No checkpoint in {self.directory} restores (steps tried: "
        f"{', '.join(str(s) for s, _ in failures)}): " + "; ".join(
            f"step {s}: {_first_line(e)}" for s, e in failures) +
        ". A config changed since they were written fails every step (use "
        "the settings in the run's config.json); otherwise restore a copy of "
        "the directory or start a new --workdir.")

  def _quarantine(self, steps):
    """Moves `steps` to `corrupt/<step>` (process 0), then re-lists steps."""
    if jax.process_index() == 0:
      target_dir = os.path.join(self.directory, CORRUPT_DIR)
      os.makedirs(target_dir, exist_ok=True)
      for step in steps:
        target, n = os.path.join(target_dir, str(step)), 1
        while os.path.exists(target):
          target, n = os.path.join(target_dir, f"{step}.{n}"), n + 1
        os.replace(os.path.join(self.directory, str(step)), target)
        logging.warning("Moved the checkpoint of step %d to %s.", step, target)
        print(f"Moved the checkpoint of step {step}, which does not restore, to "
              f"{target}.",
              flush=True)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
      multihost_utils.sync_global_devices("gjscc_jax checkpoint quarantine")
    self.manager.reload()

  def wait(self):
    """Blocks until pending asynchronous saves are committed.

    Raises:
      DiskFull: naming the device and the intact steps, when the disk
        filled up (the partial step directory is removed).
    """
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      self._raise_if_disk_full(e, self._saving)
      raise
    self._saving = None

  def close(self):
    self.manager.close()


def check_data_stream(meta, spec, directory):
  """Raises if a checkpoint's data stream differs from the config's.

  Args:
    meta: `Restored.meta` of the checkpoint.
    spec: `gjscc_jax.data.train_stream_spec(...)` of the current config.
    directory: The checkpoint directory, for the message.

  Raises:
    ValueError: Naming each changed setting and the fix.
  """
  saved = meta.get("data")
  if saved is None:
    logging.warning("The checkpoint in %s does not record its data stream; "
                    "resuming with the current one.", directory)
    return
  changed = sorted(k for k in set(saved) | set(spec) if saved.get(k) != spec.get(k))
  if changed:
    details = "; ".join(
        f"{_CONFIG_NAMES.get(k, k)}: {saved.get(k)!r} -> {spec.get(k)!r}"
        for k in changed)
    raise ValueError(
        f"The run in {directory} was trained on another data stream "
        f"({details}). Resume with the settings it was trained with (its "
        "config.json), or start a new --workdir.")


def abstract_with_shardings(tree, shardings):
  """ShapeDtypeStructs carrying target shardings, for `Checkpointer.restore`."""
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      tree, shardings)


def restore_params(workdir, abstract_state, step=None):
  """Params of a training run's checkpoint (for evaluation and inversion).

  With `step=None` the newest checkpoint that restores and verifies (a
  warning names any newer one that does not; nothing is moved).

  Raises:
    FileNotFoundError: naming the directory, when there is no checkpoint.
    RestoreError: when no checkpoint restores.
  """
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    raise FileNotFoundError(
        f"No checkpoints directory in {workdir!r}: pass the --workdir of a "
        "training run (python -m experiments.train --output_dir=...).")
  ckpt = Checkpointer(directory, save_every=1, asynchronous=False)
  try:
    if step is None and not ckpt.all_steps():
      raise FileNotFoundError(
          f"No checkpoint in {directory}: the run has not saved one yet.")
    return ckpt.restore(step, abstract_state).state.params
  finally:
    ckpt.close()
