"""Bit budgets of an ideal channel code: AWGN, slow and fast Rayleigh fading.

The separation baseline's channel code is ideal (the usual upper bound for
separate source and channel coding): it delivers any rate below capacity
without error and nothing above it. An image of `n = H * W * 3` source values
is sent over `k = rho * n` complex channel uses, as for the learned schemes
(`gjscc_jax.channel`), at average SNR `snr = 10^(SNR_dB / 10)`:

* **AWGN.** `C = log2(1 + snr)` bits per channel use; budget
  `floor(k * C)` bits.
* **Fast Rayleigh** (one `h ~ CN(0, 1)` per channel use, coded across many
  fades, CSI at the receiver): the ergodic capacity
  `C = E[log2(1 + |h|^2 snr)] = exp(1/snr) E1(1/snr) / ln 2`,
  with `E1` the exponential integral (`|h|^2 ~ Exp(1)`). Budget
  `floor(k * C)` bits.
* **Slow Rayleigh** (one `h` per image, unknown to the transmitter): the
  image, coded at `b` bits, is received when its realised capacity
  `k log2(1 + |h|^2 snr)` is at least `b`, and lost otherwise (outage), with
  probability `P_out(b) = P(|h|^2 < (2^(b/k) - 1) / snr)
  = 1 - exp(-(2^(b/k) - 1) / snr)`. The rate with outage probability `eps`
  is `R(eps) = k log2(1 + snr * (-ln(1 - eps)))` bits.

Fading realisations are seeded per (seed, image index, SNR), so a rerun, or a
run over more SNRs or realisations, draws the same gains for the same image,
SNR and realisation.
"""

import math

import numpy as np
from scipy import integrate
from scipy import special

from gjscc_jax import channel as channel_lib

#: Outage probabilities whose rates the slow-fading rate choice compares.
OUTAGE_GRID = tuple(float(e) for e in np.geomspace(1e-3, 0.9, 16))


def snr_linear(snr_db):
  """`10^(SNR_dB / 10)`, float or float64 array."""
  return 10.0 ** (np.asarray(snr_db, np.float64) / 10.0)


def channel_uses(image_shape, bcr) -> float:
  """Complex channel uses per image, `k = rho * H * W * 3`.

  Args:
    image_shape: `(H, W, 3)` or `(B, H, W, 3)`.
    bcr: bandwidth ratio `rho` (`'1/192'`, a number or a Fraction).

  Returns:
    `k` as a float (not necessarily an integer: the budget is floored in bits).
  """
  rho = channel_lib.parse_ratio(bcr)
  height, width, channels = image_shape[-3:]
  return float(rho * int(height) * int(width) * int(channels))


def awgn_capacity(snr_db):
  """AWGN capacity `log2(1 + snr)` in bits per complex channel use."""
  return np.log2(1.0 + snr_linear(snr_db))


def _ergodic_quadrature(snr):
  value, _ = integrate.quad(lambda g: np.exp(-g) * np.log2(1.0 + g * snr),
                            0.0, np.inf)
  return value


def ergodic_capacity(snr_db):
  """Rayleigh ergodic capacity `E[log2(1 + |h|^2 snr)]`, bits per channel use.

  Computed in closed form, `exp(1/snr) E1(1/snr) / ln 2`, and by quadrature
  of `int_0^inf e^-g log2(1 + g snr) dg` where `exp(1/snr)` would overflow
  (SNR below about -28 dB).

  Args:
    snr_db: average SNR in dB, a scalar or an array.

  Returns:
    float64, same shape as `snr_db`.
  """
  snr = snr_linear(snr_db)
  flat = np.atleast_1d(snr).astype(np.float64)
  out = np.empty_like(flat)
  for i, s in enumerate(flat):
    x = 1.0 / s
    out[i] = (math.exp(x) * special.exp1(x) / math.log(2.0) if x < 600.0
              else _ergodic_quadrature(s))
  return out.reshape(np.shape(snr)) if np.ndim(snr) else float(out[0])


def outage_probability(bits, k, snr_db):
  """Slow Rayleigh outage probability of `bits` over `k` channel uses.

  `P_out = 1 - exp(-(2^(bits/k) - 1) / snr)`; 0 for `bits <= 0`.

  Args:
    bits: coded bits (scalar or array).
    k: complex channel uses per image.
    snr_db: average SNR in dB.

  Returns:
    float64 probability (array if any input is one).
  """
  bits = np.asarray(bits, np.float64)
  threshold = np.expm1(np.log(2.0) * bits / k) / snr_linear(snr_db)
  return np.where(bits > 0, -np.expm1(-threshold), 0.0)


def rate_for_outage(k, snr_db, outage):
  """Bits `R` with slow-fading outage probability `outage`, floored.

  `R = floor(k log2(1 + snr * (-ln(1 - outage))))`, `0 < outage < 1`.
  """
  if not 0.0 < outage < 1.0:
    raise ValueError(f"The outage probability must lie in (0, 1); got "
                     f"{outage!r}.")
  return int(math.floor(
      k * math.log2(1.0 + float(snr_linear(snr_db)) * -math.log1p(-outage))))


def bit_budget(k, snr_db, channel="awgn", fading="slow", outage=None) -> int:
  """Bits an ideal channel code delivers per image: `floor(k * C)`.

  Args:
    k: complex channel uses per image (`channel_uses`).
    snr_db: average SNR in dB.
    channel: 'awgn' or 'rayleigh'.
    fading: for Rayleigh, 'fast' (ergodic capacity) or 'slow' (needs
      `outage`: the rate at that outage probability, `rate_for_outage`).
    outage: outage probability for slow fading.

  Returns:
    The budget in bits, an int >= 0.

  Raises:
    ValueError: for an unknown channel or fading, or slow fading without an
      outage probability (the rate is then chosen per image instead, by
      `baseline`).
  """
  channel_lib.validate_options(channel, fading)
  if channel == "awgn":
    return int(math.floor(k * float(awgn_capacity(snr_db))))
  if fading == "fast":
    return int(math.floor(k * float(ergodic_capacity(snr_db))))
  if outage is None:
    raise ValueError(
        "Slow Rayleigh fading has no single bit budget: give an outage "
        "probability, or let the baseline choose the rate that maximises the "
        "expected metric (outage=None there).")
  return rate_for_outage(k, snr_db, outage)


def _snr_key(snr_db):
  """A non-negative integer naming an SNR to 1/1000 dB, for seeding."""
  return int(round(float(snr_db) * 1000.0)) + 10**9


def fading_power(seed, index, snr_db, realisations):
  """Slow-fading gains `|h|^2 ~ Exp(1)` of one image at one SNR.

  Realisation `r` is `|h|^2` of the `r`-th complex draw `h ~ CN(0, 1)` of a
  generator seeded with `(seed, index, SNR in millidecibels)`: the same
  numbers on every run, for any list of SNRs and any number of realisations
  (more realisations extend the list, they do not change its start).

  Args:
    seed: non-negative int, the run's seed.
    index: non-negative int, the image's position in its split.
    snr_db: the SNR in dB.
    realisations: number of fading draws.

  Returns:
    float64 array `(realisations,)` of `|h|^2`, `h ~ CN(0, 1)`.
  """
  rng = np.random.default_rng([int(seed), int(index), _snr_key(snr_db)])
  parts = rng.standard_normal((realisations, 2))  # (Re h, Im h) * sqrt(2)
  return 0.5 * np.sum(parts**2, axis=1)


def in_outage(bits, k, snr_db, gains):
  """Whether `k log2(1 + |h|^2 snr) < bits` for each gain `|h|^2`.

  An image that was not sent (`bits == 0`) counts as lost.

  Returns:
    bool array, shape of `gains`.
  """
  gains = np.asarray(gains, np.float64)
  if bits <= 0:
    return np.ones(gains.shape, bool)
  return k * np.log2(1.0 + gains * snr_linear(snr_db)) < bits
