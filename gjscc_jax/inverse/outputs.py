"""Per-image outputs of a batch run: atomic files, skipped on rerun.

Layout of an output directory::

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
exists: a job killed at any moment leaves either a finished image or no
record for it, and a rerun computes only the images without a record.

Several processes may share one directory (multi-host runs): each writes
only its own images, and temporary names carry the process id.
"""

import io
import json
import os

import numpy as np
from PIL import Image

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
  tmp = os.path.join(directory,
                     f".{os.path.basename(path)}.tmp{os.getpid()}")
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

  def latents_path(self, snr_db: float, index: int) -> str:
    """Path of the saved latents of one image (`inverse.latents`)."""
    return self._path(snr_db, "latents", index, "npz")

  def is_done(self, snr_db: float, index: int) -> bool:
    """Whether image `index` at `snr_db` has its record (is finished)."""
    return os.path.exists(self.record_path(snr_db, index))

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
