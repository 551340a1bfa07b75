"""Helpers shared by several test modules (not tests themselves)."""

import os

import orbax.checkpoint as ocp

from gjscc_jax.train import checkpointing


def restored_state(workdir, step=None):
  """`(step, state)` of a run's checkpoint `step` (default: the latest), as
  saved: plain nested dicts and lists (optimiser states too; a leaf masked
  out of an optimiser group is None)."""
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"),
                                    save_every=1, asynchronous=False)
  try:
    step = ckpt.latest_step() if step is None else step
    # No target: the arrays come back as saved, on the default device.
    restored = ckpt.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return step, restored["state"]
  finally:
    ckpt.close()


def restored_params(workdir, step=None):
  """`(step, params)` of a run's checkpoint `step` (default: the latest), as saved."""
  step, state = restored_state(workdir, step)
  return step, state["params"]


class Evil:
  """Pickles as a call to an arbitrary global with the given arguments."""

  def __init__(self, func, *args):
    self.func, self.args = func, args

  def __reduce__(self):
    return self.func, self.args


def pickle_global(module, name):
  """The protocol-0 GLOBAL opcode naming `module.name`."""
  return b"c" + module.encode() + b"\n" + name.encode() + b"\n"
