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

* **Rician** (K-factor `K`, `E|h|^2 = 1`): `2 (K + 1) |h|^2` is non-central
  chi-square (2 degrees of freedom, non-centrality `2 K`), so the slow-fading
  outage is `P(|h|^2 < x) = 1 - Q_1(sqrt(2 K), sqrt(2 (K + 1) x))` (Marcum
  Q); the ergodic capacity is `E[log2(1 + |h|^2 snr)]` by quadrature.
* **Block fading** (`fading='block'`, `L` symbols per gain): the image sees
  `ceil(k / L)` independent gains; its realised capacity is their mean
  `log2(1 + |h_b|^2 snr)`, and the outage law is estimated from seeded draws.
* **OFDM**: per data subcarrier `log2(1 + |H_n|^2 snr)`, averaged over the
  data elements and scaled by the data share of the channel uses
  `D / (N + cp)` (pilots, guards and prefixes carry no payload). Every
  `H_n ~ CN(0, 1)`, so the ergodic value is the Rayleigh one times that
  share.

The entry of a channel is `CAPACITIES[channel.kind]` (one per kind of
`gjscc_jax.channel.KINDS`). Fading realisations are seeded per (seed, image
index, SNR), so a rerun, or a run over more SNRs or realisations, draws the
same gains for the same image, SNR and realisation.
"""

import dataclasses
import math
from typing import Callable, Optional

import numpy as np
from scipy import integrate
from scipy import special
from scipy import stats

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


def rate_for_outage(k, snr_db, outage, channel=None):
  """Bits `R` with slow-fading outage probability `outage`, floored.

  Rayleigh (`channel` None or Rayleigh slow): `R = floor(k log2(1 + snr *
  (-ln(1 - outage))))`; Rician: the same with the `outage`-quantile of
  `|h|^2`; block fading and OFDM: the `outage`-quantile of the realised
  capacity of seeded draws. `0 < outage < 1`.
  """
  if not 0.0 < outage < 1.0:
    raise ValueError(f"The outage probability must lie in (0, 1); got "
                     f"{outage!r}.")
  if channel is None or (channel.kind == "rayleigh" and
                         channel.fading == "slow"):
    quantile = -math.log1p(-outage)
  elif channel.kind == "rician" and channel.fading == "slow":
    quantile = rician_gain_ppf(outage, channel.k_factor)
  else:
    law = _law(channel, k, snr_db)
    return int(math.floor(k * law[int(outage * len(law))]))
  return int(math.floor(
      k * math.log2(1.0 + float(snr_linear(snr_db)) * quantile)))


def link_of(channel="awgn", fading="slow"):
  """A `Channel` from a `Channel` or the older (kind, fading) strings."""
  return channel_lib.coerce(channel, fading=fading)


def is_random(channel) -> bool:
  """Whether an image's realised capacity is random (slow or block fading:
  coded at a rate, lost in outage) rather than its ergodic value."""
  return channel.kind != "awgn" and channel.fading != "fast"


def bit_budget(k, snr_db, channel="awgn", fading="slow", outage=None) -> int:
  """Bits an ideal channel code delivers per image: `floor(k * C)`.

  Args:
    k: complex channel uses per image (`channel_uses`).
    snr_db: average SNR in dB.
    channel: a `gjscc_jax.channel.Channel`, or (the older form) 'awgn' or
      'rayleigh' with `fading`.
    fading: the older form's fading, 'slow' or 'fast'.
    outage: outage probability for slow and block fading (the rate at that
      outage probability, `rate_for_outage`).

  Returns:
    The budget in bits, an int >= 0.

  Raises:
    ValueError: for an unknown channel or fading, or slow fading without an
      outage probability (the rate is then chosen per image instead, by
      `baseline`).
  """
  link = link_of(channel, fading)
  if not is_random(link):
    return int(math.floor(k * float(ergodic(link, snr_db))))
  if outage is None:
    raise ValueError(
        f"{link.name}: slow fading has no single bit budget: give an outage "
        "probability, or let the baseline choose the rate that maximises the "
        "expected metric (outage=None there).")
  return rate_for_outage(k, snr_db, outage, link)


# --- Per kind: ergodic capacity, realised capacity draws, outage law ---------


def rician_gain_cdf(x, k_factor):
  """`P(|h|^2 < x)` of a unit-power Rician gain: the Marcum-Q form
  `1 - Q_1(sqrt(2K), sqrt(2 (K + 1) x))`, via the non-central chi-square."""
  return stats.ncx2.cdf(2.0 * (k_factor + 1.0) * np.asarray(x, np.float64),
                        2, 2.0 * k_factor)


def rician_gain_ppf(q, k_factor):
  """The `q`-quantile of `|h|^2` (inverse of `rician_gain_cdf`)."""
  if k_factor == 0:
    return -math.log1p(-q)
  return float(stats.ncx2.ppf(q, 2, 2.0 * k_factor)) / (2.0 * (k_factor + 1.0))


def rician_ergodic(snr_db, k_factor):
  """`E[log2(1 + |h|^2 snr)]` for a unit-power Rician gain, by quadrature."""
  if k_factor == 0:
    return ergodic_capacity(snr_db)
  snr = float(snr_linear(snr_db))
  scale = 2.0 * (k_factor + 1.0)
  pdf = lambda g: scale * stats.ncx2.pdf(scale * g, 2, 2.0 * k_factor)
  value, _ = integrate.quad(lambda g: pdf(g) * np.log2(1.0 + g * snr), 0.0,
                            np.inf, limit=200)
  return value


def _flat_pieces(link, k):
  return max(1, math.ceil(k / link.coherence_length(int(math.ceil(k)))))


def _flat_draws(link, rng, realisations, k):
  """`|h|^2` of the image's independent gains, `(realisations, pieces)`."""
  pieces = _flat_pieces(link, k)
  parts = rng.standard_normal((realisations, pieces, 2))
  kf = link.k_factor if link.kind == "rician" else 0.0
  h = (math.sqrt(kf / (kf + 1.0)) + math.sqrt(0.5 / (kf + 1.0)) *
       (parts[..., 0] + 1j * parts[..., 1]))
  return np.abs(h) ** 2


def _ofdm_share(link):
  grid = link.grid
  return grid.data_per_symbol / (grid.fft_size + grid.cyclic_prefix)


def _ofdm_draws(link, rng, realisations, k):
  """`|H_n|^2` at the data subcarriers of the image's independent channel
  realisations, `(realisations, blocks * D)`."""
  grid = link.grid
  delays, powers = link.profile()
  symbols = grid.num_ofdm_symbols(int(k * _ofdm_share(link)))
  blocks = max(1, math.ceil(symbols / link.coherence_length(symbols)))
  parts = rng.standard_normal((realisations, blocks, len(powers), 2))
  taps = np.sqrt(powers / 2.0) * (parts[..., 0] + 1j * parts[..., 1])
  phase = np.exp(-2j * np.pi * np.outer(delays, grid.frequencies()))
  h = (taps @ phase)[..., grid.data()]
  return np.abs(h.reshape(realisations, -1)) ** 2


@dataclasses.dataclass(frozen=True)
class Capacity:
  """An ideal code's view of a channel kind.

  Attributes:
    ergodic: `(channel, snr_db) -> C` bits per channel use when coding over
      many realisations (fast fading).
    draws: `(channel, rng, realisations, k) -> (R, m)` float64 gains
      `|h|^2` of the `m` equally weighted pieces of one image (None: the
      capacity is deterministic).
    share: `channel -> ` the fraction of channel uses carrying payload.
    outage: optional closed-form `(channel, bits, k, snr_db) -> P_out` for
      slow fading (else estimated from `draws`).
  """
  ergodic: Callable
  draws: Optional[Callable] = None
  share: Callable = lambda channel: 1.0
  outage: Optional[Callable] = None


def _rayleigh_slow_outage(link, bits, k, snr_db):
  return outage_probability(bits, k, snr_db)


def _rician_slow_outage(link, bits, k, snr_db):
  bits = np.asarray(bits, np.float64)
  threshold = np.expm1(np.log(2.0) * bits / k) / snr_linear(snr_db)
  return np.where(bits > 0, rician_gain_cdf(threshold, link.k_factor), 0.0)


#: kind -> its `Capacity`; one entry per kind of `gjscc_jax.channel.KINDS`.
CAPACITIES = {
    "awgn": Capacity(lambda ch, snr: float(awgn_capacity(snr))),
    "rayleigh": Capacity(lambda ch, snr: float(ergodic_capacity(snr)),
                         _flat_draws, outage=_rayleigh_slow_outage),
    "rician": Capacity(lambda ch, snr: rician_ergodic(snr, ch.k_factor),
                       _flat_draws, outage=_rician_slow_outage),
    "ofdm": Capacity(
        lambda ch, snr: _ofdm_share(ch) * float(ergodic_capacity(snr)),
        _ofdm_draws, share=_ofdm_share),
}

#: Seeded draws that estimate outage laws without a closed form.
_LAW_DRAWS = 4000


def capacity_entry(channel) -> Capacity:
  if channel.kind not in CAPACITIES:
    raise ValueError(f"channel kind {channel.kind!r} has no capacity entry: "
                     "add one to gjscc_jax.separation.capacity.CAPACITIES.")
  return CAPACITIES[channel.kind]


def ergodic(channel, snr_db) -> float:
  """Ergodic capacity of `channel`, bits per channel use."""
  return capacity_entry(channel).ergodic(channel, snr_db)


def _closed_form_outage(channel):
  entry = capacity_entry(channel)
  return entry.outage if channel.fading == "slow" else None


def realised_capacity(channel, gains, snr_db):
  """Bits per channel use of draws `gains` `(R, m)`: the payload share
  times the mean of `log2(1 + g snr)` over the pieces, `(R,)`."""
  share = capacity_entry(channel).share(channel)
  return share * np.mean(np.log2(1.0 + np.asarray(gains) *
                                 snr_linear(snr_db)), axis=-1)


def _law(channel, k, snr_db):
  rng = np.random.default_rng([12345, _snr_key(snr_db)])
  gains = capacity_entry(channel).draws(channel, rng, _LAW_DRAWS, k)
  return np.sort(realised_capacity(channel, gains, snr_db))


def outage_of(channel, bits, k, snr_db):
  """Outage probability of `bits` over `k` channel uses of `channel`
  (slow or block fading): closed form where `CAPACITIES` has one, else
  the fraction of seeded draws whose realised capacity is short."""
  closed = _closed_form_outage(channel)
  if closed is not None:
    return closed(channel, bits, k, snr_db)
  law = _law(channel, k, snr_db)
  bits = np.asarray(bits, np.float64)
  p = np.searchsorted(law * k, bits, side="left") / len(law)
  return np.where(bits > 0, p, 0.0)


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


def realised_draws(channel, seed, index, snr_db, realisations, k):
  """The image's seeded gain draws `(realisations, m)` (see `Capacity`);
  for slow Rayleigh `fading_power` as `(realisations, 1)`."""
  if channel.kind == "rayleigh" and channel.fading == "slow":
    return fading_power(seed, index, snr_db, realisations)[:, None]
  rng = np.random.default_rng([int(seed), int(index), _snr_key(snr_db)])
  return capacity_entry(channel).draws(channel, rng, realisations, k)


def in_outage_of(channel, bits, k, snr_db, gains):
  """Whether each draw's realised capacity `k C` is below `bits`, `(R,)`;
  an image not sent (`bits == 0`) counts as lost."""
  gains = np.asarray(gains, np.float64)
  if bits <= 0:
    return np.ones(gains.shape[:1], bool)
  return k * realised_capacity(channel, gains, snr_db) < bits


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
