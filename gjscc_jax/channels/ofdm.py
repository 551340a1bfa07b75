"""OFDM over a tapped-delay-line channel: resource grid, comb pilots, LS/LMMSE
channel estimation, per-subcarrier ZF/MMSE equalisation.

**Resource grid.** An OFDM symbol has `fft_size = N` subcarriers, of which
the `U = subcarriers` in the middle are used (`(N - U) // 2` guard carriers
on the left, the rest on the right; the DC carrier is not nulled).
Used subcarrier `u` carries a pilot when `u % pilot_spacing == 0` (a comb,
the same in every OFDM symbol), data otherwise: `D = U - ceil(U / s)` data
symbols per OFDM symbol. An image's `k` data symbols fill `S = ceil(k / D)`
OFDM symbols in order (OFDM symbol-major, subcarrier-minor; the last one
padded with zeros), each sent as `N + cp` time samples (cyclic prefix `cp`),
so the image costs `S (N + cp)` complex channel uses (`channel_uses`): the
pilots, the guards, the padding and the prefix are all counted.

**Channel.** With the prefix at least the largest tap delay, removing it and
taking the unitary FFT gives per resource element `Y = H X + W`, with
`H[n] = sum_l a_l exp(-2 pi i f_n tau_l)`, `f_n = (n - N // 2) / N` (the
taps of `tdl`), and `W ~ CN(0, sigma^2)`. The module computes this
frequency-domain form directly (exact under the prefix condition, which
`validate` checks). The taps are held over `coherence` OFDM symbols.
Pilots and data have power `P`; the SNR `P / sigma^2` is per resource
element (`E|H|^2 = 1`).

**Estimation** (`csi`): `'perfect'` (the true `H`), `'ls'` (`Y / p` at the
pilots, then linear interpolation across subcarriers with linear
extrapolation at the edges, as Sionna's `LinearInterpolator`; error variance
`sigma^2 / P` at the pilots, interpolated the same way), or `'lmmse'`
(`H_hat = R_up (R_pp + sigma^2 / P I)^-1 H_ls,p` with the frequency
correlation `R[n, m] = sum_l p_l exp(-2 pi i (f_n - f_m) tau_l)` of the
known power-delay profile; error variance the diagonal of
`R_uu - R_up (R_pp + sigma^2 / P I)^-1 R_pu`).

**Equalisation** per data element: `'zf'` `Y / H_hat`, or `'mmse'`
`conj(H_hat) Y / (|H_hat|^2 + e + sigma^2 / P)` with `e` the estimation
error variance (Sionna's LMMSE equaliser times its bias `|H|^2 / (|H|^2 + e
+ sigma^2 / P)`).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from gjscc_jax.channels import fading as fading_lib
from gjscc_jax.channels import tdl

CSI = ("perfect", "ls", "lmmse")


@dataclasses.dataclass(frozen=True)
class Grid:
  """The resource grid (module docstring); static, hashable."""
  fft_size: int = 64
  subcarriers: int = 52
  cyclic_prefix: int = 16
  pilot_spacing: int = 4

  def validate(self):
    if self.fft_size < 2:
      raise ValueError(f"fft_size={self.fft_size} must be >= 2.")
    if not 2 <= self.subcarriers <= self.fft_size:
      raise ValueError(f"subcarriers={self.subcarriers} must lie in [2, "
                       f"fft_size={self.fft_size}].")
    if not 2 <= self.pilot_spacing <= self.subcarriers:
      raise ValueError(f"pilot_spacing={self.pilot_spacing} must lie in [2, "
                       f"subcarriers={self.subcarriers}].")
    if self.cyclic_prefix < 0:
      raise ValueError(f"cyclic_prefix={self.cyclic_prefix} must be >= 0.")

  @property
  def first_used(self):
    return (self.fft_size - self.subcarriers) // 2

  def used(self):
    """FFT bins of the used subcarriers, int array `(U,)`."""
    return np.arange(self.subcarriers) + self.first_used

  def pilots(self):
    """Positions of the pilots among the used subcarriers, `(ceil(U/s),)`."""
    return np.arange(0, self.subcarriers, self.pilot_spacing)

  def data(self):
    """Positions of the data among the used subcarriers, `(D,)`."""
    return np.setdiff1d(np.arange(self.subcarriers), self.pilots())

  @property
  def data_per_symbol(self):
    return self.subcarriers - len(self.pilots())

  def num_ofdm_symbols(self, k):
    return max(1, math.ceil(k / self.data_per_symbol))

  def channel_uses(self, k):
    """Complex channel uses of `k` data symbols: `S (N + cp)`."""
    return self.num_ofdm_symbols(k) * (self.fft_size + self.cyclic_prefix)

  def frequencies(self):
    """Normalised frequencies `(n - N // 2) / N` of the used bins, `(U,)`."""
    return (self.used() - self.fft_size // 2) / self.fft_size


def frequency_response(taps, delays, freqs):
  """`H[..., u] = sum_l taps[..., l] exp(-2 pi i freqs[u] delays[l])`."""
  phase = np.exp(-2j * np.pi * np.outer(delays, freqs))  # (L, U)
  return jnp.einsum("...l,lu->...u", taps, jnp.asarray(phase, taps.dtype))


def frequency_correlation(delays, powers, freqs_a, freqs_b):
  """`R[a, b] = E[H(f_a) conj(H(f_b))] = sum_l p_l e^{-2 pi i (f_a - f_b)
  tau_l}`, complex128 `(len(freqs_a), len(freqs_b))`."""
  diff = np.subtract.outer(freqs_a, freqs_b)
  return np.einsum("l,abl->ab", powers,
                   np.exp(-2j * np.pi * diff[..., None] * delays))


def linear_interpolation(values, positions, size):
  """Linear interpolation of `values[..., p]` given at `positions` (sorted,
  at least 2) onto `0..size-1`, extrapolating linearly beyond the ends from
  the two nearest points (as Sionna's `LinearInterpolator`)."""
  positions = np.asarray(positions)
  grid = np.arange(size)
  left = np.clip(np.searchsorted(positions, grid, side="right") - 1, 0,
                 len(positions) - 2)
  x0, x1 = positions[left], positions[left + 1]
  weight = jnp.asarray((grid - x0) / (x1 - x0), jnp.real(values).dtype)
  v0, v1 = values[..., left], values[..., left + 1]
  return v0 + weight.astype(values.dtype) * (v1 - v0)


def ls_estimate(y_pilots, pilot_value, grid, noise_var):
  """LS estimate on all used subcarriers and its error variance.

  Args:
    y_pilots: received pilots `(..., P)`.
    pilot_value: the transmitted pilot (complex scalar).
    grid: the `Grid`.
    noise_var: `sigma^2`, broadcastable to `(..., 1)`.

  Returns:
    `(h_hat (..., U), err_var (..., U))`.
  """
  h_p = y_pilots / pilot_value
  err_p = jnp.broadcast_to(noise_var / abs(pilot_value) ** 2,
                           y_pilots.shape).astype(jnp.real(h_p).dtype)
  return (linear_interpolation(h_p, grid.pilots(), grid.subcarriers),
          linear_interpolation(err_p, grid.pilots(), grid.subcarriers))


def lmmse_estimate(y_pilots, pilot_value, grid, noise_var, delays, powers):
  """LMMSE estimate from the pilots' LS estimates (module docstring).

  Args:
    y_pilots: received pilots `(B, S, P)`.
    pilot_value: the transmitted pilot (complex scalar).
    grid: the `Grid`.
    noise_var: `sigma^2`, shape `(B, 1)`.
    delays, powers: the power-delay profile the receiver knows.

  Returns:
    `(h_hat (B, S, U), err_var (B, 1, U))`.
  """
  freqs = grid.frequencies()
  pilots = grid.pilots()
  r_uu = frequency_correlation(delays, powers, freqs, freqs)
  r_up = jnp.asarray(r_uu[:, pilots], y_pilots.dtype)
  r_pp = jnp.asarray(r_uu[np.ix_(pilots, pilots)], y_pilots.dtype)
  ratio = (noise_var / abs(pilot_value) ** 2).astype(y_pilots.dtype)  # (B,1)
  eye = jnp.eye(len(pilots), dtype=y_pilots.dtype)
  a = r_pp[None] + ratio[:, :, None] * eye  # (B, P, P)
  # W = R_up A^-1 (A Hermitian): solve A W^H = R_pu.
  w_h = jnp.linalg.solve(a, jnp.broadcast_to(jnp.conj(r_up).T, a.shape[:1] +
                                             r_up.T.shape))  # (B, P, U)
  w = jnp.conj(jnp.swapaxes(w_h, 1, 2))  # (B, U, P)
  h_hat = jnp.einsum("bup,bsp->bsu", w, y_pilots / pilot_value)
  err = jnp.real(jnp.diagonal(jnp.asarray(r_uu, y_pilots.dtype))[None] -
                 jnp.einsum("bup,up->bu", w, jnp.conj(r_up)))
  return h_hat, err[:, None, :]


def equalize(y, h_hat, err_var, noise_var, power, equalization):
  """Per-element ZF or MMSE (module docstring); `y`, `h_hat` same shape."""
  if equalization == "zf":
    return y / h_hat
  denom = jnp.abs(h_hat) ** 2 + err_var + noise_var / power
  return (jnp.conj(h_hat) * y / denom).astype(y.dtype)


def tap_gains(key, batch, num_symbols, coherence, powers, dtype):
  """Rayleigh taps `a_l ~ CN(0, p_l)` held over `coherence` OFDM symbols,
  `(B, S, L)`."""
  blocks = fading_lib.num_blocks(num_symbols, coherence)
  g = fading_lib.complex_normal(key, (batch, blocks, len(powers)), dtype)
  g = g * jnp.sqrt(jnp.asarray(powers, jnp.real(g).dtype)).astype(dtype)
  return jnp.repeat(g, coherence, axis=1,
                    total_repeat_length=blocks * coherence)[:, :num_symbols]


def to_grid(z, grid, pilot_value):
  """Data `(B, k)` -> resource grid `(B, S, U)` with the comb pilots."""
  batch, k = z.shape
  s, d = grid.num_ofdm_symbols(k), grid.data_per_symbol
  data = jnp.pad(z, ((0, 0), (0, s * d - k))).reshape(batch, s, d)
  x = jnp.zeros((batch, s, grid.subcarriers), z.dtype)
  x = x.at[:, :, grid.pilots()].set(jnp.asarray(pilot_value, z.dtype))
  return x.at[:, :, grid.data()].set(data)


def from_grid(x, grid, k):
  """The first `k` data elements of a grid `(B, S, U)`, `(B, k)`."""
  return x[:, :, grid.data()].reshape(x.shape[0], -1)[:, :k]


def validate(grid, delays):
  grid.validate()
  if delays.max() > grid.cyclic_prefix:
    raise ValueError(
        f"The largest tap delay ({delays.max():g} samples) exceeds "
        f"cyclic_prefix={grid.cyclic_prefix}: raise the prefix or lower "
        "delay_spread.")


def link(key, z, noise_var, *, grid, delays, powers, coherence, csi,
         equalization, power):
  """OFDM transmission of the data symbols `z` `(B, k)`, estimation and
  equalisation (module docstring).

  Args:
    key: PRNG key (split for the taps and the noise).
    z: complex data symbols `(B, k)` of average power `power`.
    noise_var: `sigma^2` per image, `(B, 1)`.
    grid: the `Grid`; delays, powers: the power-delay profile.
    coherence: OFDM symbols per channel realisation.
    csi: 'perfect', 'ls' or 'lmmse'.
    equalization: 'zf' or 'mmse'.
    power: the power `P` of data and pilots.

  Returns:
    `(z_hat (B, k), gain (B, k))`: the equalised data symbols and the
    channel estimate the receiver used at each of them.
  """
  batch, k = z.shape
  tap_key, noise_key = jax.random.split(key)
  pilot = math.sqrt(power)
  x = to_grid(z, grid, pilot)
  taps = tap_gains(tap_key, batch, x.shape[1], coherence, powers, z.dtype)
  h = frequency_response(taps, delays, grid.frequencies())
  noise = fading_lib.complex_normal(noise_key, x.shape, z.dtype)
  real = jnp.real(z).dtype
  y = h * x + (jnp.sqrt(noise_var).astype(real)[:, :, None] * noise)
  h_hat, err = estimate(y, h, grid, noise_var, csi, pilot, delays, powers)
  x_hat = equalize(y, h_hat, err, noise_var[:, :, None].astype(real), power,
                   equalization)
  return from_grid(x_hat, grid, k), from_grid(h_hat, grid, k)


def estimate(y, h, grid, noise_var, csi, pilot, delays, powers):
  """`(h_hat, err_var)` on the used subcarriers for `csi` (see `link`)."""
  if csi == "perfect":
    return h, jnp.zeros((), jnp.real(y).dtype)
  y_p = y[:, :, grid.pilots()]
  if csi == "ls":
    return ls_estimate(y_p, pilot, grid, noise_var[:, :, None])
  return lmmse_estimate(y_p, pilot, grid, noise_var, delays, powers)
