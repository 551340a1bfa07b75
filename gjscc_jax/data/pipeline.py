"""grain input pipelines: the shuffled training stream and ordered eval batches.

Training (`train_loader`) is a `grain.DataLoader` over the 'train' split: an
`IndexSampler` draws a fresh seeded permutation of this process's shard every
epoch, forever; each image is flipped left-right with probability 1/2 by a
`RandomMap` whose generator grain derives from (seed, position in the stream);
images are batched to the per-process batch size. Everything that decides a
batch is a function of (seed, shard, position), so the iterator's state is
just its position: `it.get_state()` / `it.set_state(state)` (JSON bytes), or
Orbax with `grain.checkpoint.CheckpointSave(it)` /
`grain.checkpoint.CheckpointRestore(it)` (handler
`grain.checkpoint.CheckpointHandler`), resume the exact same batches. The
batches do not depend on `num_workers`, but a saved state can only be restored
into a loader with the same `num_workers` (grain checks it).

Evaluation (`eval_batches`) walks a split in order, once, in fixed-size global
batches whose padding is marked by `mask`, so a jitted eval step sees one
shape; each process reads only its slice of every batch.
"""

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


class SelectImage(grain.transforms.Map):
  """Keeps only the 'image' of a decoded record (drops its file name) and
  checks it (`check_image`)."""

  def __init__(self, resolution: int):
    self.resolution = resolution

  def map(self, element: dict[str, Any]) -> dict[str, np.ndarray]:
    return {"image": check_image(element["image"], self.resolution,
                                 "training data")}


class RandomHorizontalFlip(grain.transforms.RandomMap):
  """Mirrors the image left-right with probability 1/2."""

  def random_map(self, element: dict[str, np.ndarray],
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    if rng.random() < 0.5:
      return {**element, "image": element["image"][:, ::-1]}
    return element


def _read_options(data_config) -> grain.ReadOptions:
  return grain.ReadOptions(
      num_threads=data_config.read_threads,
      prefetch_buffer_size=data_config.prefetch_buffer_size)


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


def train_loader(data_config, *, global_batch_size: int, seed: int,
                 shard_index: int | None = None,
                 shard_count: int | None = None) -> grain.DataLoader:
  """Returns the infinite, shuffled, sharded training `grain.DataLoader`.

  Each process reads its own contiguous shard (`len // shard_count` images; a
  remainder is dropped so every process has the same epoch length) and
  reshuffles it every epoch.

  Args:
    data_config: A config like `default_data_config()`; reads `name` and the
      dataset fields, `random_flip`, `num_workers`, `read_threads` and
      `prefetch_buffer_size`.
    global_batch_size: Batch size summed over all processes.
    seed: Seed of the shuffle and of the flips, in [0, 2**32).
    shard_index: This process's shard; default `jax.process_index()`.
    shard_count: Number of shards; default `jax.process_count()`.

  Returns:
    A `grain.DataLoader`; `iter(loader)` gives a checkpointable iterator of
    `{'image': uint8 (global_batch_size // shard_count, H, W, 3)}`.

  Raises:
    ValueError: For a batch size not divisible by `shard_count`, a bad shard or
      seed, or fewer training images than shards.
  """
  shard_index = jax.process_index() if shard_index is None else shard_index
  shard_count = jax.process_count() if shard_count is None else shard_count
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index={shard_index} must lie in "
                     f"[0, shard_count={shard_count}).")
  if not (isinstance(seed, int) and 0 <= seed < 2**32):
    raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}.")
  batch_size = per_process_batch_size(global_batch_size, shard_count)
  source = sources.get_data_source(data_config, "train")
  if len(source) < shard_count:
    raise ValueError(f"{len(source)} training images cannot be split into "
                     f"{shard_count} shards.")
  shard_options = grain.sharding.ShardOptions(
      shard_index=shard_index, shard_count=shard_count, drop_remainder=True)
  sampler = grain.samplers.IndexSampler(
      num_records=len(source), shard_options=shard_options, shuffle=True,
      num_epochs=None, seed=seed)
  if data_config.num_workers > 0 and not flags.FLAGS.is_parsed():
    # grain's worker processes read absl flags; outside `absl.app.run` (a
    # notebook, a plain script) nothing has parsed them yet.
    logging.info("Marking absl flags as parsed (defaults) for grain workers.")
    flags.FLAGS.mark_as_parsed()
  operations = [SelectImage(data_config.resolution)]
  if data_config.random_flip:
    operations.append(RandomHorizontalFlip())
  operations.append(grain.transforms.Batch(batch_size, drop_remainder=True))
  return grain.DataLoader(
      data_source=source, sampler=sampler, operations=operations,
      worker_count=data_config.num_workers, shard_options=shard_options,
      read_options=_read_options(data_config))


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
  shard_index = jax.process_index() if shard_index is None else shard_index
  shard_count = jax.process_count() if shard_count is None else shard_count
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index={shard_index} must lie in "
                     f"[0, shard_count={shard_count}).")
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
  dataset = (grain.MapDataset.range(num_batches * local).map(element)
             .to_iter_dataset(_read_options(data_config))
             .batch(local, drop_remainder=False))
  return iter(dataset)
