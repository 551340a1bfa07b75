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
the devices of every process. Each process loads only the rows of the global
batch that its devices hold (`process_shard` says which), assembles them
into the global array with `global_batch`, reads per-image results back
from its own devices with `host_local`, and `gather_rows` collects host-side
per-image results of every process once at the end of a job.
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
  if not (force or manual) or jax.distributed.is_initialized():
    return False  # Not asked for, or done already (a second call raises).
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


def process_shard(mesh, global_batch_size):
  """`(shard_index, shard_count)`: which slice of every global batch this
  process loads.

  Under `batch_sharding(mesh)` the devices of process `p` of `P` hold rows
  `[p * B / P, (p + 1) * B / P)` of a global batch of `B` rows (a mesh from
  `make_mesh` orders devices process by process); the data pipelines load
  exactly that contiguous slice (`shard_index=p, shard_count=P`).

  Raises:
    ValueError: if `global_batch_size` does not split evenly over the
      devices, or the mesh gives this process non-contiguous rows.
  """
  batch_size_per_process(global_batch_size, mesh)
  count, index = jax.process_count(), jax.process_index()
  local = global_batch_size // count
  starts = sorted({idx[0].start or 0 for idx in batch_sharding(mesh)
                   .addressable_devices_indices_map((global_batch_size,))
                   .values()})
  per_device = global_batch_size // (mesh.shape["data"] * mesh.shape["fsdp"])
  expected = list(range(index * local, (index + 1) * local, per_device))
  if starts != expected:
    raise ValueError(
        f"The mesh gives process {index} the batch rows starting at {starts}, "
        f"not the contiguous slice [{index * local}, {(index + 1) * local}) "
        "the data pipelines load; build the mesh with "
        "gjscc_jax.sharding.make_mesh.")
  return index, count


def global_batch(local_batch, mesh):
  """Assembles per-process numpy batches into one global sharded array tree.

  Each process passes its `process_shard` slice of the global batch.
  """
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      local_batch)


def host_local(array):
  """This process's rows of a batch-sharded `jax.Array`, as numpy.

  The inverse of `global_batch`: the rows held by this process's devices,
  in order (the process's `process_shard` slice). Reads no other process's
  data, so it works on arrays that span several processes, where
  `np.asarray` fails.
  """
  if array.is_fully_addressable:
    return np.asarray(array)
  shards = {}
  for shard in array.addressable_shards:
    start = (shard.index[0].start or 0) if shard.index else 0
    shards.setdefault(start, shard.data)  # Replicas hold the same rows.
  return np.concatenate([np.asarray(shards[s]) for s in sorted(shards)])


def gather_rows(columns):
  """Concatenates per-process rows of equal columns over all processes.

  One collective over `jax.distributed` (two small ones with the counts),
  for host-side per-image results gathered once at the end of a job, so
  that process 0 can write a summary even when the processes share no file
  system. Values are sent as raw bytes: float64 survives exactly (JAX
  without x64 would truncate it to float32).

  Args:
    columns: `{name: array (n_local, ...)}` of any numeric or bool dtype;
      `n_local` may differ between processes but not between the columns
      of one process; every process passes the same names, dtypes and
      trailing shapes.

  Returns:
    `{name: array (n_total, ...)}` on every process, process 0's rows
    first. With one process the input is returned as is (no collective).
  """
  if jax.process_count() == 1:
    return columns
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  names = sorted(columns)
  arrays = [np.ascontiguousarray(columns[n]) for n in names]
  n_local = len(arrays[0]) if arrays else 0
  if any(len(a) != n_local for a in arrays):
    raise ValueError("gather_rows: every column needs the same number of rows.")
  as_bytes = [a.reshape(n_local, -1).view(np.uint8) for a in arrays]
  widths = [b.shape[1] for b in as_bytes]
  counts = np.asarray(multihost_utils.process_allgather(
      np.array([n_local], np.int32))).reshape(-1)
  packed = np.zeros((int(counts.max()), sum(widths)), np.uint8)
  if n_local:
    packed[:n_local] = np.concatenate(as_bytes, 1)
  gathered = np.asarray(multihost_utils.process_allgather(packed))
  rows = np.concatenate([gathered[p, :c] for p, c in enumerate(counts)])
  out, offset = {}, 0
  for name, array, width in zip(names, arrays, widths):
    chunk = np.ascontiguousarray(rows[:, offset:offset + width])
    out[name] = chunk.view(array.dtype).reshape((len(rows),) + array.shape[1:])
    offset += width
  return out


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

