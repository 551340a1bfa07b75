"""The 'generator' dataset: images sampled from a fixed StyleGAN2."""

import inspect
import pathlib

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from gjscc_jax import data
from gjscc_jax import generated_data
from gjscc_jax import pixels
from gjscc_jax.data import generator as generator_data
from gjscc_jax.models import stylegan2

RES, TRAIN, TEST = 16, 5, 3
TINY = dict(resolution=RES, z_dim=8, w_dim=8, mapping_layers=2,
            channel_base=128, channel_max=8, seed=1, w_avg_samples=256)


def _config(tfds_dir, **generator):
  config = data.default_data_config()
  config.name = "generator"
  config.resolution = RES
  config.tfds_dir = str(tfds_dir)
  config.generator.train_size = TRAIN
  config.generator.test_size = TEST
  config.generator.truncation_psi = 0.7
  config.generator.random.update(TINY)
  config.generator.update(generator)
  return config


def _images(config, split):
  source = data.get_data_source(config, split)
  return np.stack([source[i]["image"] for i in range(len(source))])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  first = tmp_path_factory.mktemp("tfds_a")
  generated_data.prepare(_config(first))
  return first


def test_images_are_the_generators_and_two_builds_are_byte_identical(
    built, tmp_path):
  config = _config(built)
  builder = generated_data.prepare(config)
  meta = builder.info.metadata["generator"]
  assert meta["truncation_psi"] == 0.7 and meta["noise_mode"] == "random"
  assert meta["generator"]["kind"] == "random"
  assert meta["generator"]["z_dim"] == TINY["z_dim"]
  # Image i of a split is G0 at the keyed z and noise, truncated, rounded.
  module, variables = stylegan2.random_stylegan2(**TINY)
  for split in ("train", "test"):
    images = _images(config, split)
    assert images.shape == ((TRAIN if split == "train" else TEST), RES, RES,
                            3)
    code = generator_data.SPLIT_CODES[split]
    for i in (0, len(images) - 1):
      key = generated_data.image_key(0, code, i)
      want = pixels.to_uint8(generated_data.sample_one(
          module, variables, key, truncation_psi=0.7))
      np.testing.assert_array_equal(images[i], np.asarray(want))
  # Train and test are different draws.
  assert not np.array_equal(_images(config, "train")[0],
                            _images(config, "test")[0])
  # An independent build writes the same bytes.
  generated_data.prepare(_config(tmp_path))
  shards = sorted(p.relative_to(built)
                  for p in pathlib.Path(built).rglob("*.array_record*"))
  assert len(shards) == 2
  for shard in shards:
    assert (built / shard).read_bytes() == (tmp_path / shard).read_bytes()
  # And it is read back by TFDS alone under its config name.
  name = f"gjscc_generator/{builder.builder_config.name}"
  sources = tfds.data_source(name, data_dir=built, download=False)
  assert len(sources["test"]) == TEST


def test_truncation_and_noise_mode_reach_the_generator():
  module, variables = stylegan2.random_stylegan2(**TINY)
  keys = [generated_data.image_key(0, 0, i) for i in range(2)]
  collapsed = [generated_data.sample_one(module, variables, k, 0.0, "none")
               for k in keys]
  # psi = 0 and no noise: every image is G(w_avg).
  np.testing.assert_array_equal(collapsed[0], collapsed[1])
  free = [generated_data.sample_one(module, variables, k, 1.0, "none")
          for k in keys]
  assert float(np.max(np.abs(free[0] - free[1]))) > 1e-3
  noisy = generated_data.sample_one(module, variables, keys[0], 1.0, "random")
  assert float(np.max(np.abs(noisy - free[0]))) > 1e-4


def test_refuses_another_resolution_and_names_the_fix(tmp_path):
  config = _config(tmp_path)
  config.resolution = 32
  with pytest.raises(ValueError, match="data.resolution=16"):
    data.get_builder(config)
  # A converted directory: its config.json decides.
  module, variables = stylegan2.random_stylegan2(**TINY)
  weights = tmp_path / "g0"
  stylegan2.save_stylegan2(str(weights), module.config, jax.device_get(
      variables))
  config.generator.dir = str(weights)
  with pytest.raises(ValueError, match="data.resolution=16"):
    data.get_builder(config)
  config.resolution = RES
  builder = data.get_builder(config)
  assert builder.builder_config.provenance["generator"]["kind"] == "converted"
  assert len(builder.builder_config.provenance["generator"]["sha256"]) == 64


def test_unprepared_without_a_sampler_names_the_call(tmp_path):
  with pytest.raises(FileNotFoundError, match="generated_data.prepare"):
    data.get_data_source(_config(tmp_path), "test")
  assert not list(tmp_path.rglob("*.array_record*"))


def test_bad_settings_are_refused(tmp_path):
  for field, value in (("noise_mode", "fresh"), ("truncation_psi", 1.5),
                       ("test_size", 0)):
    config = _config(tmp_path, **{field: value})
    with pytest.raises(ValueError, match=field):
      data.get_builder(config)


def test_random_defaults_match_random_stylegan2():
  defaults = {name: p.default for name, p in inspect.signature(
      stylegan2.random_stylegan2).parameters.items()}
  assert data.default_data_config().generator.random.to_dict() == defaults
  assert set(defaults) == set(stylegan2.RANDOM_FIELDS)
