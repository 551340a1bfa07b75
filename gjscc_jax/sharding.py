"""Device mesh and the project's sharding rules, all in one place.

The mesh has two axes:

* `data`: data parallelism. The global batch is split over it.
* `fsdp`: parameter sharding (fully sharded data parallelism). The batch is
  split over it too, and large parameters (and so their optimiser state) are
  split along one of their dimensions, so each device holds 1/fsdp of the
  train state. With `fsdp=1` everything is replicated. The project's
  networks are small (a 1024x1024 StyleGAN2 and its Adam state are under
  0.4 GB): sharding them saves little per device; activations, not
  parameters, bound the batch a device fits (see the models' `remat`).

Multi-host: call `maybe_initialize_distributed()` first; the mesh then spans
the devices of every process, and each process feeds its own slice of the
global batch (`global_batch`).
"""

import os

from absl import logging
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

BATCH_AXES = ("data", "fsdp")


def maybe_initialize_distributed(force=False):
  """Calls `jax.distributed.initialize()` when launched as several processes.

  JAX auto-detects cluster environments (SLURM, Cloud TPU pods, ...). For a
  manual launch set `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES` and
  `JAX_PROCESS_ID` on every process (or pass `force=True` on a TPU pod).
  """
  manual = "JAX_COORDINATOR_ADDRESS" in os.environ
  if not (force or manual):
    return False
  kwargs = {}
  if manual:
    kwargs = dict(
        coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
        num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
        process_id=int(os.environ["JAX_PROCESS_ID"]))
  jax.distributed.initialize(**kwargs)
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
  return True


def make_mesh(data=-1, fsdp=1, devices=None):
  """A ('data', 'fsdp') mesh; -1 for `data` takes all remaining devices."""
  devices = jax.devices() if devices is None else devices
  n = len(devices)
  if fsdp < 1 or n % fsdp:
    raise ValueError(f"mesh.fsdp={fsdp} must be >= 1 and divide the {n} devices.")
  if data == -1:
    data = n // fsdp
  if data * fsdp != n:
    raise ValueError(
        f"mesh data={data} x fsdp={fsdp} does not match the {n} devices; "
        "set --config.mesh.data=-1 to use all of them.")
  # Auto axes: XLA propagates shardings through the model (jit + NamedSharding
  # on inputs and outputs), rather than every op spelling out its sharding.
  auto = jax.sharding.AxisType.Auto
  return jax.make_mesh((data, fsdp), ("data", "fsdp"), devices=devices,
                       axis_types=(auto, auto))


def replicated(mesh):
  return NamedSharding(mesh, P())


def batch_sharding(mesh):
  """Leading (batch) axis split over both mesh axes."""
  return NamedSharding(mesh, P(BATCH_AXES))


def batch_size_per_process(global_batch_size, mesh):
  """The slice of the global batch one process loads; checks divisibility."""
  shards = mesh.shape["data"] * mesh.shape["fsdp"]
  if global_batch_size % shards:
    raise ValueError(
        f"batch_size={global_batch_size} must be divisible by the {shards} "
        "devices of the mesh (set --config.batch_size to a multiple).")
  return global_batch_size // jax.process_count()


def global_batch(local_batch, mesh):
  """Assembles per-process numpy batches into one global sharded array tree."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      local_batch)


def fsdp_spec(shape, fsdp_size, min_size=2**18):
  """PartitionSpec of one parameter under the FSDP rule.

  A parameter with at least `min_size` elements is split along its largest
  dimension divisible by the fsdp axis size; smaller ones are replicated
  (splitting them costs more in communication than it saves).
  """
  if fsdp_size == 1 or int(np.prod(shape)) < min_size:
    return P()
  order = sorted(range(len(shape)), key=lambda d: -shape[d])
  for dim in order:
    if shape[dim] % fsdp_size == 0:
      spec = [None] * len(shape)
      spec[dim] = "fsdp"
      return P(*spec)
  return P()


def param_shardings(tree, mesh, min_size=2**18):
  """NamedShardings for a pytree of arrays (params or optimiser state)."""
  fsdp_size = mesh.shape["fsdp"]

  def rule(x):
    shape = getattr(x, "shape", ())
    return NamedSharding(mesh, fsdp_spec(tuple(shape), fsdp_size, min_size))

  return jax.tree.map(rule, tree)

