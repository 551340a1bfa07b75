"""Wireless channel models and bandwidth accounting for deep JSCC.

The encoder of a DeepJSCC model emits a real tensor `latents` of shape
`(B, h, w, C)`. It is transmitted as `k = h * w * C / 2` complex channel
symbols per image:

* **Pairing.** Adjacent channels form one complex symbol: channel `2i` is the
  in-phase (real) part and channel `2i + 1` the quadrature (imaginary) part of
  the symbol at that spatial position. Symbols are flattened in row-major
  `(h, w, C/2)` order, so `pair_symbols` returns shape `(B, k)` and
  `unpair_symbols` inverts it exactly. `C` must be even.
* **Power constraint.** `power_normalize` rescales every image's symbols to an
  average power of exactly `P`: `z <- sqrt(k P) z / ||z||`.
* **Channel.** AWGN `y = z + n`, `n ~ CN(0, sigma^2)` with
  `SNR = 10 log10(P / sigma^2)` dB; or Rayleigh fading `y = h z + n` with
  `h ~ CN(0, 1)` either constant per image (`'slow'`, block fading) or drawn
  per symbol (`'fast'`), equalised at the receiver with perfect channel state
  information by zero-forcing or MMSE.

All channel functions are pure, take an explicit PRNG key first (like
`jax.random`), work under `jit`/`vmap`/`grad` (gradients flow through the
symbols, never through the noise) and accept `snr_db` as a scalar or as one
value per image with shape `(B,)`. They are wrapped in `jax.jit` (string
options static), so eager calls compile once and nested calls inline.

Bandwidth compression ratio (BCR) `rho = k / n` with `n = H * W * 3` source
dimensions: see `bandwidth_ratio` and `latent_channels_for_bcr`.
"""

import fractions
import functools
from typing import Union

import jax
import jax.numpy as jnp

Ratio = Union[str, int, float, fractions.Fraction]

CHANNELS = ("awgn", "rayleigh")
FADINGS = ("slow", "fast")
EQUALIZATIONS = ("zf", "mmse")


def _check_choice(name, value, choices):
  if value not in choices:
    raise ValueError(
        f"{name}={value!r} is not supported; use one of {choices}.")


def validate_options(channel="awgn", fading="slow", equalization="mmse"):
  """Raises a ValueError naming the option if a channel setting is unknown."""
  _check_choice("channel", channel, CHANNELS)
  _check_choice("fading", fading, FADINGS)
  _check_choice("equalization", equalization, EQUALIZATIONS)


def _real_dtype(x):
  """The float dtype (at least float32) in which channel arithmetic runs."""
  dtype = jnp.real(x).dtype if jnp.iscomplexobj(x) else x.dtype
  return jnp.promote_types(dtype, jnp.float32)


def _per_image(snr_db, batch, dtype):
  """Broadcasts a scalar or `(B,)` SNR to `(B, 1)`, for `(B, k)` symbols."""
  snr_db = jnp.asarray(snr_db, dtype)
  if snr_db.ndim == 0:
    snr_db = jnp.broadcast_to(snr_db, (batch,))
  if snr_db.shape != (batch,):
    raise ValueError(
        "snr_db must be a scalar or have one value per image, shape "
        f"({batch},); got shape {snr_db.shape}.")
  return snr_db[:, None]


def _check_symbols(z):
  if z.ndim != 2 or not jnp.iscomplexobj(z):
    raise ValueError(
        "Channel functions take complex symbols of shape (batch, k); got "
        f"{z.dtype} of shape {z.shape}. Use `pair_symbols` on real latents "
        "first, or call `transmit`.")


def noise_variance(snr_db, power=1.0):
  """Complex noise variance `sigma^2 = P / 10^(SNR/10)` for an SNR in dB."""
  return power * 10.0 ** (-jnp.asarray(snr_db) / 10.0)


# --- Real latents <-> complex symbols ----------------------------------------


@jax.jit
def pair_symbols(latents):
  """Pairs real latents `(B, h, w, C)` into complex symbols `(B, h*w*C/2)`.

  Channel `2i` becomes the real part and channel `2i + 1` the imaginary part
  of the symbol at each position (see the module docstring).

  Args:
    latents: real array of shape `(B, h, w, C)` with even `C`.

  Returns:
    A complex array of shape `(B, k)`, `k = h * w * C / 2` (complex64, or
    complex128 for float64 input).

  Raises:
    ValueError: if `latents` is not 4-D or `C` is odd.
  """
  if latents.ndim != 4:
    raise ValueError(
        f"latents must be NHWC (B, h, w, C); got shape {latents.shape}.")
  if latents.shape[-1] % 2:
    raise ValueError(
        f"latents have C={latents.shape[-1]} channels, but pairs of channels "
        "form complex symbols, so C must be even: choose an even number of "
        "latent channels.")
  real_dtype = _real_dtype(latents)
  pairs = latents.astype(real_dtype).reshape(latents.shape[0], -1, 2)
  return jax.lax.complex(pairs[..., 0], pairs[..., 1])


@functools.partial(jax.jit, static_argnums=1)
def unpair_symbols(symbols, latent_shape):
  """Inverts `pair_symbols`: complex `(B, k)` to real `latent_shape`.

  Args:
    symbols: complex array of shape `(B, k)`.
    latent_shape: the `(B, h, w, C)` tuple to restore, `h * w * C == 2 k`
      (static).

  Returns:
    A real array of shape `latent_shape` (dtype of the symbols' real part).
  """
  pairs = jnp.stack([jnp.real(symbols), jnp.imag(symbols)], axis=-1)
  return pairs.reshape(latent_shape)


# --- Power constraint ---------------------------------------------------------


@jax.jit
def power_normalize(z, power=1.0):
  """Scales each image's symbols to average power `P`: `sqrt(k P) z / ||z||`.

  Afterwards `mean(|z_i|^2) == P` per image up to float rounding. An all-zero
  image stays zero (instead of producing NaN).

  Args:
    z: complex symbols of shape `(B, k)`.
    power: average symbol power `P > 0`.

  Returns:
    Complex symbols of the same shape and dtype with per-image power `P`.
  """
  _check_symbols(z)
  energy = jnp.sum(jnp.abs(z) ** 2, axis=1, keepdims=True)
  nonzero = energy > 0
  scale = jnp.where(
      nonzero, jnp.sqrt(z.shape[1] * power / jnp.where(nonzero, energy, 1.0)),
      0.0)
  return z * scale.astype(z.dtype)


# --- Noise and fading ---------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(1, 2))
def complex_normal(key, shape, dtype=jnp.complex64):
  """Samples `CN(0, 1)`: real and imaginary parts i.i.d. `N(0, 1/2)`."""
  real_dtype = jnp.float64 if dtype == jnp.complex128 else jnp.float32
  parts = jax.random.normal(key, (2,) + tuple(shape), real_dtype)
  return jax.lax.complex(parts[0], parts[1]) * jnp.sqrt(0.5).astype(real_dtype)


def sample_snr_db(key, batch, low, high):
  """Draws one training SNR per image, uniform in `[low, high]` dB.

  Args:
    key: PRNG key.
    batch: number of images `B` (static).
    low: lower end of the range in dB.
    high: upper end of the range in dB (`high >= low`; equal gives a
      constant). Either end may also be a traced scalar.

  Returns:
    float32 array of shape `(B,)`.
  """
  if isinstance(low, (int, float)) and isinstance(high, (int, float)) and (
      high < low):
    raise ValueError(f"SNR range is empty: low={low} dB > high={high} dB.")
  return jax.random.uniform(key, (batch,), jnp.float32, low, high)


@jax.jit
def awgn(key, z, snr_db, power=1.0):
  """Complex AWGN channel `y = z + n`, `n ~ CN(0, P / 10^(SNR/10))`.

  Args:
    key: PRNG key for the noise.
    z: complex symbols `(B, k)` with average power `power`.
    snr_db: SNR in dB, a scalar or one per image with shape `(B,)`.
    power: the transmit power `P` the SNR refers to.

  Returns:
    The received symbols `y`, same shape and dtype as `z`.
  """
  _check_symbols(z)
  real_dtype = jnp.real(z).dtype
  sigma2 = noise_variance(_per_image(snr_db, z.shape[0], real_dtype), power)
  noise = complex_normal(key, z.shape, z.dtype)
  return z + (jnp.sqrt(sigma2).astype(real_dtype) * noise).astype(z.dtype)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def rayleigh_gains(key, batch, num_symbols, fading="slow", dtype=jnp.complex64):
  """Samples Rayleigh fading coefficients `h ~ CN(0, 1)`, shape `(B, k)`.

  Args:
    key: PRNG key.
    batch: number of images `B`.
    num_symbols: symbols per image `k`.
    fading: `'slow'` draws one coefficient per image, repeated over its `k`
      symbols (block fading); `'fast'` draws one per symbol.
    dtype: complex dtype of the result.

  Returns:
    Complex array of shape `(B, k)`.
  """
  _check_choice("fading", fading, FADINGS)
  if fading == "slow":
    h = complex_normal(key, (batch, 1), dtype)
    return jnp.broadcast_to(h, (batch, num_symbols))
  return complex_normal(key, (batch, num_symbols), dtype)


@functools.partial(jax.jit, static_argnames="equalization")
def equalize(y, h, noise_var, power=1.0, equalization="mmse"):
  """Equalises `y = h z + n` with perfect knowledge of `h` and `sigma^2`.

  * `'zf'` (zero-forcing): `z_hat = y / h`. Unbiased, but amplifies the noise
    by `1 / |h|^2` in deep fades.
  * `'mmse'` (per-symbol linear MMSE): `z_hat = conj(h) y / (|h|^2 +
    sigma^2 / P)`. Minimises `E|z_hat - z|^2` for symbols of power `P`; it
    shrinks towards zero when the instantaneous SNR `|h|^2 P / sigma^2` is low.

  Args:
    y: received complex symbols `(B, k)`.
    h: fading coefficients, broadcastable to `y`.
    noise_var: `sigma^2`, broadcastable to `y` (e.g. `(B, 1)`).
    power: transmit power `P`.
    equalization: `'zf'` or `'mmse'`.

  Returns:
    The equalised symbols, same shape and dtype as `y`.
  """
  _check_choice("equalization", equalization, EQUALIZATIONS)
  if equalization == "zf":
    return y / h
  gain = jnp.abs(h) ** 2 + noise_var / power
  return (jnp.conj(h) * y / gain).astype(y.dtype)


@functools.partial(jax.jit, static_argnames=("fading", "equalization"))
def rayleigh(key, z, snr_db, *, fading="slow", equalization="mmse",
             power=1.0):
  """Rayleigh fading channel followed by coherent equalisation.

  Computes `y = h z + n` with `h ~ CN(0, 1)` (see `rayleigh_gains`) and
  `n ~ CN(0, P / 10^(SNR/10))`, then `equalize(y, h, ...)`. The SNR is the
  average received SNR (`E|h|^2 = 1`).

  Args:
    key: PRNG key (split internally for the fading and the noise).
    z: complex symbols `(B, k)` with average power `power`.
    snr_db: SNR in dB, a scalar or shape `(B,)`.
    fading: `'slow'` (one `h` per image) or `'fast'` (one `h` per symbol).
    equalization: `'zf'` or `'mmse'`, see `equalize`.
    power: the transmit power `P`.

  Returns:
    The equalised symbols, same shape and dtype as `z`.
  """
  _check_symbols(z)
  _check_choice("equalization", equalization, EQUALIZATIONS)
  gain_key, noise_key = jax.random.split(key)
  h = rayleigh_gains(gain_key, z.shape[0], z.shape[1], fading, z.dtype)
  real_dtype = jnp.real(z).dtype
  sigma2 = noise_variance(_per_image(snr_db, z.shape[0], real_dtype), power)
  y = awgn(noise_key, h * z, snr_db, power)
  return equalize(y, h, sigma2.astype(real_dtype), power, equalization)


@functools.partial(
    jax.jit, static_argnames=("channel", "fading", "equalization"))
def transmit(key, latents, snr_db, *, channel="awgn", fading="slow",
             equalization="mmse", power=1.0):
  """Sends real encoder latents over the channel; what the models call.

  pair -> power-normalise -> channel (-> equalise) -> unpair.

  Args:
    key: PRNG key for the channel realisation.
    latents: real latents `(B, h, w, C)`, `C` even.
    snr_db: SNR in dB, a scalar or one per image `(B,)`.
    channel: `'awgn'` or `'rayleigh'`.
    fading: for Rayleigh, `'slow'` or `'fast'` (ignored for AWGN).
    equalization: for Rayleigh, `'zf'` or `'mmse'` (ignored for AWGN).
    power: average transmit power `P` per complex symbol.

  Returns:
    Received (equalised) real latents of the same shape and dtype as
    `latents`; arithmetic runs in at least float32.
  """
  validate_options(channel, fading, equalization)
  z = power_normalize(pair_symbols(latents), power)
  if channel == "awgn":
    y = awgn(key, z, snr_db, power)
  else:
    y = rayleigh(key, z, snr_db, fading=fading, equalization=equalization,
                 power=power)
  return unpair_symbols(y, latents.shape).astype(latents.dtype)


# --- Bandwidth compression ratio ---------------------------------------------


def parse_ratio(ratio: Ratio) -> fractions.Fraction:
  """Parses a bandwidth ratio: `'1/192'`, `'0.25'`, a number or a Fraction.

  Numbers are converted to the closest fraction with a denominator of at most
  10^6, so the float `1/192` parses to `Fraction(1, 192)`.

  Raises:
    ValueError: if the value is not a positive number or `'p/q'` string.
  """
  try:
    if isinstance(ratio, str):
      parsed = fractions.Fraction(ratio.replace(" ", ""))
    else:
      parsed = fractions.Fraction(ratio).limit_denominator(10**6)
  except (ValueError, TypeError, ZeroDivisionError) as e:
    raise ValueError(
        f"Cannot parse the ratio {ratio!r}: give a positive number or a "
        "string like '1/192'.") from e
  if parsed <= 0:
    raise ValueError(f"The ratio must be positive; got {ratio!r}.")
  return parsed


def bandwidth_ratio(image_shape, latent_shape) -> float:
  """Bandwidth ratio `rho = k / n`: complex channel uses per source value.

  Args:
    image_shape: `(H, W, 3)` or `(B, H, W, 3)`; `n = H * W * 3`.
    latent_shape: `(h, w, C)` or `(B, h, w, C)`; `k = h * w * C / 2`.

  Returns:
    `rho` as a float, e.g. `1/192` for `(256, 256, 3)` and `(16, 16, 8)`.
  """
  n = _prod(image_shape[-3:])
  if latent_shape[-1] % 2:
    raise ValueError(
        f"latent shape {tuple(latent_shape)} has an odd number of channels; "
        "pairs of channels form complex symbols, so C must be even.")
  return (_prod(latent_shape[-3:]) // 2) / n


def bcr_of_latent_channels(latent_channels: int, downsampling: int = 16,
                           image_channels: int = 3) -> fractions.Fraction:
  """Bandwidth ratio of `C` latent channels at `d`-times downsampling.

  `rho = C / (2 * image_channels * d^2)` (`C / 1536` at `d = 16`), exactly,
  independently of the resolution; the inverse of `latent_channels_for_bcr`.
  """
  return fractions.Fraction(latent_channels,
                            2 * image_channels * downsampling**2)


def latent_channels_for_bcr(rho: Ratio, downsampling: int = 16,
                            image_channels: int = 3) -> int:
  """Latent channels `C` giving bandwidth ratio `rho` at a downsampling factor.

  With `d`-times spatial downsampling, `rho = C / (2 * image_channels * d^2)`
  independently of the resolution; at `d = 16`: `1/768 -> 2`, `1/384 -> 4`,
  `1/192 -> 8`.

  Args:
    rho: target ratio (float, Fraction, or string like `'1/192'`).
    downsampling: total spatial downsampling factor `d` of the encoder.
    image_channels: colour channels of the source (3).

  Returns:
    The even integer `C`.

  Raises:
    ValueError: if `rho` needs a non-integer or odd `C` at this downsampling.
  """
  rho = parse_ratio(rho)
  per_channel = bcr_of_latent_channels(1, downsampling, image_channels)
  channels = rho / per_channel
  if channels.denominator != 1 or channels.numerator % 2:
    below = max(2, 2 * int(channels // 2))
    reachable = ", ".join(
        f"{c * per_channel} (C={c})" for c in (below, below + 2))
    raise ValueError(
        f"rho={rho} needs C={float(channels):g} latent channels at "
        f"{downsampling}x downsampling, but C must be an even integer "
        f"(rho = C/{per_channel.denominator}). Nearest reachable ratios: "
        f"{reachable}.")
  return int(channels)


def _prod(shape):
  out = 1
  for s in shape:
    out *= int(s)
  return out
