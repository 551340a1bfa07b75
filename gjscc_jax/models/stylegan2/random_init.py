"""A small randomly initialised StyleGAN2: the demo prior and test generator.

A random generator knows nothing about faces. It serves where only the
mechanics matter (tests, the CPU demo of InverseJSCC), and as the source of
a synthetic dataset whose images the prior fits by construction
(`data.name='generator'`, `gjscc_jax.generated_data`).
"""

import flax
import jax
import jax.numpy as jnp

from gjscc_jax.models.stylegan2 import generator as generator_lib

#: The fields of `random_stylegan2` (what identifies one random generator).
RANDOM_FIELDS = ("resolution", "z_dim", "w_dim", "mapping_layers",
                 "channel_base", "channel_max", "seed", "w_avg_samples",
                 "noise_strength", "rgb_scale")


def random_stylegan2(*, resolution=64, z_dim=64, w_dim=64, mapping_layers=2,
                     channel_base=2048, channel_max=64, seed=0,
                     w_avg_samples=4096, noise_strength=0.1, rgb_scale=0.25):
  """A small randomly initialised StyleGAN2 and its variables.

  Its `w_avg` is set to the mean of `w_avg_samples` mapped latents, as
  training would track it, every layer's noise strength to `noise_strength`
  (official initialisation: 0, which would make the noise maps inert), and
  the ToRGB weights are scaled by `rgb_scale`, so that images fall roughly in
  [-1, 1] as a trained generator's do (unscaled, they spread over about
  [-4, 4]). The variables are a deterministic function of the arguments.

  Returns:
    `(generator_module, variables)` like `load_stylegan2`.
  """
  g = generator_lib.Generator(
      z_dim=z_dim, w_dim=w_dim, img_resolution=resolution,
      mapping_layers=mapping_layers, channel_base=channel_base,
      channel_max=channel_max)

  @jax.jit
  def init(key):
    init_key, z_key = jax.random.split(key)
    variables = g.init(init_key, jnp.zeros((1, z_dim), jnp.float32))
    z = jax.random.normal(z_key, (w_avg_samples, z_dim), jnp.float32)
    ws = g.apply(variables, z, method=g.map)
    buffers = dict(variables["buffers"])
    buffers["mapping"] = dict(buffers["mapping"], w_avg=jnp.mean(ws[:, 0], 0))
    def adjust(path, x):
      if path[-1] == "noise_strength":
        return jnp.full_like(x, noise_strength)
      if path[-2:] == ("torgb", "weight"):
        return x * rgb_scale
      return x

    params = flax.traverse_util.path_aware_map(adjust, variables["params"])
    return dict(variables, params=params, buffers=buffers)

  return g, init(jax.random.PRNGKey(seed))
