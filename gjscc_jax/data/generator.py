"""Images sampled from a StyleGAN2: a dataset its prior fits by construction.

`data_config.name='generator'` is a dataset of images drawn from one fixed
generator `G0`: a converted StyleGAN2 (`data_config.generator.dir`) or the
seeded small random StyleGAN2 of `data_config.generator.random`. Training
DeepJSCC on it and inverting with `G0` as the prior is the controlled
setting in which InverseJSCC's prior is exactly right.

Image `i` of a split is `G0(z_i, n_i)` with `z_i ~ N(0, I)` truncated by
`truncation_psi` towards `w_avg`, and noise maps `n_i` as `noise_mode` says,
both drawn from keys derived from (`sample_seed`, split, `i`) only, so 'train'
and 'test' are disjoint draws and two builds are byte-identical. Pixels are
clipped to [-1, 1] and rounded to uint8 (`gjscc_jax.pixels.to_uint8`).

Layering: data never imports models, so this builder does not sample. It
writes what a *sampler* returns, `sampler(split, start, count) -> uint8
(count, R, R, 3)` (images `start .. start + count - 1` of `split`), and
`gjscc_jax.generated_data.prepare` is the composition that builds one from
the generator and prepares the dataset. Once prepared, the dataset is read
like any other, with no sampler and no model code.

The dataset's TFDS config name carries a digest of everything the images
depend on (the generator's weights file or its random settings, the seed,
`truncation_psi`, `noise_mode`, the split sizes), and `builder.info.metadata`
records them (key 'generator').
"""

import dataclasses
import hashlib
import json
import os
from typing import Callable

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from gjscc_jax.data import photos as photos_lib

#: Images asked of the sampler at once (fixed, so that builds are identical).
SAMPLE_CHUNK = 16
#: Split codes folded into the per-image keys.
SPLIT_CODES = {"train": 0, "test": 1}
#: The converted-generator files (`gjscc_jax.models.stylegan2.loading`).
_CONFIG_FILE, _VARIABLES_FILE = "config.json", "variables.npz"

Sampler = Callable[[str, int, int], np.ndarray]


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def generator_provenance(generator_config) -> dict:
  """What the images depend on, as a JSON-able dict (no model code run).

  Args:
    generator_config: `data_config.generator`.

  Returns:
    `{'generator': {...}, 'resolution', 'sample_seed', 'truncation_psi',
    'noise_mode'}`; 'generator' is `{'kind': 'converted', 'dir', 'sha256'
    (of its variables file), 'config'}` or `{'kind': 'random', **random}`.

  Raises:
    FileNotFoundError: If `dir` is set but is not a converted generator.
  """
  if generator_config.dir:
    directory = os.path.abspath(os.path.expanduser(generator_config.dir))
    config_path = os.path.join(directory, _CONFIG_FILE)
    variables_path = os.path.join(directory, _VARIABLES_FILE)
    if not (os.path.isfile(config_path) and os.path.isfile(variables_path)):
      raise FileNotFoundError(
          f"data_config.generator.dir={generator_config.dir!r} is not a "
          f"converted StyleGAN2 directory ({_CONFIG_FILE} and "
          f"{_VARIABLES_FILE}); write one with `python -m weights_convert "
          "stylegan2 SRC DST`, or unset it to sample the random generator.")
    with open(config_path) as f:
      config = json.load(f).get("config", {})
    generator = dict(kind="converted", dir=directory,
                     sha256=_sha256(variables_path), config=config)
    resolution = int(config.get("img_resolution", 0))
  else:
    generator = dict(kind="random", **generator_config.random.to_dict())
    resolution = int(generator_config.random.resolution)
  return dict(generator=generator, resolution=resolution,
              sample_seed=int(generator_config.sample_seed),
              truncation_psi=float(generator_config.truncation_psi),
              noise_mode=str(generator_config.noise_mode))


@dataclasses.dataclass(eq=False)
class GeneratorDatasetConfig(tfds.core.BuilderConfig):
  """One generator dataset: resolution, split sizes and provenance."""

  resolution: int = 64
  train_size: int = 1024
  test_size: int = 64
  provenance: dict = dataclasses.field(default_factory=dict)


class GjsccGenerator(tfds.core.GeneratorBasedBuilder):
  """Images sampled from a fixed StyleGAN2 (see the module docstring)."""

  name = "gjscc_generator"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  def __init__(self, *, sampler: Sampler | None = None, **kwargs):
    """Builder of one config; `sampler` is only called by preparation."""
    self._sampler = sampler
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    resolution = self.builder_config.resolution
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.split("\n\n")[0],
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(
                shape=(resolution, resolution, 3), encoding_format="png"),
            # '<split>#<index>'.
            "file_name": tfds.features.Text(),
        }),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    if self._sampler is None:
      raise ValueError(
          "Preparing a 'generator' dataset needs a sampler; use "
          "gjscc_jax.generated_data.prepare(data_config), which builds it "
          "from the configured generator.")
    config = self.builder_config
    self.info.metadata["generator"] = config.provenance
    return {"train": self._generate_examples("train", config.train_size),
            "test": self._generate_examples("test", config.test_size)}

  def _generate_examples(self, split, size):
    res = self.builder_config.resolution
    for start in range(0, size, SAMPLE_CHUNK):
      count = min(SAMPLE_CHUNK, size - start)
      images = np.asarray(self._sampler(split, start, count))
      if images.shape != (count, res, res, 3) or images.dtype != np.uint8:
        raise ValueError(
            f"The sampler returned {images.dtype} {images.shape} for images "
            f"{start}..{start + count - 1} of {split!r}; expected uint8 "
            f"{(count, res, res, 3)}.")
      for k, image in enumerate(images):
        index = start + k
        yield index, {"image": photos_lib.encode_png(Image.fromarray(image)),
                      "file_name": f"{split}#{index}"}


def generator_builder(data_config, sampler: Sampler | None = None,
                      provenance: dict | None = None) -> GjsccGenerator:
  """Returns the builder of the generator dataset `data_config` describes.

  Args:
    data_config: A data config with `name='generator'`.
    sampler: Draws the images while preparing (see the module docstring);
      None to read an already prepared dataset.
    provenance: `generator_provenance(data_config.generator)`, if already
      computed (it hashes the generator's weights file).

  Raises:
    ValueError: If `data_config.resolution` is not the generator's output
      resolution (the message names the setting to change).
  """
  generator_config = data_config.generator
  provenance = provenance or generator_provenance(generator_config)
  if provenance["resolution"] != data_config.resolution:
    where = ("the converted generator in data_config.generator.dir"
             if generator_config.dir else "data_config.generator.random")
    raise ValueError(
        f"data_config.resolution={data_config.resolution} but {where} makes "
        f"{provenance['resolution']}x{provenance['resolution']} images; set "
        f"--config.data.resolution={provenance['resolution']}"
        + ("" if generator_config.dir else
           f" or --config.data.generator.random.resolution="
           f"{data_config.resolution}") + ".")
  identity = dict(provenance, train_size=generator_config.train_size,
                  test_size=generator_config.test_size)
  digest = hashlib.sha256(
      json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
  config = GeneratorDatasetConfig(
      name=(f"{data_config.resolution}px-{generator_config.train_size}train-"
            f"{generator_config.test_size}test-{digest}"),
      description=(f"{generator_config.train_size} train / "
                   f"{generator_config.test_size} test images of a "
                   f"{provenance['generator']['kind']} StyleGAN2 at "
                   f"{data_config.resolution}px, psi "
                   f"{provenance['truncation_psi']:g}, noise "
                   f"{provenance['noise_mode']!r}."),
      resolution=data_config.resolution,
      train_size=generator_config.train_size,
      test_size=generator_config.test_size, provenance=provenance)
  return GjsccGenerator(config=config, data_dir=data_config.tfds_dir,
                        sampler=sampler)
