"""Helpers shared by several test modules (not tests themselves)."""

import os

import orbax.checkpoint as ocp

from gjscc_jax.train import checkpointing


def restored_params(workdir):
  """`(step, params)` of a run's latest checkpoint, as saved."""
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"),
                                    save_every=1, asynchronous=False)
  try:
    step = ckpt.latest_step()
    # No target: the arrays come back as saved, on the default device.
    restored = ckpt.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return step, restored["state"]["params"]
  finally:
    ckpt.close()


class Evil:
  """Pickles as a call to an arbitrary global with the given arguments."""

  def __init__(self, func, *args):
    self.func, self.args = func, args

  def __reduce__(self):
    return self.func, self.args


def pickle_global(module, name):
  """The protocol-0 GLOBAL opcode naming `module.name`."""
  return b"c" + module.encode() + b"\n" + name.encode() + b"\n"
