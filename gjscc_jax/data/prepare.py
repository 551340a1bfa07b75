r"""Prepares a dataset once, ahead of training (command line).

  python -m gjscc_jax.data.prepare --name=celebahq \
      --image_dir=/data/CelebAMask-HQ/CelebA-HQ-img --resolution=512

writes `~/tensorflow_datasets/gjscc_celebahq/512px/1.0.0/` (or under
`--tfds_dir`), then prints the split sizes and any unreadable file it skipped.
Training with the same `config.data.{name,resolution,tfds_dir}` reads these
files; running the command again returns at once. An error prints one line
with its cause and fix (`gjscc_jax.errors`; --verbose for the traceback),
naming this command's flags.
"""

import re

from absl import app
from absl import flags

from gjscc_jax import errors
from gjscc_jax.data import config as config_lib
from gjscc_jax.data import sources

_VERBOSE = flags.DEFINE_bool(
    "verbose", False, "Show the Python traceback of errors (also "
    "GJSCC_VERBOSE=1).")
#: Data-config flags of the training command and this command's names.
_TRAINING_FLAG = re.compile(r"(--config\.data\.|data_config\.)(name|image_dir|"
                            r"resolution|tfds_dir|test_fraction)\b")

_NAME = flags.DEFINE_enum("name", "celebahq", config_lib.DATASET_NAMES,
                          "Dataset to prepare.")
_IMAGE_DIR = flags.DEFINE_string(
    "image_dir", None, "Folder of source images (not needed for 'sample').")
_RESOLUTION = flags.DEFINE_integer("resolution", 256,
                                   "Side of the square images, in pixels.")
_TFDS_DIR = flags.DEFINE_string(
    "tfds_dir", None, "TFDS data dir (default ~/tensorflow_datasets).")
_TEST_FRACTION = flags.DEFINE_float(
    "test_fraction", 0.1, "Test share for --name=image_folder.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    _prepare()
  except errors.USER_ERRORS as e:
    # The library's messages name the training command's flags.
    raise type(e)(_TRAINING_FLAG.sub(r"--\2", errors.one_line(e))) from e


def _prepare():
  data_config = config_lib.default_data_config()
  data_config.name = _NAME.value
  data_config.image_dir = _IMAGE_DIR.value
  data_config.resolution = _RESOLUTION.value
  data_config.tfds_dir = _TFDS_DIR.value
  data_config.test_fraction = _TEST_FRACTION.value
  builder = sources.prepare(data_config)
  print(f"{builder.name}/{builder.builder_config.name} in {builder.data_dir}")
  for split, info in builder.info.splits.items():
    print(f"  {split}: {info.num_examples} images")
  skipped = builder.info.metadata.get("skipped_files", {}) if (
      builder.info.metadata is not None) else {}
  for split, files in skipped.items():
    if files:
      print(f"  skipped {len(files)} unreadable file(s) in {split}: "
            + ", ".join(files))


if __name__ == "__main__":
  app.run(errors.guarded(main))
