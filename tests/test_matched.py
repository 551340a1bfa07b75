"""The matched-prior experiment's configs: one dataset drawn from G0 for all
three schemes, and G0 as GenerativeJSCC's and InverseJSCC's prior.

Training on it (G0 grafted, frozen, resumed exactly) is in
test_generative_resume.py; the dataset itself in test_data_generator.py.
"""

import jax
import numpy as np
import pytest
from flax import traverse_util

from experiments.configs import deepjscc_ffhq, generative_ffhq, inverse_ffhq
from gjscc_jax import generated_data
from gjscc_jax import schemes
from gjscc_jax.inverse import batch_run

# G0 at test size (16x16), as in test_generative_resume.py.
G0_TINY = dict(resolution=16, z_dim=16, w_dim=16, channel_base=64,
               channel_max=16, w_avg_samples=64)


def test_the_three_configs_share_one_dataset_and_the_evaluation():
  dj = deepjscc_ffhq.get_config("matched")
  gen = generative_ffhq.get_config("matched,generator=finetune")
  frozen = generative_ffhq.get_config("matched")  # Frozen by default.
  inv = inverse_ffhq.get_config("matched")
  data = dj.data.to_dict()
  assert data["name"] == "generator" and data["resolution"] == 64
  assert data["generator"]["dir"] is None  # The seeded random G0.
  for config in (gen, frozen, inv):
    assert config.data.to_dict() == data
  # G0 is the prior by construction, not by a second copy of its settings.
  assert gen.generator.from_data and frozen.generator.from_data
  assert (gen.generator.train, frozen.generator.train) == ("finetune", "frozen")
  assert inv.generator_from_data and not inv.generator_weights
  # Same bandwidth ratio (1/192) and the same evaluation.
  for config in (dj, gen):
    assert config.model.latent_channels == 8 and config.model.downsampling == 16
    assert tuple(config.eval.snrs_db) == (-5.0, 0.0, 5.0) == tuple(inv.snrs_db)
    assert config.eval.num_images == inv.num_images == 32
    assert not config.data.random_flip


def _tiny_g0(config):
  config.data.resolution = 16
  config.data.generator.random.update(G0_TINY)
  return config


def test_inverse_prior_is_the_data_generator():
  config = _tiny_g0(inverse_ffhq.get_config("matched"))
  generator, variables = batch_run.load_generator(config)
  _, g0 = generated_data.load_generator(config.data.generator)
  assert generator.resolution == 16
  ours = traverse_util.flatten_dict(jax.device_get(variables))
  theirs = traverse_util.flatten_dict(jax.device_get(g0))
  assert ours.keys() == theirs.keys()
  for k in ours:
    np.testing.assert_array_equal(ours[k], theirs[k])
  config.data.name = "sample"
  with pytest.raises(ValueError, match="data.name='generator'"):
    batch_run.load_generator(config)


def test_generative_prior_needs_the_generator_dataset():
  config = _tiny_g0(generative_ffhq.get_config("matched"))
  config.model.downsampling, config.model.encoder_arch = 4, "small"
  model = schemes.build_scheme(config).model
  # The decoder is shaped like G0 (its w_dim, widths and no conv clamp).
  assert model.synthesis.w_dim == 16 and model.synthesis.conv_clamp is None
  assert model.synthesis.layer_channels() == (16, 8, 8, 4, 4)
  config.data.name = "sample"
  with pytest.raises(ValueError, match="--config.data.name=generator"):
    schemes.build_scheme(config)
  config.data.name, config.generator.weights = "generator", "/converted/g"
  with pytest.raises(ValueError, match="either generator.weights or"):
    schemes.build_scheme(config)
