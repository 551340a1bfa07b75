"""The embedded sample dataset: built offline from scikit-image's photos."""

import pathlib
import socket

import numpy as np
import pytest
from PIL import Image
from skimage import transform
import tensorflow_datasets as tfds

from gjscc_jax import data
from gjscc_jax.data import photos
from gjscc_jax.data import sample

RESOLUTION, TRAIN_SIZE, TEST_SIZE = 16, 24, 6
TFDS_NAME = f"gjscc_sample/{RESOLUTION}px-{TRAIN_SIZE}train-{TEST_SIZE}test"


def _config(tfds_dir):
  config = data.default_data_config()
  config.name = "sample"
  config.resolution = RESOLUTION
  config.sample_train_size = TRAIN_SIZE
  config.sample_test_size = TEST_SIZE
  config.tfds_dir = str(tfds_dir)
  return config


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  tfds_dir = tmp_path_factory.mktemp("tfds")
  data.prepare(_config(tfds_dir))
  return tfds_dir


def _all_images(source):
  return np.stack([source[i]["image"] for i in range(len(source))])


def test_reads_back_through_tfds_data_source_without_tensorflow(tfds_dir):
  sources = tfds.data_source(TFDS_NAME, data_dir=tfds_dir, download=False)
  assert len(sources["train"]) == TRAIN_SIZE
  assert len(sources["test"]) == TEST_SIZE
  for split in ("train", "test"):
    images = _all_images(sources[split])
    assert images.shape[1:] == (RESOLUTION, RESOLUTION, 3)
    assert images.dtype == np.uint8
    # Photo content, not blank or constant tiles.
    assert np.all(images.reshape(len(images), -1).std(axis=1) > 2.0)
  ours = data.get_data_source(_config(tfds_dir), "test")
  np.testing.assert_array_equal(_all_images(ours),
                                _all_images(sources["test"]))
  import sys  # pylint: disable=g-import-not-at-top
  assert "tensorflow" not in sys.modules


def test_two_builds_are_byte_identical_and_offline(tfds_dir, tmp_path,
                                                   monkeypatch):
  def no_network(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args}")
  monkeypatch.setattr(socket.socket, "connect", no_network)
  data.prepare(_config(tmp_path))
  for split in ("train", "test"):
    first = data.get_data_source(_config(tfds_dir), split)
    second = data.get_data_source(_config(tmp_path), split)
    np.testing.assert_array_equal(_all_images(first), _all_images(second))
  shards = sorted(p.relative_to(tfds_dir)
                  for p in pathlib.Path(tfds_dir).rglob("*.array_record*"))
  assert len(shards) == 2
  for shard in shards:
    assert (tfds_dir / shard).read_bytes() == (tmp_path / shard).read_bytes()


def test_train_and_test_are_cut_from_disjoint_photos(tfds_dir):
  assert not set(sample.TRAIN_PHOTOS) & set(sample.TEST_PHOTOS)
  used = {}
  for split in ("train", "test"):
    source = data.get_data_source(_config(tfds_dir), split)
    used[split] = {source[i]["file_name"].decode().split("#")[0]
                   for i in range(len(source))}
  assert used["train"] == set(sample.TRAIN_PHOTOS)
  assert used["test"] == set(sample.TEST_PHOTOS)


@pytest.mark.parametrize("split,index", [("train", 1), ("test", 3)])
def test_example_is_the_named_crop_of_its_photo(tfds_dir, split, index):
  """Oracle: scikit-image's antialiased resize of the same crop box."""
  source = data.get_data_source(_config(tfds_dir), split)
  example = source[index]
  name = example["file_name"].decode().split("#")[0]
  photo = photos.open_rgb(sample.photo_path(name))
  rng = np.random.default_rng([sample.SEED, ("train", "test").index(split),
                               index])
  left, upper, right, lower = sample.crop_box(rng, *photo.size)
  flip = rng.random() < 0.5
  crop = np.asarray(photo, np.float64)[round(upper):round(lower),
                                       round(left):round(right)]
  oracle = transform.resize(crop, (RESOLUTION, RESOLUTION), order=1,
                            anti_aliasing=True, preserve_range=True)
  if flip:
    oracle = oracle[:, ::-1]

  def psnr(image):
    error = image.astype(np.float64) - oracle
    return 10 * np.log10(255.0**2 / np.mean(error**2))

  # Measured: 26-47 dB against the oracle (the filters differ), while no other
  # crop of the split comes within 8 dB of it.
  assert psnr(example["image"]) > 24.0
  best_other = max(psnr(source[j]["image"]) for j in range(len(source))
                   if j != index)
  assert best_other < psnr(example["image"]) - 8.0


def test_resize_is_antialiased():
  checkerboard = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
  image = Image.fromarray(np.repeat(checkerboard[..., None], 3, axis=2))
  small = np.asarray(photos.resize_square(image, 16), np.float64)
  # Point sampling would return 0s or 255s; a low-pass filter returns grey.
  np.testing.assert_allclose(small, 127.5, atol=4.0)
  ramp = np.linspace(0, 255, 64)[None, :, None] * np.ones((64, 1, 3))
  image = Image.fromarray(ramp.astype(np.uint8))
  small = np.asarray(photos.resize_square(image, 16), np.float64)
  oracle = transform.resize(ramp.astype(np.uint8).astype(np.float64),
                            (16, 16), anti_aliasing=True, preserve_range=True)
  np.testing.assert_allclose(small, oracle, atol=3.0)


def test_bad_sizes_and_names_raise_clear_errors(tmp_path):
  config = _config(tmp_path)
  config.sample_train_size = 0
  with pytest.raises(ValueError, match="sample_train_size"):
    data.get_data_source(config, "train")
  config = _config(tmp_path)
  config.name = "imagenet"
  with pytest.raises(ValueError, match="'sample', 'ffhq', 'celebahq'"):
    data.get_data_source(config, "train")
  with pytest.raises(ValueError, match="valid splits are 'train', 'test'"):
    data.get_data_source(_config(tmp_path), "validation")


def test_incomplete_config_names_the_missing_fields():
  config = data.default_data_config()
  del config["sample_test_size"]
  with pytest.raises(ValueError, match="lacks the field.* sample_test_size.*"
                     "default_data_config"):
    data.get_data_source(config, "test")
