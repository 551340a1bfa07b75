"""TFDS builders for folders of face photos: CelebA-HQ, FFHQ, any folder.

The images live on the user's disk (their licences forbid redistribution), so
preparation reads a folder, centre-crops each image square (CelebA-HQ and FFHQ
already are), resizes it with an antialiasing Lanczos filter to the configured
resolution and writes lossless PNGs into TFDS `array_record` files, once per
(dataset, resolution); later runs read the prepared files with random access
and never touch the folder again. No TensorFlow is involved: images are passed
to TFDS as encoded PNG bytes, which its `Image` feature stores as they are.

Splits (`train`, `test`), following the comparable literature:

* CelebA-HQ: the 30,000 images named by number (`0.jpg` ... `29999.jpg`, as
  in CelebAMask-HQ's `CelebA-HQ-img/`, or zero-padded); sorted by that number,
  train = the first 27,000 and test = the last 3,000 (the split of DiffJSCC and
  other CelebA-HQ JSCC work).
* FFHQ: the 70,000 images `00000.png` ... `69999.png` (the official
  `images1024x1024/` tree, sub-folders allowed); train = the first 60,000 and
  test = the last 10,000 (the split of StyleGAN-inversion work).
* Any other folder ('image_folder'): files sorted by relative path; a seeded
  permutation picks `round(test_fraction * n)` of them for test; both splits
  keep the sorted order.

A file that cannot be decoded is skipped, logged with its path, counted at the
end of its split, and listed in `builder.info.metadata['skipped_files']`.
"""

import concurrent.futures
import dataclasses
import functools
import hashlib
import os
import pathlib
import re

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from gjscc_jax.data import photos as photos_lib

#: File suffixes (case-insensitive) taken to be images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

_LAYOUTS = {
    "celebahq": "CelebA-HQ: <image_dir>/0.jpg ... 29999.jpg (CelebAMask-HQ's "
                "CelebA-HQ-img folder; .png or zero-padded names are fine)",
    "ffhq": "FFHQ: <image_dir>/00000/00000.png ... 69000/69999.png (the "
            "official images1024x1024 folder; a flat folder is fine)",
    "image_folder": "any folder of .png/.jpg/.jpeg/.webp/.bmp/.tif images "
                    "(searched recursively)",
}


@dataclasses.dataclass(frozen=True)
class IndexSplit:
  """Train = the first `train_size` files by numeric name; test = the rest.

  The folder must hold exactly `train_size + test_size` images, each named by
  an integer (`27000.jpg`, `00042.png`), so that the split is the published one.
  """

  train_size: int
  test_size: int

  @property
  def tag(self) -> str:
    return f"{self.train_size}train-{self.test_size}test"

  def assign(self, image_dir: pathlib.Path,
             files: list[pathlib.Path]) -> dict[str, list[pathlib.Path]]:
    """Returns the files of each split, in numeric order."""
    numbers = {}
    for path in files:
      if not path.stem.isdigit():
        raise ValueError(
            f"{path} is not named by a number; the index split needs files "
            f"named 0.png, 1.png, ... (or 00000.png, ...). For another folder "
            "layout set data_config.name='image_folder'.")
      number = int(path.stem)
      if number in numbers:
        raise ValueError(
            f"Two files carry the number {number}: {numbers[number]} and "
            f"{path}; keep one copy of each image in {image_dir}.")
      numbers[number] = path
    expected = self.train_size + self.test_size
    if len(numbers) != expected:
      raise ValueError(
          f"{image_dir} holds {len(numbers)} images but this split needs "
          f"exactly {expected} ({self.train_size} train + {self.test_size} "
          "test). Point data_config.image_dir at the "
          "complete dataset, or use data_config.name='image_folder' for a "
          "fraction split of an arbitrary folder.")
    ordered = [numbers[number] for number in sorted(numbers)]
    return {"train": ordered[:self.train_size],
            "test": ordered[self.train_size:]}


@dataclasses.dataclass(frozen=True)
class FractionSplit:
  """A seeded `test_fraction` of the files is test; the rest is train."""

  test_fraction: float
  seed: int = 0

  @property
  def tag(self) -> str:
    return f"test{self.test_fraction:g}"

  def assign(self, image_dir: pathlib.Path,
             files: list[pathlib.Path]) -> dict[str, list[pathlib.Path]]:
    """Returns the files of each split, each in sorted-path order."""
    num_test = round(self.test_fraction * len(files))
    if not 0 < num_test < len(files):
      raise ValueError(
          f"test_fraction={self.test_fraction} of the {len(files)} images in "
          f"{image_dir} leaves a split empty; add images or change "
          "data_config.test_fraction.")
    permutation = np.random.default_rng(self.seed).permutation(len(files))
    is_test = np.zeros(len(files), bool)
    is_test[permutation[:num_test]] = True
    return {"train": [p for p, t in zip(files, is_test) if not t],
            "test": [p for p, t in zip(files, is_test) if t]}


#: The split of each named dataset.
PRESET_SPLITS = {
    "celebahq": IndexSplit(train_size=27_000, test_size=3_000),
    "ffhq": IndexSplit(train_size=60_000, test_size=10_000),
}


def list_images(image_dir: str | os.PathLike | None,
                dataset: str = "image_folder") -> list[pathlib.Path]:
  """Returns the image files under `image_dir` (recursive), sorted by path.

  Hidden files and folders (names starting with '.') are ignored.

  Raises:
    FileNotFoundError: If `image_dir` is unset, missing or holds no image, with
      the layout `dataset` expects and how to point the config at it.
  """
  how = (f"Expected layout: {_LAYOUTS[dataset]}. Set data_config.image_dir "
         "to that folder (e.g. --config.data.image_dir=/path/to/images) and "
         "prepare it once with `python -m gjscc_jax.data.prepare "
         f"--name={dataset} --image_dir=/path/to/images --resolution=<px>`.")
  if image_dir is None:
    raise FileNotFoundError(
        f"The {dataset!r} dataset is not prepared and data_config.image_dir is "
        f"not set. {how}")
  root = pathlib.Path(image_dir).expanduser()
  if not root.is_dir():
    raise FileNotFoundError(f"Image folder {root} does not exist. {how}")
  files = sorted(
      path for path in root.rglob("*")
      if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
      and not any(part.startswith(".")
                  for part in path.relative_to(root).parts))
  if not files:
    raise FileNotFoundError(f"Image folder {root} holds no image files. {how}")
  return files


def _ordered_parallel_map(fn, items, num_threads, window=256):
  """Yields `fn(item)` in order, computing up to `window` items ahead."""
  with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
    for start in range(0, len(items), window):
      yield from pool.map(fn, items[start:start + window])


def _png_or_error(path: pathlib.Path, resolution: int) -> bytes | Exception:
  try:
    return photos_lib.square_png(path, resolution)
  except photos_lib.UNREADABLE_IMAGE_ERRORS as error:
    return error


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  """A (resolution, split) configuration of an image-folder dataset."""

  resolution: int = 256
  split: IndexSplit | FractionSplit | None = None


class _FolderBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Prepares a folder of images as square PNGs at one resolution."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  DATASET = "image_folder"  # Key of `_LAYOUTS` / `PRESET_SPLITS`.

  def __init__(self, *, image_dir: str | os.PathLike | None = None,
               num_threads: int | None = None, **kwargs):
    """Builder of one config; `image_dir` is only read by preparation."""
    self._image_dir = image_dir
    self._num_threads = num_threads or os.cpu_count() or 1
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    resolution = self.builder_config.resolution
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"{self.DATASET} images, {_LAYOUTS[self.DATASET]}, "
                    f"centre-cropped and Lanczos-resized to "
                    f"{resolution}x{resolution}.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(
                shape=(resolution, resolution, 3), encoding_format="png"),
            # Path relative to the image folder, e.g. '27000.jpg'.
            "file_name": tfds.features.Text(),
        }),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # The images are on the user's disk.
    files = list_images(self._image_dir, self.DATASET)
    root = pathlib.Path(self._image_dir).expanduser()
    self.info.metadata["image_dir"] = str(root.resolve())
    self.info.metadata["skipped_files"] = {}
    splits = self.builder_config.split.assign(root, files)
    return {name: self._generate_examples(name, root, split_files)
            for name, split_files in splits.items()}

  def _generate_examples(self, split, root, files):
    encode = functools.partial(_png_or_error,
                               resolution=self.builder_config.resolution)
    skipped = []
    for key, (path, png) in enumerate(
        zip(files, _ordered_parallel_map(encode, files, self._num_threads))):
      relative = path.relative_to(root).as_posix()
      if isinstance(png, Exception):
        logging.warning("Skipping unreadable image %s: %s", path, png)
        skipped.append(relative)
        continue
      yield key, {"image": png, "file_name": relative}
    if skipped and len(skipped) == len(files):
      raise ValueError(
          f"None of the {len(files)} image file(s) of the {split!r} split of "
          f"{root} could be read: {', '.join(skipped)}. Replace them with "
          "readable images (PNG, JPEG, ...) or point to another folder.")
    if skipped:
      logging.warning(
          "Skipped %d unreadable image(s) of %d in the %r split of %s: %s",
          len(skipped), len(files), split, root, ", ".join(skipped))
    self.info.metadata["skipped_files"][split] = skipped


class GjsccCelebahq(_FolderBuilder):
  """CelebA-HQ (30k faces), 27k train / 3k test by index."""

  name = "gjscc_celebahq"
  DATASET = "celebahq"


class GjsccFfhq(_FolderBuilder):
  """FFHQ (70k faces), 60k train / 10k test by index."""

  name = "gjscc_ffhq"
  DATASET = "ffhq"


class GjsccImageFolder(_FolderBuilder):
  """Any folder of images, split by a seeded fraction."""

  name = "gjscc_image_folder"
  DATASET = "image_folder"


_BUILDERS = {cls.DATASET: cls for cls in (GjsccCelebahq, GjsccFfhq,
                                          GjsccImageFolder)}


def _folder_slug(image_dir) -> str:
  """'<folder name>-<8 hex digits of its absolute path>': unique per folder."""
  path = pathlib.Path(image_dir).expanduser().resolve()
  name = re.sub(r"[^\w\-]+", "_", path.name)[:40] or "root"
  digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
  return f"{name}-{digest}"


def folder_builder(dataset: str, *, resolution: int,
                   image_dir: str | os.PathLike | None = None,
                   tfds_dir: str | None = None,
                   split: IndexSplit | FractionSplit | None = None,
                   test_fraction: float = 0.1,
                   num_threads: int | None = None) -> _FolderBuilder:
  """Returns the builder of a folder dataset (call `download_and_prepare()`).

  Config names: 'celebahq' and 'ffhq' with their preset split are '<res>px'
  (e.g. `gjscc_celebahq/512px`); another `split` adds its tag. A generic
  'image_folder' is also keyed by the folder, so two folders never share
  prepared files: '<folder>-<hash>-<res>px-test<fraction>'.

  Args:
    dataset: 'celebahq', 'ffhq' or 'image_folder'.
    resolution: Side of the square images, in pixels.
    image_dir: The source folder (needed to prepare, and to name an
      'image_folder' dataset).
    tfds_dir: TFDS data dir; None for TFDS's default (~/tensorflow_datasets).
    split: Overrides the dataset's split (tests use small `IndexSplit`s).
    test_fraction: The test share for 'image_folder' when `split` is None.
    num_threads: Threads decoding and resizing while preparing (default: one
      per CPU).
  """
  if dataset not in _BUILDERS:
    raise ValueError(f"Unknown folder dataset {dataset!r}; valid ones are "
                     f"{', '.join(map(repr, _BUILDERS))}.")
  preset = PRESET_SPLITS.get(dataset)
  if split is None:
    split = preset or FractionSplit(test_fraction)
  name = f"{resolution}px"
  if dataset == "image_folder":
    if image_dir is None:
      list_images(None, dataset)  # Raises the how-to-prepare error.
    name = f"{_folder_slug(image_dir)}-{name}-{split.tag}"
  elif split != preset:
    name = f"{name}-{split.tag}"
  config = FolderConfig(name=name, resolution=resolution, split=split,
                        description=f"{dataset} at {resolution}px, {split}.")
  return _BUILDERS[dataset](config=config, data_dir=tfds_dir,
                            image_dir=image_dir, num_threads=num_threads)
