"""The data configuration: which images, at what size, read how.

Every entry point of `gjscc_jax.data` takes one `ml_collections.ConfigDict`
(`config.data` in the experiment configs). Start from `default_data_config()`
and override fields; `validate_data_config` turns a bad value into an error
that names the field and the fix before any file is touched.
"""

import ml_collections
from ml_collections import config_dict

#: Dataset names `data_config.name` accepts.
DATASET_NAMES = ("sample", "ffhq", "celebahq", "image_folder", "generator")
#: Noise modes of images sampled from a generator (`data_config.generator`).
GENERATOR_NOISE_MODES = ("random", "const", "none")
#: Split names every dataset provides.
SPLITS = ("train", "test")


def default_data_config() -> ml_collections.ConfigDict:
  """Returns the default data configuration (the embedded sample dataset).

  Fields:
    name: One of `DATASET_NAMES`. 'sample' is built offline from photos that
      ship inside scikit-image; 'celebahq' and 'ffhq' are prepared from the
      user's folder of images with the literature's index splits;
      'image_folder' is any folder of PNG/JPEG images, split by `test_fraction`.
    image_dir: Folder holding the source images (for 'ffhq', 'celebahq' and
      'image_folder'; searched recursively). Only read while preparing.
    resolution: Side of the square images the dataset delivers, in pixels.
    tfds_dir: Where prepared datasets are written and read (TFDS data dir);
      None means TFDS's default, `~/tensorflow_datasets` (or $TFDS_DATA_DIR).
    test_fraction: For 'image_folder': share of the images held out as 'test'.
    num_workers: grain worker processes for the training loader (0 reads in
      the calling process, as tests and the CPU demo do).
    read_threads: Threads per process reading and decoding records.
    prefetch_buffer_size: Records each process reads ahead of the consumer.
    random_flip: Whether training images are flipped left-right with
      probability 1/2 (a seeded, checkpoint-reproducible transform).
    sample_train_size: Number of 'train' images of the 'sample' dataset.
    sample_test_size: Number of 'test' images of the 'sample' dataset.
    generator: For 'generator', images sampled from a StyleGAN2 (see
      `gjscc_jax.data.generator`):
      dir: A converted StyleGAN2 directory (`python -m weights_convert
        stylegan2`); None samples the small random StyleGAN2 of `random`.
      train_size, test_size: Images per split.
      sample_seed: Seed of the images' latents and noise maps.
      truncation_psi: Truncation towards the generator's `w_avg` (1: none).
      noise_mode: 'random' (fresh N(0, 1) noise maps per image, seeded),
        'const' (the generator's stored noise maps) or 'none'.
      random: The random generator (`gjscc_jax.models.stylegan2.
        random_stylegan2`'s arguments) when `dir` is None; its `resolution`
        must equal `resolution` above.
  """
  config = ml_collections.ConfigDict()
  config.name = "sample"
  config.image_dir = config_dict.placeholder(str)
  config.resolution = 256
  config.tfds_dir = config_dict.placeholder(str)
  config.test_fraction = 0.1
  config.num_workers = 0
  config.read_threads = 8
  config.prefetch_buffer_size = 64
  config.random_flip = True
  config.sample_train_size = 512
  config.sample_test_size = 64
  config.generator = ml_collections.ConfigDict()
  config.generator.dir = config_dict.placeholder(str)
  config.generator.train_size = 1024
  config.generator.test_size = 64
  config.generator.sample_seed = 0
  config.generator.truncation_psi = 1.0
  config.generator.noise_mode = "random"
  config.generator.random = ml_collections.ConfigDict(dict(
      resolution=64, z_dim=64, w_dim=64, mapping_layers=2, channel_base=2048,
      channel_max=64, seed=0, w_avg_samples=4096, noise_strength=0.1,
      rgb_scale=0.25))
  return config


def validate_data_config(data_config) -> None:
  """Raises a `ValueError` naming the field and the fix for a bad config."""
  required = set(default_data_config())
  if data_config.get("name") != "generator":
    required.discard("generator")  # Configs saved before it existed.
  missing = sorted(required - set(data_config))
  if missing:
    raise ValueError(
        f"data_config lacks the field(s) {', '.join(missing)}; build it with "
        "gjscc_jax.data.default_data_config() and override fields.")
  if data_config.name not in DATASET_NAMES:
    raise ValueError(
        f"Unknown dataset name {data_config.name!r} (data_config.name); "
        f"valid names are {', '.join(map(repr, DATASET_NAMES))}.")
  resolution = data_config.resolution
  if not isinstance(resolution, int) or resolution < 1:
    raise ValueError(
        f"data_config.resolution must be a positive int (pixels per side), "
        f"got {resolution!r}.")
  if data_config.name == "sample":
    for field in ("sample_train_size", "sample_test_size"):
      size = data_config[field]
      if not isinstance(size, int) or size < 1:
        raise ValueError(
            f"data_config.{field} must be a positive int, got {size!r}.")
  if data_config.name == "generator":
    _validate_generator(data_config.generator)
  if data_config.name == "image_folder":
    fraction = data_config.test_fraction
    if not 0.0 < fraction < 1.0:
      raise ValueError(
          f"data_config.test_fraction must lie strictly between 0 and 1, got "
          f"{fraction!r}.")
  if data_config.num_workers < 0:
    raise ValueError(
        f"data_config.num_workers must be >= 0, got {data_config.num_workers}.")


def _validate_generator(generator) -> None:
  for field in ("train_size", "test_size"):
    size = generator[field]
    if not isinstance(size, int) or size < 1:
      raise ValueError(f"data_config.generator.{field} must be a positive "
                       f"int, got {size!r}.")
  psi = generator.truncation_psi
  if not isinstance(psi, (int, float)) or not 0.0 <= psi <= 1.0:
    raise ValueError("data_config.generator.truncation_psi must lie in "
                     f"[0, 1] (1: no truncation), got {psi!r}.")
  if generator.noise_mode not in GENERATOR_NOISE_MODES:
    raise ValueError(
        f"data_config.generator.noise_mode={generator.noise_mode!r}; valid "
        f"modes are {', '.join(map(repr, GENERATOR_NOISE_MODES))}.")


def validate_split(split: str) -> None:
  """Raises a `ValueError` listing the valid splits if `split` is not one."""
  if split not in SPLITS:
    raise ValueError(
        f"Unknown split {split!r}; valid splits are "
        f"{', '.join(map(repr, SPLITS))}.")
