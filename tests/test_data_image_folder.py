"""Folder datasets (CelebA-HQ, FFHQ, any folder) prepared from tiny fakes."""

import logging
import shutil

import numpy as np
import pytest
from PIL import Image

from gjscc_jax import data
from gjscc_jax.data import image_folder
from gjscc_jax.data import photos

RESOLUTION = 8
GREEN = (0, 255, 0)


def _color(number):
  """A colour that identifies image `number` (distinct for number < 64)."""
  return (int(40 + 3 * number), int(200 - 2 * number), int(30 + 3 * number))


def _write(path, number, suffix=".png"):
  """A 64x32 image: its number's colour, plus green side bands that a centre
  square crop removes (so they must not appear in the prepared image). The
  bands end on JPEG block edges, so compression does not smear them inwards."""
  pixels = np.empty((32, 64, 3), np.uint8)
  pixels[:] = _color(number)
  pixels[:, :16] = GREEN
  pixels[:, 48:] = GREEN
  path = path.with_suffix(suffix)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(path, quality=98, subsampling=0)
  return path


def _number_of(image):
  """The number whose colour `image` shows (asserting it is uniform)."""
  mean = image.reshape(-1, 3).astype(np.float64).mean(axis=0)
  np.testing.assert_allclose(image.reshape(-1, 3), np.broadcast_to(
      mean, (image.size // 3, 3)), atol=6)  # JPEG tolerance; no green band.
  return int(np.argmin([np.abs(mean - _color(n)).sum() for n in range(64)]))


def _folder_config(name, image_dir, tfds_dir):
  config = data.default_data_config()
  config.name = name
  config.image_dir = str(image_dir)
  config.tfds_dir = str(tfds_dir)
  config.resolution = RESOLUTION
  return config


def _split_contents(builder, split):
  source = builder.as_data_source(split)
  names = [source[i]["file_name"].decode() for i in range(len(source))]
  numbers = [_number_of(source[i]["image"]) for i in range(len(source))]
  shapes = {source[i]["image"].shape for i in range(len(source))}
  assert shapes == {(RESOLUTION, RESOLUTION, 3)}
  return names, numbers


def test_celebahq_index_split_follows_numeric_names(tmp_path):
  images = tmp_path / "CelebA-HQ-img"
  for number in range(12):  # 0.png, 1.jpg, ..., 11.jpg: '10' sorts after '9'.
    _write(images / str(number), number, (".png", ".jpg")[number % 2])
  builder = image_folder.folder_builder(
      "celebahq", resolution=RESOLUTION, image_dir=images,
      tfds_dir=tmp_path / "tfds",
      split=image_folder.IndexSplit(train_size=9, test_size=3))
  builder.download_and_prepare(file_format="array_record")
  assert builder.builder_config.name == "8px-9train-3test"
  names, numbers = _split_contents(builder, "train")
  assert numbers == list(range(9))
  assert names == [f"{n}.{('png', 'jpg')[n % 2]}" for n in range(9)]
  names, numbers = _split_contents(builder, "test")
  assert numbers == [9, 10, 11]
  assert names == ["9.jpg", "10.png", "11.jpg"]

  shutil.rmtree(images)  # Prepared once; reading never needs the folder.
  again = image_folder.folder_builder(
      "celebahq", resolution=RESOLUTION, image_dir=images,
      tfds_dir=tmp_path / "tfds",
      split=image_folder.IndexSplit(train_size=9, test_size=3))
  assert again.is_prepared()
  assert _split_contents(again, "test")[1] == [9, 10, 11]


def test_celebahq_and_ffhq_presets_are_the_literature_splits(tmp_path):
  assert image_folder.PRESET_SPLITS["celebahq"] == image_folder.IndexSplit(
      27_000, 3_000)
  assert image_folder.PRESET_SPLITS["ffhq"] == image_folder.IndexSplit(
      60_000, 10_000)
  builder = data.get_builder(_folder_config("ffhq", tmp_path, tmp_path))
  assert builder.name == "gjscc_ffhq"
  assert builder.builder_config.name == "8px"


def test_ffhq_layout_with_numbered_subfolders(tmp_path):
  images = tmp_path / "images1024x1024"
  for number in range(6):
    _write(images / f"{number // 3 * 3:05d}" / f"{number:05d}", number)
  builder = image_folder.folder_builder(
      "ffhq", resolution=RESOLUTION, image_dir=images,
      tfds_dir=tmp_path / "tfds",
      split=image_folder.IndexSplit(train_size=4, test_size=2))
  builder.download_and_prepare(file_format="array_record")
  names, numbers = _split_contents(builder, "test")
  assert numbers == [4, 5]
  assert names == ["00003/00004.png", "00003/00005.png"]


def test_corrupt_files_are_skipped_counted_and_logged(tmp_path, caplog):
  images = tmp_path / "photos"
  for number in range(10):
    _write(images / f"face_{number:02d}", number, ".jpg")
  (images / "garbage.png").write_bytes(b"this is not an image")
  whole = _write(images / "truncated", 11).read_bytes()
  (images / "truncated.png").write_bytes(whole[:len(whole) // 2])
  config = _folder_config("image_folder", images, tmp_path / "tfds")
  config.test_fraction = 0.25
  with caplog.at_level(logging.WARNING):
    train = data.get_data_source(config, "train")
    test = data.get_data_source(config, "test")
  assert len(train) + len(test) == 10
  assert round(0.25 * 12) == 3  # Test files are drawn before decoding.
  skipped = data.get_builder(config).info.metadata["skipped_files"]
  assert sorted(sum(skipped.values(), [])) == ["garbage.png", "truncated.png"]
  log = caplog.text
  assert str(images / "garbage.png") in log
  assert str(images / "truncated.png") in log
  assert log.count("Skipped 1 unreadable image") + 2 * log.count(
      "Skipped 2 unreadable image") == 2


def test_fraction_split_is_seeded_disjoint_and_covering(tmp_path):
  files = [_write(tmp_path / f"{name}", i)
           for i, name in enumerate("kbjdaefgihc")]
  files = image_folder.list_images(tmp_path)
  split = image_folder.FractionSplit(test_fraction=0.3)
  first = split.assign(tmp_path, files)
  assert len(first["test"]) == round(0.3 * 11)
  assert sorted(first["train"] + first["test"]) == sorted(files)
  assert not set(first["train"]) & set(first["test"])
  assert first["train"] == sorted(first["train"])
  assert first == split.assign(tmp_path, list(files))
  other = image_folder.FractionSplit(test_fraction=0.3, seed=1)
  assert other.assign(tmp_path, files)["test"] != first["test"]


@pytest.mark.parametrize("name", ["celebahq", "ffhq", "image_folder"])
def test_missing_or_empty_folder_says_how_to_prepare(tmp_path, name):
  config = _folder_config(name, tmp_path / "nowhere", tmp_path / "tfds")
  with pytest.raises(FileNotFoundError, match="does not exist") as error:
    data.get_data_source(config, "train")
  assert "data_config.image_dir" in str(error.value)
  assert "python -m gjscc_jax.data.prepare" in str(error.value)
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "README.txt").write_text("no images here")
  config.image_dir = str(empty)
  with pytest.raises(FileNotFoundError, match="holds no image files"):
    data.get_data_source(config, "test")
  if name != "image_folder":
    config.image_dir = None
    with pytest.raises(FileNotFoundError, match="image_dir is not set"):
      data.get_data_source(config, "test")
  assert not (tmp_path / "tfds").exists()  # Nothing half-prepared.


def test_index_split_rejects_wrong_folders(tmp_path):
  files = [_write(tmp_path / str(n), n) for n in range(5)]
  split = image_folder.IndexSplit(train_size=3, test_size=3)
  with pytest.raises(ValueError, match="holds 5 images but this split needs "
                     "exactly 6"):
    split.assign(tmp_path, files)
  with pytest.raises(ValueError, match="not named by a number"):
    split.assign(tmp_path, files + [tmp_path / "face.png"])
  with pytest.raises(ValueError, match="Two files carry the number 1"):
    split.assign(tmp_path, files + [tmp_path / "01.jpg"])


def test_high_bit_depth_images_are_scaled_to_8_bits_not_clipped(tmp_path):
  # A 16-bit grey PNG (mode I;16) was prepared as all white: convert('RGB')
  # clips 16-bit levels at 255.
  levels = np.array([[0, 257 * 64], [257 * 128, 65535]], np.uint16)
  Image.fromarray(np.kron(levels, np.ones((4, 4), np.uint16))).save(
      tmp_path / "grey16.png")
  assert Image.open(tmp_path / "grey16.png").mode == "I;16"
  image = np.asarray(photos.open_rgb(tmp_path / "grey16.png"))
  np.testing.assert_array_equal(image[::4, ::4, 0], [[0, 64], [128, 255]])
  assert (image == image[..., :1]).all()  # Grey: three equal channels.
  # Float levels in [0, 1] (mode F) scale by 255; others have no known scale
  # and are skipped (an unreadable-image error names them).
  floats = Image.fromarray(np.full((4, 4), 0.5, np.float32))
  np.testing.assert_array_equal(np.asarray(photos.to_8bit(floats)), 128)
  with pytest.raises(photos.UNREADABLE_IMAGE_ERRORS, match=r"not \[0, 1\]"):
    photos.to_8bit(Image.fromarray(np.full((4, 4), 7.0, np.float32)))
  # Prepared through a folder dataset: mid grey, not white.
  images = tmp_path / "photos"
  images.mkdir()
  for number in range(4):
    Image.fromarray(np.full((16, 16), 257 * 100, np.uint16)).save(
        images / f"{number}.png")
  config = _folder_config("image_folder", images, tmp_path / "tfds")
  config.test_fraction = 0.25
  source = data.get_data_source(config, "train")
  assert len(source) == 3
  np.testing.assert_array_equal(source[0]["image"], 100)
