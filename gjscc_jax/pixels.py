"""The project's one pixel convention, and conversions to and from it.

Every model, loss and metric in gjscc-jax takes and returns images as floating
point arrays in NHWC layout (batch, height, width, RGB) with values in [-1, 1]:
the convention of StyleGAN2 (whose generators emit [-1, 1]) and of LPIPS. Data
pipelines deliver uint8 images (cheap to move to the device); convert them with
`from_uint8` inside the jitted step, and back with `to_uint8` for saving.
"""

import jax.numpy as jnp

#: The value range of model-space images.
LOW, HIGH = -1.0, 1.0
#: Peak-to-peak range of model-space images (the PSNR "data range").
DATA_RANGE = HIGH - LOW


def from_uint8(images, dtype=jnp.float32):
  """Maps uint8 images in [0, 255] to floats in [-1, 1]."""
  return images.astype(dtype) * (2.0 / 255.0) - 1.0


def to_unit(images):
  """Maps [-1, 1] images to [0, 1] (clipped)."""
  return jnp.clip((images + 1.0) * 0.5, 0.0, 1.0)


def to_uint8(images):
  """Maps [-1, 1] images to uint8 in [0, 255], rounding and clipping."""
  return jnp.clip(jnp.round((images + 1.0) * 127.5), 0, 255).astype(jnp.uint8)
