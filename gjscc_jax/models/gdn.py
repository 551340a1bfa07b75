"""Generalized divisive normalization (GDN) and its inverse (Ballé et al.).

GDN normalises each channel of a feature map by a learned combination of the
squared channels at the same position:

    y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)            (GDN)
    y_i = x_i * sqrt(beta_i + sum_j gamma_ij x_j^2)            (inverse GDN)

(Ballé, Laparra and Simoncelli, "Density modeling of images using a generalized
normalization transformation", ICLR 2016; "End-to-end optimized image
compression", ICLR 2017). `beta` must stay positive and `gamma` non-negative.
As in tensorflow_compression and compressai, both are stored through a
*non-negative reparametrisation*: the trainable value `v` maps to
`max(v, bound)^2 - pedestal`, with `pedestal = 2^-36` (a tiny offset that keeps
the gradient of the square away from zero) and `bound = sqrt(minimum +
pedestal)`. The lower bound passes gradients that push `v` back up, so a
parameter stuck at the bound can recover (`lower_bound`).

Initialisation: `beta = 1`, `gamma = 0.1 * I` (effective values), as in
compressai. The parameters are named `beta` and `gamma` and hold the
*reparametrised* values; `effective_gdn_params` recovers `beta` and `gamma`.
"""

import functools

import jax
import jax.numpy as jnp
from flax import linen as nn

#: Offset of the squared reparametrisation (2^-18 squared, as in
#: tensorflow_compression and compressai).
PEDESTAL = 2.0**-36


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def lower_bound(x, bound):
  """`max(x, bound)` whose gradient also flows when it would raise `x`.

  Below the bound the plain `max` has zero gradient, so a parameter pinned at
  the bound would never move again. Here the cotangent passes through when
  `x >= bound`, or when a gradient-descent step would increase `x` (negative
  cotangent). Reverse mode only (a `jax.custom_vjp`).
  """
  return jnp.maximum(x, bound)


def _lower_bound_fwd(x, bound):
  return jnp.maximum(x, bound), x


def _lower_bound_bwd(bound, x, cotangent):
  passes = (x >= bound) | (cotangent < 0)
  return (jnp.where(passes, cotangent, jnp.zeros_like(cotangent)),)


lower_bound.defvjp(_lower_bound_fwd, _lower_bound_bwd)


def nonnegative_init(value, minimum=0.0):
  """Stored value whose reparametrisation equals `max(value, minimum)`."""
  return jnp.sqrt(jnp.maximum(value + PEDESTAL, PEDESTAL + minimum))


def nonnegative(stored, minimum=0.0):
  """Effective value `max(stored, bound)^2 - pedestal`, always >= `minimum`."""
  bound = (minimum + PEDESTAL) ** 0.5
  return jnp.square(lower_bound(stored, bound)) - PEDESTAL


def effective_gdn_params(params, beta_min=1e-6):
  """The effective `(beta, gamma)` of a GDN layer from its parameter dict.

  Args:
    params: the layer's parameters, `{'beta': (C,), 'gamma': (C, C)}`.
    beta_min: the layer's `beta_min`.

  Returns:
    `beta` of shape `(C,)` and `gamma` of shape `(C, C)` with `gamma[i, j] =
    gamma_ij`, the weight of input channel `j` in the norm of output `i`.
  """
  return nonnegative(params["beta"], beta_min), nonnegative(params["gamma"])


class GDN(nn.Module):
  """GDN (or inverse GDN) over the last (channel) axis of an NHWC tensor.

  Precision: the norm `beta + gamma @ x^2` is one matmul over channels at
  the default matmul precision, accumulated in float32
  (`preferred_element_type`); `beta`, the square root and the division are
  float32. Its operands are float32, or bfloat16 when `dtype` is bfloat16:
  every term of the norm is non-negative, so rounding both operands to
  bfloat16 changes the norm by at most ~2^-8 relative and `y` (through the
  square root) by at most ~2^-9, no more than rounding `y` itself to the
  bfloat16 output does; the matmul then reads half the bytes. (float16
  operands are not used: `x^2` overflows float16 above 256.) Under
  ``jax.default_matmul_precision('highest')`` float32 operands give full
  float32 accuracy (parity tests run so); at the default precision an
  accelerator may round float32 operands (TF32 on NVIDIA GPUs: ~1e-3
  relative).

  Attributes:
    inverse: if True, multiply by the norm (IGDN, for decoders).
    beta_min: lower bound of the effective `beta` (keeps the norm positive).
    gamma_init: diagonal of the initial effective `gamma`.
    dtype: output dtype (None: the input's); bfloat16 also makes the norm's
      matmul operands bfloat16 (see above).
  """
  inverse: bool = False
  beta_min: float = 1e-6
  gamma_init: float = 0.1
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    beta_min = self.beta_min
    stored_beta = self.param(
        "beta", lambda _, shape: nonnegative_init(jnp.ones(shape), beta_min),
        (channels,))
    stored_gamma = self.param(
        "gamma",
        lambda _, shape: nonnegative_init(self.gamma_init * jnp.eye(shape[0])),
        (channels, channels))
    beta = nonnegative(stored_beta, beta_min)
    gamma = nonnegative(stored_gamma)
    dtype = jnp.dtype(self.dtype or x.dtype)
    operands = jnp.bfloat16 if dtype == jnp.bfloat16 else jnp.float32
    x32 = x.astype(jnp.float32)
    norm = beta + jnp.einsum("...j,ij->...i", jnp.square(x32).astype(operands),
                             gamma.astype(operands),
                             preferred_element_type=jnp.float32)
    y = x32 * jnp.sqrt(norm) if self.inverse else x32 * jax.lax.rsqrt(norm)
    return y.astype(dtype)
