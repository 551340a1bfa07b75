"""Orbax checkpoints of the train state together with the data-iterator state.

A checkpoint holds two items saved in one step directory:

* `state`: the `TrainState` (params, optimiser state, step, base RNG key,
  non-finite counter), saved asynchronously, sharded as in memory;
* `data`: the grain iterator's position (one small JSON file per process).

Restoring both and continuing gives the same parameters as an uninterrupted
run. Orbax writes each step to a temporary directory and renames it when
complete, so a process killed mid-save leaves the previous checkpoints intact
and the partial one is ignored on restart.
"""

import os

from absl import logging
import grain
import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Periodic, keep-N, asynchronous checkpoints of (train state, data iterator)."""

  def __init__(self, directory, *, save_every, keep=3, asynchronous=True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, save_interval_steps=save_every, create=True,
        enable_async_checkpointing=asynchronous)
    self.manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "data"))

  def latest_step(self):
    return self.manager.latest_step()

  def all_steps(self):
    return list(self.manager.all_steps())

  def should_save(self, step):
    return self.manager.should_save(step)

  def save(self, step, state, data_iterator=None, force=False):
    """Saves if `step` is a save step (or `force`); returns whether it did."""
    items = dict(state=ocp.args.StandardSave(state))
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    saved = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
    if saved:
      logging.info("Checkpoint of step %d started in %s", step, self.directory)
    return saved

  def restore(self, step, abstract_state, data_iterator=None):
    """Restores `state` (sharded like `abstract_state`) and the iterator.

    Args:
      step: Step to restore; None for the latest.
      abstract_state: Pytree of `jax.ShapeDtypeStruct` with shardings, e.g.
        from `jax.eval_shape` plus the target shardings.
      data_iterator: A grain iterator whose position is restored in place.

    Returns:
      The restored train state.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"No checkpoint in {self.directory}.")
    items = dict(state=ocp.args.StandardRestore(abstract_state))
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    return restored["state"]

  def wait(self):
    """Blocks until pending asynchronous saves are committed."""
    self.manager.wait_until_finished()

  def close(self):
    self.manager.close()


def abstract_with_shardings(tree, shardings):
  """ShapeDtypeStructs carrying target shardings, for `Checkpointer.restore`."""
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      tree, shardings)


def restore_params(workdir, abstract_state, step=None):
  """Params of a training run's checkpoint (for evaluation and inversion).

  Raises a FileNotFoundError that names the directory when there is none.
  """
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    raise FileNotFoundError(
        f"No checkpoints directory in {workdir!r}: pass the --workdir of a "
        "training run (python -m experiments.train --workdir=...).")
  ckpt = Checkpointer(directory, save_every=1, asynchronous=False)
  try:
    return ckpt.restore(step, abstract_state).params
  finally:
    ckpt.close()
