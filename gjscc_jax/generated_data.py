"""Prepares the 'generator' dataset: images sampled from a fixed StyleGAN2.

`gjscc_jax.data` never imports model code, so its 'generator' builder
(`gjscc_jax.data.generator`) only writes what a sampler hands it. This module
is where data and models meet: `prepare(data_config)` loads the configured
generator (a converted directory, or the seeded random StyleGAN2 of
`data_config.generator.random`), builds the sampler and prepares the
dataset. Afterwards every reader (`data.get_data_source`, the trainer, the
evaluator, InverseJSCC) reads it like any other dataset.

Image `i` of `split` is drawn from the key
`fold_in(fold_in(PRNGKey(sample_seed), split_code), i)` (split codes
`gjscc_jax.data.generator.SPLIT_CODES`), split into the
latent's key (`z ~ N(0, I)`) and the noise maps' key; the mapping network
truncates `w` by `truncation_psi`, and the noise maps are fresh N(0, 1) maps
('random'), the generator's stored maps ('const') or zero ('none'). An
image's pixels therefore depend on nothing but its index, split and the
settings.

  from gjscc_jax import generated_data
  data_config.name = 'generator'
  generated_data.prepare(data_config)
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gjscc_jax import data
from gjscc_jax import pixels
from gjscc_jax.models import stylegan2


def load_generator(generator_config):
  """`(Generator, variables)` of `data_config.generator` (its `dir`, or the
  random StyleGAN2 of its `random` block)."""
  if generator_config.dir:
    return stylegan2.load_stylegan2(generator_config.dir)
  return stylegan2.random_stylegan2(**generator_config.random.to_dict())


def image_key(sample_seed, split_code, index):
  """The PRNG key of image `index` of the split with code `split_code`
  (`gjscc_jax.data.generator.SPLIT_CODES`); traceable in both."""
  key = jax.random.fold_in(jax.random.PRNGKey(sample_seed), split_code)
  return jax.random.fold_in(key, index)


def sample_one(module, variables, key, truncation_psi=1.0,
               noise_mode="random"):
  """One generator image `(R, R, 3)` float32 in [-1, 1] (unclipped).

  Args:
    module: A `stylegan2.Generator`.
    variables: Its variables.
    key: The image's key (`image_key`).
    truncation_psi: Truncation towards `w_avg` (a Python float).
    noise_mode: 'random', 'const' or 'none' (see the module docstring).
  """
  z_key, noise_key = jax.random.split(key)
  z = jax.random.normal(z_key, (1, module.z_dim), jnp.float32)
  ws = module.apply(variables, z, truncation_psi=truncation_psi,
                    method=module.map)
  if noise_mode == "random":
    keys = jax.random.split(noise_key, module.num_layers)
    noise = [jax.random.normal(k, (1, h, w, 1), jnp.float32)
             for k, (h, w) in zip(keys, module.noise_shapes)]
    image = module.apply(variables, ws, noise=noise, method=module.synthesize)
  else:
    image = module.apply(variables, ws, noise_mode=noise_mode,
                         method=module.synthesize)
  return image[0]


class Sampler:
  """`sampler(split, start, count) -> uint8 (count, R, R, 3)` of one
  generator dataset; loads the generator at the first call."""

  def __init__(self, generator_config):
    self._config = generator_config
    self._fn = None

  def _build(self):
    config = self._config
    module, variables = load_generator(config)
    one = functools.partial(sample_one, module,
                            truncation_psi=float(config.truncation_psi),
                            noise_mode=config.noise_mode)

    @jax.jit
    def draw(split_code, indices):
      keys = jax.vmap(lambda i: image_key(config.sample_seed, split_code, i))(
          indices)
      images = jax.vmap(lambda k: one(variables, k))(keys)
      return pixels.to_uint8(jnp.clip(images, pixels.LOW, pixels.HIGH))
    return draw

  def __call__(self, split, start, count):
    # The builder module imports tensorflow_datasets: imported where data is
    # written, so that the schemes import without the data stack.
    from gjscc_jax.data import generator as generator_data  # pylint: disable=import-outside-toplevel
    if self._fn is None:
      self._fn = self._build()
    # A fixed-size chunk (one compile); the padding is cut off.
    size = max(count, generator_data.SAMPLE_CHUNK)
    indices = start + jnp.arange(size, dtype=jnp.int32)
    code = jnp.uint32(generator_data.SPLIT_CODES[split])
    return np.asarray(self._fn(code, indices))[:count]


def prepare(data_config):
  """Prepares `data_config`'s 'generator' dataset (once) and returns its
  builder; other datasets are prepared as `gjscc_jax.data.prepare` does.

  Raises:
    ValueError: If `data_config.resolution` is not the generator's (the
      message names the fix).
  """
  if data_config.name != "generator":
    return data.prepare(data_config)
  return data.prepare(data_config, sampler=Sampler(data_config.generator))


def ensure_prepared(data_config) -> None:
  """`prepare(data_config)` for a 'generator' dataset; nothing otherwise
  (the data layer prepares the others itself, on first read)."""
  if data_config.get("name") == "generator":
    prepare(data_config)
