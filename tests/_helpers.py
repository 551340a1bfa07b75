"""Helpers shared by several test modules (not tests themselves)."""

import glob
import os

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from experiments.configs import deepjscc_ffhq
from gjscc_jax import schemes
from gjscc_jax.train import checkpointing
from gjscc_jax.train import step as step_lib


def restored_state(workdir, step=None):
  """`(step, state)` of a run's checkpoint `step` (default: the latest), as
  saved: plain nested dicts and lists (optimiser states too; a leaf masked
  out of an optimiser group is None)."""
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"),
                                    save_every=1, asynchronous=False)
  try:
    step = ckpt.latest_step() if step is None else step
    # No target: the arrays come back as saved, on one device (whatever
    # devices and processes wrote them).
    one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    restored = ckpt.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(fallback_sharding=one_device)))
    return step, restored["state"]
  finally:
    ckpt.close()


def restored_params(workdir, step=None):
  """`(step, params)` of a run's checkpoint `step` (default: the latest), as saved."""
  step, state = restored_state(workdir, step)
  return step, state["params"]


def untrained_deepjscc_run(workdir, tfds_dir, resolution, latent_channels=8):
  """A small DeepJSCC run directory as the trainer writes it, at step 0.

  4x downsampling: rho = latent_channels / 96 (8: 1/12).
  """
  config = deepjscc_ffhq.get_config("demo")
  config.data.resolution = resolution
  config.data.tfds_dir = str(tfds_dir)
  config.model.arch = "small"
  config.model.downsampling = 4
  config.model.num_filters = 8
  config.model.latent_channels = latent_channels
  scheme = schemes.build_scheme(config)
  tx, _ = scheme.make_optimizer(config.total_steps)
  key = jax.random.PRNGKey(0)
  state = jax.jit(lambda k: step_lib.create_train_state(
      scheme.init(k, jnp.zeros((1, resolution, resolution, 3))), tx, k))(key)
  os.makedirs(workdir)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort())
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"),
                                    save_every=1, asynchronous=False)
  ckpt.save(0, state, force=True)
  ckpt.close()


def flip_largest_array_file(step_dir):
  """Flips 64 bytes in the middle of the largest array data file of a step."""
  files = [f for f in glob.glob(os.path.join(step_dir, "state", "**", "*"),
                                recursive=True)
           if os.path.isfile(f) and f"{os.sep}d{os.sep}" in f]
  path = max(files, key=os.path.getsize)
  data = bytearray(open(path, "rb").read())
  middle = len(data) // 2
  data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
  with open(path, "wb") as f:
    f.write(bytes(data))
  return path


class Evil:
  """Pickles as a call to an arbitrary global with the given arguments."""

  def __init__(self, func, *args):
    self.func, self.args = func, args

  def __reduce__(self):
    return self.func, self.args


def pickle_global(module, name):
  """The protocol-0 GLOBAL opcode naming `module.name`."""
  return b"c" + module.encode() + b"\n" + name.encode() + b"\n"
