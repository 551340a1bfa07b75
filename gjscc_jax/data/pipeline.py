"""grain input pipelines: the shuffled training stream and ordered eval batches.

Training (`train_loader`): one endless global stream over the whole 'train'
split (`TrainStream`), defined by the seed alone: a fresh permutation every
epoch and a seeded left-right flip per position, cut into global batches.
Each process reads only its contiguous slice of every global batch (the rows
its devices hold). Global batch `b` is a pure function of (seed, b), so the
trainer restarts the stream at any step in O(1) from the step alone, with
any number of processes: no iterator state is saved or restored.
`train_stream_spec` is what decides the stream; checkpoints pin it.

Evaluation (`eval_batches`) walks a split in order, once, in fixed-size global
batches whose padding is marked by `mask`, so a jitted eval step sees one
shape; each process reads only its slice of every batch.
"""

import threading
from typing import Any, Iterator

from absl import flags
from absl import logging
import grain
import jax
import numpy as np

from gjscc_jax.data import sources


def check_image(image: np.ndarray, resolution: int, where: str) -> np.ndarray:
  """Returns `image` if it is uint8 (resolution, resolution, 3), else raises.

  The one check of training data: the train step maps uint8 images to
  [-1, 1] (`pixels.from_uint8`), so values cannot be out of range and the
  loss needs no run-time check; dtype and shape are checked here, on the
  host, as each image is read.
  """
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.shape != (resolution, resolution, 3):
    raise ValueError(
        f"{where}: expected a uint8 ({resolution}, {resolution}, 3) image, got "
        f"{image.dtype} {image.shape}. Prepare the dataset for "
        f"data.resolution={resolution} (python -m gjscc_jax.data.prepare).")
  return image


def per_process_batch_size(global_batch_size: int, shard_count: int) -> int:
  """`global_batch_size // shard_count`, or a `ValueError` if not exact."""
  if global_batch_size < 1:
    raise ValueError(
        f"global_batch_size must be positive, got {global_batch_size}.")
  if global_batch_size % shard_count:
    raise ValueError(
        f"global_batch_size={global_batch_size} is not divisible by the "
        f"{shard_count} data shards (processes); choose a multiple of "
        f"{shard_count}.")
  return global_batch_size // shard_count


def _check_shard(shard_index, shard_count):
  shard_index = jax.process_index() if shard_index is None else shard_index
  shard_count = jax.process_count() if shard_count is None else shard_count
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index={shard_index} must lie in "
                     f"[0, shard_count={shard_count}).")
  return shard_index, shard_count


class TrainStream:
  """The global training stream: stream position -> (record, flip).

  Epoch `e` is the permutation of all records drawn by
  `np.random.default_rng([seed, e])`, followed by one flip decision per
  position from the same generator; position `k` of the endless stream is
  entry `k mod n` of epoch `k // n`. Global batch `b` is positions
  `[b * B, (b + 1) * B)`.
  """

  #: Epochs kept in memory (reader threads work a few batches apart).
  CACHED_EPOCHS = 4

  def __init__(self, num_records: int, seed: int, random_flip: bool):
    self.num_records, self.seed, self.random_flip = (num_records, seed,
                                                     random_flip)
    self._epochs = {}
    self._lock = threading.Lock()

  def __getstate__(self):  # Pickled into grain's worker processes.
    return dict(self.__dict__, _epochs={}, _lock=None)

  def __setstate__(self, state):
    self.__dict__.update(state, _lock=threading.Lock())

  def _epoch(self, epoch: int):
    with self._lock:
      if epoch not in self._epochs:
        while len(self._epochs) >= self.CACHED_EPOCHS:
          self._epochs.pop(min(self._epochs))
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.num_records)
        flips = rng.random(self.num_records) < 0.5
        self._epochs[epoch] = (order, flips & self.random_flip)
      return self._epochs[epoch]

  def __getitem__(self, position: int) -> tuple[int, bool]:
    epoch, offset = divmod(int(position), self.num_records)
    order, flips = self._epoch(epoch)
    return int(order[offset]), bool(flips[offset])


class _ProcessBatch:
  """One process's rows of global batch `b` of a `TrainStream`."""

  def __init__(self, source, stream, global_batch_size, first_row, rows,
               resolution):
    self.source, self.stream = source, stream
    self.global_batch_size, self.first_row, self.rows = (global_batch_size,
                                                         first_row, rows)
    self.resolution = resolution

  def __call__(self, batch: int) -> dict[str, np.ndarray]:
    start = int(batch) * self.global_batch_size + self.first_row
    images = []
    for position in range(start, start + self.rows):
      index, flip = self.stream[position]
      image = check_image(self.source[index]["image"], self.resolution,
                          f"training image {index}")
      images.append(image[:, ::-1] if flip else image)
    return {"image": np.stack(images)}


#: Length of the (endless) training stream, in batches.
_MAX_BATCHES = 2**40
#: Version of the stream definition, pinned in checkpoints.
STREAM_VERSION = 1


def train_stream_spec(data_config, *, global_batch_size: int,
                      seed: int) -> dict[str, Any]:
  """Everything that decides the global batches of `train_loader`.

  Two runs with equal specs see the same global batch at every step,
  whatever their numbers of processes; the trainer pins it in checkpoints
  and refuses to resume with a different one. Folder locations are not
  part of it (a dataset may move), its size is.
  """
  spec = dict(stream_version=STREAM_VERSION, dataset=data_config.name,
              resolution=data_config.resolution,
              random_flip=bool(data_config.random_flip), seed=seed,
              global_batch_size=global_batch_size,
              train_images=len(sources.get_data_source(data_config, "train")))
  if data_config.name == "sample":
    spec.update(sample_train_size=data_config.sample_train_size,
                sample_test_size=data_config.sample_test_size)
  if data_config.name == "image_folder":
    spec.update(test_fraction=data_config.test_fraction)
  return spec


def train_loader(data_config, *, global_batch_size: int, seed: int,
                 start_step: int = 0, shard_index: int | None = None,
                 shard_count: int | None = None) -> grain.IterDataset:
  """Returns this process's part of the endless, shuffled training stream.

  The global stream (`TrainStream`) is defined once, from the seed, over the
  whole 'train' split: a fresh permutation every epoch, each position
  flipped left-right with probability 1/2 (if `random_flip`), cut into
  global batches of `global_batch_size`. Process `shard_index` of
  `shard_count` reads rows `[shard_index * L, (shard_index + 1) * L)` of
  every global batch (`L = global_batch_size // shard_count`, the rows its
  devices hold, `gjscc_jax.sharding.process_shard`). Batch `b` is a pure
  function of (seed, b), so the stream starts at any step in O(1):
  resuming at step `s` reads global batch `s` next, and a run saved by P
  processes resumes on Q with the same global batches. Neither the number
  of processes nor `num_workers` changes the batches.

  Args:
    data_config: A config like `default_data_config()`; reads `name` and the
      dataset fields, `random_flip`, `num_workers`, `read_threads` and
      `prefetch_buffer_size`.
    global_batch_size: Batch size summed over all processes.
    seed: Seed of the shuffle and of the flips, in [0, 2**32).
    start_step: Global batches to skip (the step a run resumes at).
    shard_index: This process's slice; default `jax.process_index()`.
    shard_count: Number of slices; default `jax.process_count()`.

  Returns:
    A `grain.IterDataset`; iterating it gives
    `{'image': uint8 (global_batch_size // shard_count, H, W, 3)}`.

  Raises:
    ValueError: For a batch size not divisible by `shard_count`, a bad shard,
      seed or start step.
  """
  shard_index, shard_count = _check_shard(shard_index, shard_count)
  if not (isinstance(seed, int) and 0 <= seed < 2**32):
    raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}.")
  if not 0 <= start_step < _MAX_BATCHES:
    raise ValueError(f"start_step={start_step} must be >= 0.")
  rows = per_process_batch_size(global_batch_size, shard_count)
  source = sources.get_data_source(data_config, "train")
  stream = TrainStream(len(source), seed, data_config.random_flip)
  batches = grain.MapDataset.range(start_step, _MAX_BATCHES).map(
      _ProcessBatch(source, stream, global_batch_size, shard_index * rows,
                    rows, data_config.resolution))
  prefetch = max(1, data_config.prefetch_buffer_size // rows)
  # grain uses at most `prefetch` reading threads (and warns when asked for more).
  read = grain.ReadOptions(num_threads=min(data_config.read_threads, prefetch),
                           prefetch_buffer_size=prefetch)
  dataset = batches.to_iter_dataset(read)
  if data_config.num_workers > 0:
    if not flags.FLAGS.is_parsed():
      # grain's worker processes read absl flags; outside `absl.app.run` (a
      # notebook, a plain script) nothing has parsed them yet.
      logging.info("Marking absl flags as parsed (defaults) for grain workers.")
      flags.FLAGS.mark_as_parsed()
    dataset = dataset.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=data_config.num_workers))
  return dataset


class _EvalSlice:
  """Element `j` of one process's slice of the padded, batched split."""

  def __init__(self, source, num_images, batch_size, shard_index, local):
    self.source, self.num_images = source, num_images
    self.batch_size, self.shard_index, self.local = (batch_size, shard_index,
                                                     local)
    self.pad = np.zeros_like(np.asarray(source[0]["image"]))

  def __call__(self, j: int) -> dict[str, Any]:
    batch, row = divmod(int(j), self.local)
    index = batch * self.batch_size + self.shard_index * self.local + row
    if index >= self.num_images:
      return {"image": self.pad, "index": np.int32(-1), "mask": np.bool_(False)}
    return {"image": np.asarray(self.source[index]["image"]),
            "index": np.int32(index), "mask": np.bool_(True)}


def eval_batches(data_config, split: str, batch_size: int,
                 num_images: int | None = None, *,
                 shard_index: int | None = None,
                 shard_count: int | None = None) -> Iterator[dict[str, Any]]:
  """Returns an iterator over the first `num_images` of `split`, in order.

  The images are cut into global batches of `batch_size` (the last padded);
  a process reads only its contiguous slice of each, rows
  `[shard_index * L, (shard_index + 1) * L)` with
  `L = batch_size // shard_count` (`gjscc_jax.sharding.process_shard`), so
  the processes together see every image once.

  Args:
    data_config: A config like `default_data_config()`.
    split: 'train' or 'test'.
    batch_size: Images per global batch; the last batch is padded to it.
    num_images: How many images from the start of the split; None for all.
    shard_index: This process's slice; default `jax.process_index()`.
    shard_count: Number of slices; default `jax.process_count()`.

  Returns:
    A finite, deterministic iterator of dicts: 'image' uint8 (L, H, W, 3);
    'index' int32 (L,), the position in the split (-1 for padding); 'mask'
    bool (L,), False for padding (whose image is all zeros). Over all
    shards, every index in [0, num_images) appears once.

  Raises:
    ValueError: For a bad split, batch size, shard or `num_images`.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be positive, got {batch_size}.")
  shard_index, shard_count = _check_shard(shard_index, shard_count)
  local = per_process_batch_size(batch_size, shard_count)
  source = sources.get_data_source(data_config, split)
  if num_images is None:
    num_images = len(source)
  if not 0 < num_images <= len(source):
    raise ValueError(
        f"num_images={num_images} must lie in [1, {len(source)}] (the size of "
        f"the {split!r} split); pass None to evaluate the whole split.")
  num_batches = -(-num_images // batch_size)
  element = _EvalSlice(source, num_images, batch_size, shard_index, local)
  read = grain.ReadOptions(num_threads=data_config.read_threads,
                           prefetch_buffer_size=data_config.prefetch_buffer_size)
  dataset = (grain.MapDataset.range(num_batches * local).map(element)
             .to_iter_dataset(read)
             .batch(local, drop_remainder=False))
  return iter(dataset)
