"""Per-image outputs of a batch run: atomic files, skipped on rerun.

Layout of an output directory::

  run.json                   what the directory is (`gjscc_jax.run_record`)
  run_config.json            what the results depend on (checked on rerun)
  snr_<s>dB/restored/<i>.png InverseJSCC's restored image i at SNR s
  snr_<s>dB/received/<i>.png the DeepJSCC reconstruction it started from
  snr_<s>dB/records/<i>.json per-image metrics and search history
  snr_<s>dB/latents/<i>.npz  the chosen latents (`save_latents`; see
                             `gjscc_jax.inverse.latents`)

with `<i>` the zero-padded global image index and `<s>` the SNR (`-5`,
`0.5`, ...). Every file is written to a temporary name in the same directory
and renamed into place (`os.replace`, atomic on POSIX), and the record is
written last, so an image counts as finished exactly when its record
exists and reads back: a job killed at any moment leaves either a finished
image or no record for it, and a rerun computes only the images without a
(readable) record.

Several processes may share one directory (multi-host runs): each writes
only its own images, and temporary names carry the process id (and thread).

`BackgroundWriter` writes finished batches from a small thread pool, so
the devices compute the next batches while PNGs are encoded and files
synced; a killed job loses at most the batches in flight (computing,
queued, or being written).
"""

import collections
from concurrent import futures
import io
import json
import os
import threading
from typing import Callable, Sequence

from absl import logging
import numpy as np
from PIL import Image

from gjscc_jax import run_record

#: Name of the file that pins what the outputs were computed with.
RUN_CONFIG = "run_config.json"
#: Digits of the zero-padded image index in file names.
INDEX_DIGITS = 6


def snr_dirname(snr_db: float) -> str:
  """`'snr_-5dB'`, `'snr_0.5dB'`: the folder of one SNR."""
  return f"snr_{float(snr_db):g}dB"


def atomic_write(path: str, data: bytes) -> None:
  """Writes `data` to `path` atomically (temporary file, fsync, rename)."""
  directory = os.path.dirname(path)
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp"
                     f"{os.getpid()}-{threading.get_ident()}")
  with open(tmp, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def png_bytes(image: np.ndarray) -> bytes:
  """Lossless PNG encoding of a uint8 `(H, W, 3)` image."""
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG")
  return buffer.getvalue()


class OutputStore:
  """The output directory of one batch run (see the module docstring)."""

  def __init__(self, directory: str):
    self.directory = directory

  def _path(self, snr_db, kind, index, ext):
    name = f"{int(index):0{INDEX_DIGITS}d}.{ext}"
    return os.path.join(self.directory, snr_dirname(snr_db), kind, name)

  def record_path(self, snr_db: float, index: int) -> str:
    return self._path(snr_db, "records", index, "json")

  def image_path(self, snr_db: float, index: int, kind: str) -> str:
    """Path of the 'restored' or 'received' PNG of one image."""
    return self._path(snr_db, kind, index, "png")

  def finished_record(self, snr_db: float, index: int) -> dict | None:
    """The record of image `index` at `snr_db` if it is finished, else None.

    A record that exists but cannot be read, or is not this image's (a bad
    disk, a half-synced copy), or whose PNGs or latents do not decode in
    full (a truncated file), is reported in a warning naming the file and
    counts as not finished: the image is recomputed and its files replaced.
    """
    path = self.record_path(snr_db, index)
    if not os.path.exists(path):
      return None
    try:
      record = self.read_record(snr_db, index)
      if (record.get("image_index") != index or
          float(record.get("snr_db")) != float(snr_db)):
        raise ValueError(f"it belongs to image {record.get('image_index')} "
                         f"at {record.get('snr_db')} dB")
    except (OSError, ValueError, TypeError, AttributeError) as e:
      logging.warning("Unreadable record %s (%s): recomputing that image.",
                      path, e)
      print(f"WARNING: unreadable record {path} ({e}); recomputing it.",
            flush=True)
      return None
    for kind in ("restored", "received"):
      file = self.image_path(snr_db, index, kind)
      try:
        with Image.open(file) as image:
          image.load()
          if image.size[0] != image.size[1]:
            raise ValueError(f"a {image.size[0]}x{image.size[1]} image")
      except (OSError, ValueError, SyntaxError) as e:
        return self._unreadable(file, e)
    latents = self.latents_path(snr_db, index)
    if os.path.exists(latents):
      try:
        with np.load(latents) as arrays:
          for name in arrays.files:
            arrays[name]  # pylint: disable=pointless-statement
      except Exception as e:  # pylint: disable=broad-except
        return self._unreadable(latents, e)  # zipfile, zlib, numpy errors.
    return record

  def _unreadable(self, path, error):
    """Warns that `path` does not read back; its image is recomputed."""
    logging.warning("Unreadable output %s (%s): recomputing that image.",
                    path, error)
    print(f"WARNING: unreadable output {path} ({type(error).__name__}: "
          f"{error}); recomputing that image.", flush=True)
    return None

  def latents_path(self, snr_db: float, index: int) -> str:
    """Path of the saved latents of one image (`inverse.latents`)."""
    return self._path(snr_db, "latents", index, "npz")

  def write(self, snr_db: float, index: int, images: dict, record: dict,
            latents: dict | None = None):
    """Writes one finished image: its PNGs and latents first, then its record.

    Args:
      snr_db: The SNR.
      index: The global image index.
      images: `{'restored': uint8 (H, W, 3), 'received': ...}`.
      record: JSON-serialisable per-image results.
      latents: Optional `{name: array}` written to `latents_path`.
    """
    for kind, image in images.items():
      atomic_write(self.image_path(snr_db, index, kind), png_bytes(image))
    if latents is not None:
      buffer = io.BytesIO()
      np.savez(buffer, **latents)
      atomic_write(self.latents_path(snr_db, index), buffer.getvalue())
    atomic_write(self.record_path(snr_db, index),
                 json.dumps(record, sort_keys=True).encode())

  def read_record(self, snr_db: float, index: int) -> dict:
    with open(self.record_path(snr_db, index)) as f:
      return json.load(f)

  def read_image(self, snr_db: float, index: int, kind: str) -> np.ndarray:
    with Image.open(self.image_path(snr_db, index, kind)) as image:
      return np.asarray(image.convert("RGB"))

  def check_run_config(self, settings: dict) -> None:
    """Pins `settings` to the directory, or checks them against the pin.

    The first run writes them; a rerun with different settings would mix
    incompatible results in one directory, so it raises instead.

    Raises:
      ValueError: Naming the settings that differ, and the fix.
    """
    path = os.path.join(self.directory, RUN_CONFIG)
    settings = json.loads(json.dumps(settings, sort_keys=True))
    if run_record.read(self.directory) is None:
      run_record.write(self.directory, run_record.INVERSEJSCC, __name__)
    if os.path.exists(path):
      with open(path) as f:
        pinned = json.load(f)
      changed = sorted(k for k in set(pinned) | set(settings)
                       if pinned.get(k) != settings.get(k))
      if changed:
        details = "; ".join(f"{k}: {pinned.get(k)!r} -> {settings.get(k)!r}"
                            for k in changed)
        raise ValueError(
            f"{self.directory!r} holds results computed with other settings "
            f"({details}). Use a new --config.output_dir, or delete the old "
            "results to recompute them.")
      return
    atomic_write(path, json.dumps(settings, indent=1, sort_keys=True).encode())


class BackgroundWriter:
  """Writes the images of finished batches to an `OutputStore` from threads.

  `submit` hands over one batch and returns at once, unless `max_pending`
  batches are still being written, in which case it first waits for the
  oldest (so memory stays bounded when the disk is slower than the
  devices). Batches are reported done in submission order; a failed write
  raises in the caller's thread at the next `submit` or `close`.

  Args:
    store: The `OutputStore`.
    workers: Writer threads (PNG encoding releases the GIL).
    max_pending: Batches that may be queued or being written at once.
    on_batch: Called with the number of images of each batch, once all of
      them are written (progress bars, fault injection).
  """

  def __init__(self, store: OutputStore, workers: int = 4,
               max_pending: int = 2,
               on_batch: Callable[[int], None] | None = None):
    self.store, self.max_pending, self.on_batch = store, max_pending, on_batch
    self._pool = futures.ThreadPoolExecutor(
        workers, thread_name_prefix="inverse-writer")
    self._pending = collections.deque()

  def submit(self, images: Sequence[tuple]) -> None:
    """Queues one batch: `(snr_db, index, images, record[, latents])` per image, as
    `OutputStore.write` takes them."""
    self._pending.append([self._pool.submit(self.store.write, *args)
                          for args in images])
    self._collect(keep=self.max_pending)

  def _collect(self, keep: int) -> None:
    """Retires finished batches in order, waiting while more than `keep`
    are pending."""
    while self._pending and (len(self._pending) > keep or
                             all(f.done() for f in self._pending[0])):
      batch = self._pending.popleft()
      for f in batch:
        f.result()
      if self.on_batch is not None:
        self.on_batch(len(batch))

  def close(self) -> None:
    """Waits until every submitted batch is written."""
    try:
      self._collect(keep=0)
    finally:
      self._pool.shutdown(wait=True)
