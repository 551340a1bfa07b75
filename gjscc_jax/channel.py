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
* **Channel.** A `Channel` object (frozen, hashable; `from_config`,
  `parse`) names the channel and sends symbols through it:
  `Channel(...)(key, z, snr_db) -> (received, csi)`. Its `kind` picks a link
  function from `KINDS`: AWGN `y = z + n`, `n ~ CN(0, sigma^2)` with
  `SNR = 10 log10(P / sigma^2)` dB; Rayleigh or Rician fading `y = h z + n`
  (`E|h|^2 = 1`) held per image (`'slow'`), per symbol (`'fast'`) or per
  block of `coherence` symbols (`'block'`), equalised with perfect channel
  state information by zero-forcing or MMSE; or OFDM over a tapped delay
  line with comb pilots, LS/LMMSE channel estimation and per-subcarrier
  equalisation. The maths lives in `gjscc_jax.channels` (`fading`, `tdl`,
  `ofdm`); docs/channels.md lists the fields and how to add a channel.

All channel functions are pure, take an explicit PRNG key first (like
`jax.random`), work under `jit`/`vmap`/`grad` (gradients flow through the
symbols, never through the noise) and accept `snr_db` as a scalar or as one
value per image with shape `(B,)`. They are wrapped in `jax.jit` (string
options and the `Channel` static), so eager calls compile once and nested
calls inline.

Bandwidth compression ratio (BCR) `rho = k / n` with `n = H * W * 3` source
dimensions: see `bandwidth_ratio` and `latent_channels_for_bcr`.
"""

import dataclasses
import fractions
import functools
from typing import Union

import jax
import jax.numpy as jnp

from gjscc_jax.channels import fading as fading_lib
from gjscc_jax.channels import ofdm as ofdm_lib
from gjscc_jax.channels import tdl as tdl_lib

Ratio = Union[str, int, float, fractions.Fraction]

FADINGS = ("slow", "fast", "block")
EQUALIZATIONS = ("zf", "mmse")
CSI = ofdm_lib.CSI
SIDE_INFO = ("snr", "snr+gain")


def _check_choice(name, value, choices):
  if value not in choices:
    raise ValueError(
        f"{name}={value!r} is not supported; use one of {choices}.")


#: What the older string-typed callers support (`validate_options`).
LEGACY_CHANNELS = ("awgn", "rayleigh")
LEGACY_FADINGS = ("slow", "fast")


def validate_options(channel="awgn", fading="slow", equalization="mmse"):
  """Raises a ValueError naming the option unless the strings name an
  AWGN or slow/fast Rayleigh channel: the older string form, for callers
  that implement only those (e.g. `gjscc_jax.digital`); the other channels
  exist only as a `Channel`."""
  _check_choice("channel", channel, LEGACY_CHANNELS)
  _check_choice("fading", fading, LEGACY_FADINGS)
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


complex_normal = fading_lib.complex_normal


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
  _check_choice("fading", fading, ("slow", "fast"))
  return fading_lib.block_gains(key, batch, num_symbols,
                                num_symbols if fading == "slow" else 1, 0.0,
                                dtype)


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


# --- The channel as one object ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class Channel:
  """A channel: what it is, and `__call__(key, symbols, snr_db)`.

  Frozen and hashable: a static argument of `jit`, a field of a Flax
  module, a dict key. `kind` picks the link function (`KINDS`); the other
  fields are read by the kinds they concern and are otherwise inert (they
  do not enter `name`).

  Attributes:
    kind: 'awgn', 'rayleigh', 'rician' (flat fading) or 'ofdm' (multipath,
      `gjscc_jax.channels.ofdm`).
    fading: how long a realisation lasts: 'slow' (an image), 'fast' (a
      symbol; an OFDM symbol for 'ofdm') or 'block' (`coherence` of them).
    equalization: 'zf' or 'mmse' (per symbol, per subcarrier for 'ofdm').
    power: average transmit power `P` per complex symbol.
    coherence: 'block' fading: symbols (OFDM symbols) per realisation.
    k_factor: 'rician': the K-factor (linear, >= 0; 0 is Rayleigh).
    csi: the receiver's channel knowledge: 'perfect', or estimated from the
      comb pilots, 'ls' or 'lmmse' ('ofdm' only).
    side_info: what the networks are told: 'snr' (default), or 'snr+gain'
      (also the magnitude of the gain the receiver used, see `side_features`).
    fft_size, subcarriers, cyclic_prefix, pilot_spacing: the OFDM resource
      grid (`gjscc_jax.channels.ofdm.Grid`).
    pdp, taps, delay_spread: the OFDM power-delay profile
      (`gjscc_jax.channels.tdl`).
  """
  kind: str = "awgn"
  fading: str = "slow"
  equalization: str = "mmse"
  power: float = 1.0
  coherence: int = 1
  k_factor: float = 4.0
  csi: str = "perfect"
  side_info: str = "snr"
  fft_size: int = 64
  subcarriers: int = 52
  cyclic_prefix: int = 16
  pilot_spacing: int = 4
  pdp: str = "exponential"
  taps: int = 8
  delay_spread: float = 1.5

  def validate(self):
    """Raises a ValueError naming the field if a setting is invalid."""
    _check_choice("channel", self.kind, CHANNELS)
    _check_choice("fading", self.fading, FADINGS)
    _check_choice("equalization", self.equalization, EQUALIZATIONS)
    _check_choice("csi", self.csi, CSI)
    _check_choice("side_info", self.side_info, SIDE_INFO)
    if self.power <= 0:
      raise ValueError(f"power={self.power} must be > 0.")
    if self.fading == "block" and self.coherence < 1:
      raise ValueError(f"coherence={self.coherence} must be >= 1.")
    if self.kind == "rician" and self.k_factor < 0:
      raise ValueError(f"k_factor={self.k_factor} must be >= 0 (linear).")
    if self.csi != "perfect" and self.kind != "ofdm":
      raise ValueError(
          f"csi={self.csi!r} estimates the channel from OFDM pilots: set "
          "kind='ofdm', or csi='perfect'.")
    if self.kind == "ofdm":
      ofdm_lib.validate(self.grid, self.profile()[0])
    return self

  # What it is.

  @property
  def fading_name(self):
    return (f"block{self.coherence}" if self.fading == "block"
            else self.fading)

  @property
  def name(self):
    """A label for tables and file names: 'awgn', 'rayleigh-slow-mmse',
    'rician-k4-fast-zf', 'rayleigh-block16-mmse',
    'ofdm-tdl-a-slow-ls-mmse'."""
    return self.label(receiver=True)

  def label(self, receiver=True):
    """`name`, without the receiver's parts (CSI, equalisation) when
    `receiver` is False (e.g. for an ideal code's capacity)."""
    if self.kind == "awgn":
      return "awgn"
    parts = [self.kind]
    if self.kind == "rician":
      parts.append(f"k{self.k_factor:g}")
    if self.kind == "ofdm":
      parts.append(self.pdp)
    parts.append(self.fading_name)
    if receiver:
      parts += ([self.csi] if self.csi != "perfect" else []) + [
          self.equalization]
    if self.side_info != "snr" and receiver:
      parts.append("gain")
    return "-".join(parts)

  @property
  def grid(self):
    return ofdm_lib.Grid(self.fft_size, self.subcarriers, self.cyclic_prefix,
                         self.pilot_spacing)

  def profile(self):
    """The OFDM `(delays, powers)` (`gjscc_jax.channels.tdl`)."""
    return tdl_lib.power_delay_profile(self.pdp, self.taps, self.delay_spread)

  def coherence_length(self, units):
    """Symbols (OFDM symbols) per realisation out of `units` per image."""
    if self.fading == "slow":
      return max(1, units)
    return 1 if self.fading == "fast" else self.coherence

  def channel_uses(self, k):
    """Complex channel uses of `k` data symbols (OFDM: with its pilots,
    guards, padding and cyclic prefixes)."""
    return self.grid.channel_uses(k) if self.kind == "ofdm" else int(k)

  def to_config(self):
    """The fields as a plain dict (`from_config` reads it back)."""
    return dataclasses.asdict(self)

  def replace(self, **fields):
    return dataclasses.replace(self, **fields).validate()

  # What it does.

  def __call__(self, key, symbols, snr_db):
    """Sends power-normalised complex symbols `(B, k)` through the channel.

    Args:
      key: PRNG key of the realisation (fading, noise).
      symbols: complex `(B, k)` of average power `power`.
      snr_db: SNR in dB, a scalar or one per image `(B,)`.

    Returns:
      `(received, csi)`: the received, equalised symbols, shape and dtype
      of `symbols`, and `{'gain': (B, k) complex, the channel gain the
      receiver equalised each symbol with (ones for AWGN),
      'noise_var': (B, 1) float, sigma^2}`.
    """
    return _apply(self, key, symbols, snr_db)

  def transmit(self, key, latents, snr_db):
    """Real latents `(B, h, w, C)`: pair, power-normalise, `__call__`,
    unpair. Returns `(received latents (same shape and dtype), csi)`."""
    return _transmit(self, key, latents, snr_db)

  def side_features(self, csi, snr_db, batch):
    """What the networks' AF modules get: `(B, 1 + g)` float32.

    Column 0 is the SNR in dB. With `side_info='snr+gain'` the `g = 8`
    further columns are `10 log10 |gain|^2` averaged over 8 equal slices of
    the image's symbols (the receiver's gain; for slow flat fading all
    equal `|h|^2`; for OFDM the slices follow the subcarrier-minor order).
    """
    snr = jnp.broadcast_to(jnp.asarray(snr_db, jnp.float32), (batch,))
    if self.side_info == "snr" or csi is None:
      return snr[:, None]
    gain = jnp.abs(csi["gain"]).astype(jnp.float32) ** 2
    k = gain.shape[1]
    slices = SIDE_GAIN_SLICES
    pad = (-k) % slices
    gain = jnp.pad(gain, ((0, 0), (0, pad)), mode="edge")
    pooled = jnp.mean(gain.reshape(batch, slices, -1), axis=-1)
    return jnp.concatenate(
        [snr[:, None], 10.0 * jnp.log10(pooled + 1e-6)], axis=-1)


#: Slices of an image's symbols whose mean gain `side_features` reports.
SIDE_GAIN_SLICES = 8


def _awgn_link(ch, key, z, snr_db, noise_var):
  """AWGN: `y = z + n`."""
  del noise_var
  return awgn(key, z, snr_db, ch.power), jnp.ones_like(z)


def _flat_fading_link(ch, key, z, snr_db, noise_var):
  """Rayleigh / Rician block fading, then equalisation with perfect CSI."""
  gain_key, noise_key = jax.random.split(key)
  k_factor = ch.k_factor if ch.kind == "rician" else 0.0
  h = fading_lib.block_gains(gain_key, z.shape[0], z.shape[1],
                             ch.coherence_length(z.shape[1]), k_factor,
                             z.dtype)
  y = awgn(noise_key, h * z, snr_db, ch.power)
  return equalize(y, h, noise_var, ch.power, ch.equalization), h


def _ofdm_link(ch, key, z, snr_db, noise_var):
  """OFDM over a tapped delay line (`gjscc_jax.channels.ofdm.link`)."""
  del snr_db
  grid = ch.grid
  delays, powers = ch.profile()
  return ofdm_lib.link(
      key, z, noise_var, grid=grid, delays=delays, powers=powers,
      coherence=ch.coherence_length(grid.num_ofdm_symbols(z.shape[1])),
      csi=ch.csi, equalization=ch.equalization, power=ch.power)


#: kind -> link `(channel, key, z, snr_db, noise_var (B, 1)) -> (y_hat,
#: gain)`. Adding a channel: a link function and a line here (and its
#: capacity in `gjscc_jax.separation.capacity.CAPACITIES`; docs/channels.md).
KINDS = {
    "awgn": _awgn_link,
    "rayleigh": _flat_fading_link,
    "rician": _flat_fading_link,
    "ofdm": _ofdm_link,
}
CHANNELS = tuple(KINDS)


@functools.partial(jax.jit, static_argnums=0)
def _apply(ch, key, z, snr_db):
  _check_symbols(z)
  real_dtype = jnp.real(z).dtype
  noise_var = noise_variance(_per_image(snr_db, z.shape[0], real_dtype),
                             ch.power).astype(real_dtype)
  y, gain = KINDS[ch.kind](ch, key, z, snr_db, noise_var)
  return y.astype(z.dtype), dict(gain=gain.astype(z.dtype),
                                 noise_var=noise_var)


@functools.partial(jax.jit, static_argnums=0)
def _transmit(ch, key, latents, snr_db):
  z = power_normalize(pair_symbols(latents), ch.power)
  y, csi = _apply(ch, key, z, snr_db)
  return unpair_symbols(y, latents.shape).astype(latents.dtype), csi


_FIELDS = tuple(f.name for f in dataclasses.fields(Channel))


def from_config(config=None, **overrides) -> Channel:
  """The `Channel` of a `config.channel` block (a ConfigDict or dict).

  Missing fields take `Channel`'s defaults, so the blocks of older configs
  and run directories (`kind`, `fading`, `equalization`, `power`) read as
  before. `overrides` replace fields. A `Channel` passes through.

  Raises:
    ValueError: naming the key, for an unknown field or setting.
  """
  if isinstance(config, Channel):
    fields = config.to_config()
  else:
    fields = dict(config.to_dict() if hasattr(config, "to_dict")
                  else (config or {}))
  fields.update(overrides)
  unknown = sorted(set(fields) - set(_FIELDS))
  if unknown:
    raise ValueError(f"channel.{unknown[0]} is not a channel field; the "
                     f"fields are {', '.join(_FIELDS)}.")
  fields = {k: v for k, v in fields.items() if v is not None}
  types = {f.name: f.type for f in dataclasses.fields(Channel)}
  for key, value in fields.items():
    if types[key] in ("int", int):
      fields[key] = int(value)
    elif types[key] in ("float", float):
      fields[key] = float(value)
  return Channel(**fields).validate()


def parse(spec) -> Channel:
  """A `Channel` from `'KIND[:FIELD=VALUE,...]'`, e.g.
  `'rician:k_factor=10,fading=fast'` or `'ofdm:pdp=tdl-a,csi=ls'`.

  Raises:
    ValueError: naming the token, for a malformed spec or unknown field.
  """
  kind, _, rest = spec.partition(":")
  fields = {"kind": kind}
  for token in filter(None, rest.split(",")):
    key, sep, value = token.partition("=")
    if not sep:
      raise ValueError(f"channel spec {spec!r}: {token!r} is not "
                       "FIELD=VALUE.")
    fields[key.strip()] = value.strip()
  return from_config(fields)


def coerce(channel, **legacy) -> Channel:
  """A `Channel` from a `Channel`, a config block, or a kind string plus
  the older keyword fields (`fading`, `equalization`, `power`)."""
  if isinstance(channel, Channel):
    return channel.validate()
  if isinstance(channel, str):
    return from_config(dict(kind=channel, **legacy))
  return from_config(channel)


def transmit(key, latents, snr_db, *, channel="awgn", fading="slow",
             equalization="mmse", power=1.0):
  """Sends real encoder latents over a channel; what the models call.

  pair -> power-normalise -> channel (-> estimate, equalise) -> unpair.

  Args:
    key: PRNG key for the channel realisation.
    latents: real latents `(B, h, w, C)`, `C` even.
    snr_db: SNR in dB, a scalar or one per image `(B,)`.
    channel: a `Channel`, or (the older form) its kind, `'awgn'` or
      `'rayleigh'`, with `fading`, `equalization` and `power` (ignored when
      `channel` is a `Channel`).

  Returns:
    Received (equalised) real latents of the same shape and dtype as
    `latents`; arithmetic runs in at least float32.
  """
  link = coerce(channel, fading=fading, equalization=equalization,
                power=power)
  return link.transmit(key, latents, snr_db)[0]


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
