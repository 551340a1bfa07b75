"""Trained runs on disk: a training workdir's config and parameters.

A run directory is the `--workdir` of `python -m experiments.train`: it
holds `config.json` (the resolved config) and `checkpoints/` (orbax). The
evaluator and InverseJSCC reach a trained scheme only through `load_run`.
"""

import json
import os

import jax
import ml_collections

from gjscc_jax import schemes
from gjscc_jax import sharding
from gjscc_jax.train import checkpointing
from gjscc_jax.train import step as step_lib


def read_config(workdir) -> ml_collections.ConfigDict:
  """The config a run was trained with (`workdir/config.json`).

  Raises:
    FileNotFoundError: naming the fix, when `workdir` is not a run.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"{workdir!r} is not a training run directory: it has no config.json. "
        "Pass the --workdir given to python -m experiments.train.")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def override(config, overrides):
  """A copy of `config` with `{'dotted.key': value}` fields replaced.

  Raises:
    ValueError: naming the key, for a field the config does not have.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  for key, value in (overrides or {}).items():
    *path, leaf = key.split(".")
    node = config
    for name in path:
      if name not in node:
        raise ValueError(f"The run's config has no field {key!r}.")
      node = node[name]
    if leaf not in node:
      raise ValueError(f"The run's config has no field {key!r}.")
    node[leaf] = value
  return config


def load_run(workdir, step=None, overrides=None, remat=None):
  """`(config, scheme, params)` of the training run in `workdir`.

  Args:
    workdir: The run directory.
    step: Checkpoint step to load; None for the latest.
    overrides: Optional `{'dotted.key': value}` applied to the run's config
      before its scheme is built, for settings that do not change the
      parameters' shapes: e.g. `{'channel.kind': 'rayleigh'}` tests a model
      on another channel than it was trained on, `{'data.name': ...}` on
      other images.
    remat: Overrides the run's `config.remat` in the returned config and
      scheme (recomputation in backward passes does not change the
      parameters); None keeps the run's.

  Returns:
    The run's config (with the overrides), its `schemes.Scheme`, and its
    parameters, replicated over every device.

  Raises:
    FileNotFoundError: when the directory is not a run or has no checkpoint.
    checkpointing.RestoreError: when no checkpoint restores (e.g. it does
      not fit the config it was written with); the message lists each
      step's error.
  """
  config = override(read_config(workdir), overrides)
  if remat is not None:
    config.remat = bool(remat)
  scheme = schemes.build_scheme(config)
  tx, _ = scheme.make_optimizer(config.total_steps)
  res = config.data.resolution
  dummy = jax.ShapeDtypeStruct((1, res, res, 3), "float32")
  abstract = jax.eval_shape(
      lambda k, x: step_lib.create_train_state(scheme.init(k, x), tx, k),
      jax.random.PRNGKey(0), dummy)
  repl = sharding.replicated(sharding.make_mesh())
  abstract = checkpointing.abstract_with_shardings(
      abstract, jax.tree.map(lambda _: repl, abstract))
  params = checkpointing.restore_params(workdir, abstract, step)
  return config, scheme, params
