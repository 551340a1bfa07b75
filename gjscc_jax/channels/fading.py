"""Flat fading gains: Rayleigh and Rician, slow, fast or in blocks of L symbols.

One complex gain `h` multiplies each channel symbol, `y = h z + n`. The gain
is

    h = sqrt(K / (K + 1)) + sqrt(1 / (K + 1)) g,   g ~ CN(0, 1),

a line-of-sight part (phase 0) and a scattered part, with Rician K-factor
`K >= 0` (`K = 0` is Rayleigh) and `E|h|^2 = 1`, so the SNR is the average
received SNR. `2 (K + 1) |h|^2` is non-central chi-square with 2 degrees of
freedom and non-centrality `2 K`.

Coherence: one gain is drawn per block of `L` consecutive symbols of an
image (block fading) and held over the block; `L = 1` is fast fading (a new
gain per symbol), `L >= k` slow fading (one gain per image). Blocks are
independent. The draws are the same as `gjscc_jax.channel.rayleigh_gains`
for `K = 0` (one `CN(0, 1)` array of shape `(B, ceil(k / L))`).
"""

import functools
import math

import jax
import jax.numpy as jnp


@functools.partial(jax.jit, static_argnums=(1, 2))
def complex_normal(key, shape, dtype=jnp.complex64):
  """Samples `CN(0, 1)`: real and imaginary parts i.i.d. `N(0, 1/2)`."""
  real_dtype = jnp.float64 if dtype == jnp.complex128 else jnp.float32
  parts = jax.random.normal(key, (2,) + tuple(shape), real_dtype)
  return jax.lax.complex(parts[0], parts[1]) * jnp.sqrt(0.5).astype(real_dtype)


def num_blocks(num_symbols, coherence):
  """Fading blocks of `coherence` symbols covering `num_symbols`: `ceil(k/L)`."""
  if coherence < 1:
    raise ValueError(f"coherence={coherence} must be >= 1 symbol.")
  return max(1, math.ceil(num_symbols / coherence))


def rician_draw(key, shape, k_factor=0.0, dtype=jnp.complex64):
  """Independent Rician gains of unit power, `shape`, K-factor `k_factor`."""
  g = complex_normal(key, tuple(shape), dtype)
  if not k_factor:
    return g
  los = math.sqrt(k_factor / (k_factor + 1.0))
  return (los + math.sqrt(1.0 / (k_factor + 1.0)) * g).astype(dtype)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def block_gains(key, batch, num_symbols, coherence, k_factor=0.0,
                dtype=jnp.complex64):
  """Rician block-fading gains `h`, shape `(B, k)` (module docstring).

  Args:
    key: PRNG key.
    batch: images `B` (static).
    num_symbols: symbols per image `k` (static).
    coherence: symbols per fading block `L >= 1` (static); `L >= k` gives
      one gain per image.
    k_factor: Rician K-factor `K >= 0` (linear; static); 0 is Rayleigh.
    dtype: complex dtype.

  Returns:
    Complex `(B, k)`; symbols `j` and `j'` share a gain iff
    `j // L == j' // L`.
  """
  if k_factor < 0:
    raise ValueError(f"k_factor={k_factor} must be >= 0 (linear).")
  blocks = num_blocks(num_symbols, coherence)
  h = rician_draw(key, (batch, blocks), k_factor, dtype)
  if blocks == 1:
    return jnp.broadcast_to(h, (batch, num_symbols))
  return jnp.repeat(h, coherence, axis=1, total_repeat_length=blocks *
                    coherence)[:, :num_symbols]
