"""gjscc-jax: DeepJSCC, InverseJSCC and GenerativeJSCC in JAX/Flax.

Pixel convention for the whole project (see `gjscc_jax.pixels`): images are
float arrays in NHWC layout with values in [-1, 1], as StyleGAN2 and LPIPS use.
"""

__version__ = "0.1.0"
