"""From a data config to a prepared TFDS dataset and its random-access sources.

`prepare` builds the dataset a config names (once: later calls find the
prepared files and return at once); `get_data_source` returns one split as a
TFDS `ArrayRecordDataSource`: `len(source)` and `source[i]` ->
`{'image': uint8 (H, W, 3), 'file_name': bytes}`, decoded with Pillow, no
TensorFlow anywhere. The same files can be opened without this package with
`tfds.data_source('gjscc_celebahq/512px', split='test', data_dir=...)`.
"""

import json

from absl import logging
import tensorflow_datasets as tfds

from gjscc_jax.data import config as config_lib
from gjscc_jax.data import generator
from gjscc_jax.data import image_folder
from gjscc_jax.data import sample

#: The storage format: random access without TensorFlow.
FILE_FORMAT = "array_record"
#: The config fields that identify a prepared dataset.
_IDENTITY_FIELDS = ("name", "image_dir", "resolution", "tfds_dir",
                    "test_fraction", "sample_train_size", "sample_test_size",
                    "generator")
#: Prepared builders of this process, by identity (each is looked up on disk
#: once, not at every evaluation).
_PREPARED: dict[tuple, tfds.core.DatasetBuilder] = {}


def _identity(data_config) -> tuple:
  def value(field):
    if field == "generator":  # Absent from configs saved before it existed.
      block = data_config.get(field)
      return None if block is None else json.dumps(block.to_dict(),
                                                   sort_keys=True)
    return data_config[field]
  return tuple(value(f) for f in _IDENTITY_FIELDS)


def get_builder(data_config, sampler=None) -> tfds.core.DatasetBuilder:
  """Returns the TFDS builder of the dataset `data_config` describes.

  Args:
    data_config: A config like `default_data_config()`.
    sampler: For 'generator' only: draws its images while preparing (see
      `gjscc_jax.data.generator`); not needed to read a prepared one.

  Raises:
    ValueError: For an unknown `data_config.name` (listing valid names) or
      another invalid field.
  """
  config_lib.validate_data_config(data_config)
  if data_config.name == "sample":
    return sample.sample_builder(
        resolution=data_config.resolution,
        train_size=data_config.sample_train_size,
        test_size=data_config.sample_test_size,
        tfds_dir=data_config.tfds_dir)
  if data_config.name == "generator":
    return generator.generator_builder(data_config, sampler)
  return image_folder.folder_builder(
      data_config.name, resolution=data_config.resolution,
      image_dir=data_config.image_dir, tfds_dir=data_config.tfds_dir,
      test_fraction=data_config.test_fraction)


def prepare(data_config, sampler=None) -> tfds.core.DatasetBuilder:
  """Prepares the dataset `data_config` names, if not already on disk.

  Args:
    data_config: A config like `default_data_config()`.
    sampler: For 'generator' only, as in `get_builder`
      (`gjscc_jax.generated_data.prepare` passes it).

  Returns:
    The builder, prepared; `builder.info` gives split sizes and (for folders)
    `builder.info.metadata['skipped_files']`.

  Raises:
    FileNotFoundError: If a folder dataset is not prepared and
      `data_config.image_dir` is unset, missing or empty (the message gives the
      expected layout and the config key to set), or if a 'generator' dataset
      is not prepared and no sampler is given (the message names the call
      that prepares it).
  """
  config_lib.validate_data_config(data_config)
  key = _identity(data_config)
  if key in _PREPARED:
    return _PREPARED[key]
  builder = get_builder(data_config, sampler)
  if not builder.is_prepared():
    if data_config.name == "generator":
      if sampler is None:
        raise FileNotFoundError(
            f"The 'generator' dataset {builder.builder_config.name} is not "
            f"prepared in {builder.data_dir}. Its images are sampled from a "
            "StyleGAN2, which the data layer does not import: prepare it "
            "with gjscc_jax.generated_data.prepare(config.data) (the "
            "experiments/ entry points call it for you).")
    elif data_config.name != "sample":
      # Fail before TFDS creates any directory, with the how-to message.
      image_folder.list_images(data_config.image_dir, data_config.name)
    logging.info("Preparing %s/%s in %s", builder.name,
                 builder.builder_config.name, builder.data_dir)
    builder.download_and_prepare(file_format=FILE_FORMAT)
  _PREPARED[key] = builder
  return builder


def get_data_source(data_config, split: str):
  """Returns a random-access source over one split of the configured dataset.

  Prepares the dataset first if needed (seconds for 'sample'; for CelebA-HQ or
  FFHQ better done once ahead with `python -m gjscc_jax.data.prepare`).

  Args:
    data_config: A config like `default_data_config()`.
    split: 'train' or 'test'.

  Returns:
    A sequence: `len(source)` images; `source[i]` is a dict with 'image'
    (uint8, (resolution, resolution, 3)) and 'file_name' (bytes: the source
    file, or '<photo>#<i>' for 'sample').

  Raises:
    ValueError: For an unknown dataset name or split (listing valid ones).
    FileNotFoundError: If a folder dataset has nothing to prepare from.
  """
  config_lib.validate_split(split)
  return prepare(data_config).as_data_source(split)
