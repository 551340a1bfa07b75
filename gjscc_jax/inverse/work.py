"""The work of a batch run: which images, which process, which batch.

A run restores every image of a source at every SNR. The unit of work is an
`Item` `(image index, SNR)`. Image `i` belongs to process `i % P` of `P`
(all its SNRs), so processes split the images disjointly without talking to
each other, each skips what it already finished (its records exist), and
each batch is padded to the fixed batch size with masked copies, so one
compiled program serves the whole run.

At the end, `gather_rows` collects the per-image metrics of every process on
every process (a collective over `jax.distributed`), so that process 0 can
write the run's summary even when the processes share no file system.
"""

import dataclasses
import functools
import os
from typing import Iterator, Sequence

import jax
import numpy as np

from gjscc_jax.data import photos

#: Extensions read from an input folder.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclasses.dataclass(frozen=True)
class Item:
  """One unit of work: image `index` transmitted at `snr_db`."""
  index: int
  snr_db: float


class ImageSource:
  """Random access to the images of a run: a dataset split or a folder.

  Args:
    data_config: `config.data` (used when `input_dir` is None).
    split: The dataset split.
    input_dir: A folder of images (searched recursively, sorted by path);
      each is centre-cropped to a square and resized (Lanczos) to
      `data_config.resolution`.
  """

  def __init__(self, data_config, split="test", input_dir=None):
    self.resolution = data_config.resolution
    if input_dir:
      self._files = sorted(
          os.path.join(root, name)
          for root, _, names in os.walk(input_dir) for name in names
          if name.lower().endswith(IMAGE_EXTENSIONS))
      if not self._files:
        raise FileNotFoundError(
            f"No images ({', '.join(IMAGE_EXTENSIONS)}) under input_dir="
            f"{input_dir!r}.")
      self._source = None
    else:
      from gjscc_jax import data  # pylint: disable=import-outside-toplevel
      from gjscc_jax import generated_data  # pylint: disable=import-outside-toplevel
      generated_data.ensure_prepared(data_config)  # 'generator' data only.
      self._files = None
      self._source = data.get_data_source(data_config, split)

  def __len__(self):
    return len(self._files) if self._files is not None else len(self._source)

  @functools.lru_cache(maxsize=64)
  def load(self, index: int) -> tuple[np.ndarray, str]:
    """`(uint8 (H, W, 3), name)` of image `index`."""
    if self._files is not None:
      path = self._files[index]
      image = photos.resize_square(
          photos.center_crop_square(photos.open_rgb(path)), self.resolution)
      return np.asarray(image, np.uint8), os.path.basename(path)
    element = self._source[index]
    name = element.get("file_name", b"")
    name = name.decode() if isinstance(name, bytes) else str(name)
    image = np.asarray(element["image"], np.uint8)
    if image.shape != (self.resolution, self.resolution, 3):
      raise ValueError(f"Image {index} has shape {image.shape}; expected "
                       f"({self.resolution}, {self.resolution}, 3).")
    return image, name


def process_images(num_images: int, process_index: int,
                   process_count: int) -> range:
  """The image indices of one process: `process_index::process_count`."""
  if not 0 <= process_index < process_count:
    raise ValueError(f"process {process_index} of {process_count}?")
  return range(process_index, num_images, process_count)


def items_for(indices: Sequence[int], snrs_db: Sequence[float]) -> list[Item]:
  """Every image of `indices` at every SNR, image by image."""
  return [Item(int(i), float(s)) for i in indices for s in snrs_db]


def batches(items: Sequence[Item], batch_size: int
            ) -> Iterator[tuple[list[Item], np.ndarray]]:
  """Fixed-size batches: `(items, mask)`, the last padded with copies of its
  last item (`mask` False for the copies)."""
  for start in range(0, len(items), batch_size):
    chunk = list(items[start:start + batch_size])
    mask = np.zeros(batch_size, bool)
    mask[:len(chunk)] = True
    chunk += [chunk[-1]] * (batch_size - len(chunk))
    yield chunk, mask


def gather_rows(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Concatenates per-process columns of equal keys over all processes.

  Args:
    columns: `{name: (n_local,) float64 array}`; `n_local` may differ
      between processes; every process passes the same names.

  Returns:
    `{name: (n_total,)}` on every process, process 0's rows first. With one
    process the input is returned as is (no collective).
  """
  if jax.process_count() == 1:
    return columns
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  names = sorted(columns)
  local = np.stack([np.asarray(columns[n], np.float64) for n in names], 1)
  counts = multihost_utils.process_allgather(np.array([len(local)], np.int64))
  counts = np.asarray(counts).reshape(-1)
  padded = np.zeros((int(counts.max()), len(names)), np.float64)
  padded[:len(local)] = local
  # float64 would be truncated to float32 by JAX (x64 disabled): send the
  # raw bytes as int32 words instead and reinterpret them afterwards.
  words = padded.view(np.int32)
  gathered = np.asarray(multihost_utils.process_allgather(words))
  gathered = gathered.reshape(len(counts), *words.shape).view(np.float64)
  rows = np.concatenate([gathered[p, :c] for p, c in enumerate(counts)])
  return {n: rows[:, k] for k, n in enumerate(names)}
