"""Saved latents: the chosen variables of a restored image, and re-rendering.

With `save_latents=True` a batch run writes, per image and SNR,
`snr_<s>dB/latents/<i>.npz` (`outputs.OutputStore.latents_path`) holding

* `ws` `(num_ws, w_dim)`: the W+ latents of the restored image;
* `z` (only for `latent_space='z_proxy'`): the Gaussian rows that map to
  `ws` through the proxy, with the proxy's `proxy_mean` and `proxy_std`;
* `noise_<l>` `(r, r, 1)`: every noise map, by noise layer;
* `x`, `img`: the feature map and skip image entering block `block` (absent
  when `block` is 0), the last round's start block;
* `block`, `latent_space`, `image_resolution`.

`render(generator, generator_variables, saved)` re-runs the generator from
these arrays and reproduces the restored image; edit `ws` (or `z` mapped
with `latent_proxy.to_w`) or the noise maps first to explore around it:

  saved = latents.read(store.latents_path(snr_db, index))
  image = latents.restored(layered, gen_variables, saved)   # uint8 (H, W, 3)
"""

import jax
import jax.numpy as jnp
import numpy as np

from gjscc_jax import pixels
from gjscc_jax.inverse import forward_operators
from gjscc_jax.inverse import ilo


def latent_arrays(config, frozen, variables):
  """The per-image arrays of a latents file, for a batch of chosen variables
  (traceable; `config` an `ilo.ILOConfig`).

  Returns:
    `{'ws': (B, num_ws, w_dim), 'z' ('z_proxy' only), 'noise_<l>':
    (B, r, r, 1), 'x', 'img' (when `config.last_block > 0`)}`.
  """
  ws = jax.vmap(lambda z: ilo.latents_to_ws(config, frozen, z))(
      variables.latents)
  out = dict(ws=ws)
  if config.latent_space == "z_proxy":
    out["z"] = variables.latents
  for layer, noise in enumerate(variables.noises):
    out[f"noise_{layer}"] = noise
  if variables.x is not None:
    out["x"], out["img"] = variables.x, variables.img
  return out


def file_arrays(config, proxy, per_image, image_resolution):
  """One image's `latent_arrays` plus the file's metadata arrays (`proxy`:
  the host copy of `frozen['latent_proxy']`, or None for 'w_plus')."""
  out = dict(per_image, block=np.int32(config.last_block),
             latent_space=np.asarray(config.latent_space),
             image_resolution=np.int32(image_resolution))
  if proxy is not None:
    out["proxy_mean"] = np.asarray(proxy["mean"], np.float32)
    out["proxy_std"] = np.asarray(proxy["std"], np.float32)
  return out


def read(path) -> dict:
  """The arrays of a latents file (plain arrays, no pickles)."""
  with np.load(path, allow_pickle=False) as npz:
    return {k: npz[k] for k in npz.files}


def render(generator, generator_variables, saved):
  """The generator image `(R, R, 3)` float32 of a latents file's arrays.

  Args:
    generator: The run's `LayeredGenerator`.
    generator_variables: Its variables (`frozen['generator']`).
    saved: `read(path)`, possibly edited.
  """
  noises = tuple(jnp.asarray(saved[f"noise_{l}"])
                 for l in range(len(generator.noise_blocks)))
  block = int(saved["block"])
  x = img = None
  if block:
    x, img = jnp.asarray(saved["x"]), jnp.asarray(saved["img"])
  return generator.synthesize_one(generator_variables,
                                  jnp.asarray(saved["ws"]), noises, block, x,
                                  img)


def restored(generator, generator_variables, saved):
  """The restored image as the run wrote it: `render`, area-downsampled to
  the image resolution, clipped, uint8 `(H, W, 3)`."""
  image = render(generator, generator_variables, saved)
  factor = generator.resolution // int(saved["image_resolution"])
  image = forward_operators.box_downsample(image, factor)
  return np.asarray(pixels.to_uint8(jnp.clip(image, pixels.LOW, pixels.HIGH)))
