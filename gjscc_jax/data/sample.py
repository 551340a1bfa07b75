"""The embedded sample dataset: crops of the photos scikit-image ships.

A dataset of real photographs that builds offline, in seconds, at any
resolution: for tests, the CPU demo and smoke runs before FFHQ or CelebA-HQ is
on disk. scikit-image's wheel carries a handful of public-domain photos next to
its code (`skimage/data/*.png|jpg`); the builder reads those files directly and
never calls `skimage.data.<name>()`, some of which would download with pooch.

Each example is a square crop whose side is a random fraction
(`MIN_CROP_SCALE`..1) of the photo's shorter side, at a random sub-pixel
position, resampled to the resolution with an antialiasing Lanczos filter and
flipped left-right with probability 1/2. Example `i` of a split uses photo
`i mod len(photos)` of that split and its own generator seeded by
(`SEED`, split, `i`), so two builds are byte-identical. 'train' and 'test' are
cut from disjoint photos: the test photos (the astronaut portrait, the cat and
the coffee cup) are never seen in training.
"""

import dataclasses
import importlib.resources

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from gjscc_jax.data import photos as photos_lib

#: Photos (files of `skimage/data`) the 'test' split is cut from.
TEST_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png")
#: Photos the 'train' split is cut from; disjoint from `TEST_PHOTOS`. The
#: stereo pair `motorcycle_*` stays together on the train side.
TRAIN_PHOTOS = (
    "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png",
    "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "camera.png",
    "moon.png", "coins.png", "grass.png", "gravel.png", "brick.png")
#: Smallest crop side, as a fraction of the photo's shorter side.
MIN_CROP_SCALE = 0.3
#: Root seed of the crop and flip generators.
SEED = 20230101
_SPLIT_CODES = {"train": 0, "test": 1}


def photo_path(file_name: str):
  """Returns the path of one of the photos inside the installed scikit-image.

  Raises:
    FileNotFoundError: If this scikit-image wheel does not ship the photo.
  """
  path = importlib.resources.files("skimage") / "data" / file_name
  if not path.is_file():
    raise FileNotFoundError(
        f"scikit-image's package data has no {file_name!r} ({path}); the "
        "'sample' dataset is cut from the photos the scikit-image wheel ships. "
        "Install scikit-image>=0.19 or use another data_config.name.")
  return path


def crop_box(rng: np.random.Generator, width: int,
             height: int) -> photos_lib.Box:
  """Draws a random square (left, upper, right, lower) box inside the photo."""
  side = rng.uniform(MIN_CROP_SCALE, 1.0) * min(width, height)
  left = rng.uniform(0.0, width - side)
  upper = rng.uniform(0.0, height - side)
  return (left, upper, left + side, upper + side)


def sample_image(photo: Image.Image, resolution: int, split: str,
                 index: int) -> Image.Image:
  """Returns example `index` of `split` cut from `photo` (deterministic)."""
  rng = np.random.default_rng([SEED, _SPLIT_CODES[split], index])
  image = photos_lib.resize_square(photo, resolution,
                                   box=crop_box(rng, *photo.size))
  if rng.random() < 0.5:
    image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
  return image


@dataclasses.dataclass(eq=False)
class SampleConfig(tfds.core.BuilderConfig):
  """A (resolution, split sizes) configuration of the sample dataset."""

  resolution: int = 256
  train_size: int = 512
  test_size: int = 64


def sample_config(resolution: int, train_size: int,
                  test_size: int) -> SampleConfig:
  """Returns the configuration named '<res>px-<train>train-<test>test'."""
  return SampleConfig(
      name=f"{resolution}px-{train_size}train-{test_size}test",
      description=(f"{train_size} train / {test_size} test crops at "
                   f"{resolution}x{resolution}."),
      resolution=resolution, train_size=train_size, test_size=test_size)


class GjsccSample(tfds.core.GeneratorBasedBuilder):
  """Random crops of scikit-image's photos; train/test from disjoint photos."""

  name = "gjscc_sample"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      sample_config(64, train_size=512, test_size=64),
      sample_config(256, train_size=512, test_size=64),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    resolution = self.builder_config.resolution
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.split("\n\n")[0],
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(
                shape=(resolution, resolution, 3), encoding_format="png"),
            "file_name": tfds.features.Text(),
        }),
        homepage="https://scikit-image.org/docs/stable/api/skimage.data.html",
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    config = self.builder_config
    return {
        "train": self._generate_examples("train", TRAIN_PHOTOS,
                                         config.train_size),
        "test": self._generate_examples("test", TEST_PHOTOS,
                                        config.test_size),
    }

  def _generate_examples(self, split, photo_names, size):
    resolution = self.builder_config.resolution
    photos = [photos_lib.open_rgb(photo_path(name)) for name in photo_names]
    for index in range(size):
      which = index % len(photos)
      image = sample_image(photos[which], resolution, split, index)
      yield index, {
          "image": photos_lib.encode_png(image),
          "file_name": f"{photo_names[which]}#{index}",
      }


def sample_builder(*, resolution: int, train_size: int, test_size: int,
                   tfds_dir: str | None = None) -> GjsccSample:
  """Returns the sample dataset's builder (call `download_and_prepare()`).

  Args:
    resolution: Side of the square images, in pixels.
    train_size: Number of 'train' images.
    test_size: Number of 'test' images.
    tfds_dir: TFDS data dir to write to and read from; None for TFDS's default.
  """
  config = sample_config(resolution, train_size, test_size)
  for predefined in GjsccSample.BUILDER_CONFIGS:
    if predefined.name == config.name:
      config = predefined  # TFDS refuses look-alikes of predefined configs.
  return GjsccSample(config=config, data_dir=tfds_dir)
