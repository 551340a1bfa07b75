"""Finite-blocklength normal approximation for the complex AWGN channel.

Polyanskiy, Poor and Verdu (IEEE Trans. IT 2010): the largest number of
bits `k*` that `n` uses of a channel carry with block error probability
`eps` is, to within `O(1)` bits,

    k*(n, eps) ~= n C - sqrt(n V) Q^-1(eps) + log2(n) / 2,

with capacity `C` and dispersion `V`. For the complex AWGN channel at SNR
`s` (two real uses per complex one), `C = log2(1 + s)` bits and
`V = s (s + 2) / (s + 1)^2 log2(e)^2` bits^2 per complex use. Inverting,
a code of `k` bits over `n` complex uses has error probability about
`eps ~= Q((n C - k + log2(n) / 2) / sqrt(n V))`. It is an approximation,
not a bound, but tight at the block lengths used here (hundreds of
symbols): a good practical code sits to its right (more SNR for the same
error probability), capacity to its left.
"""

import numpy as np
from scipy import special


def capacity(snr_db):
  """`log2(1 + s)`, bits per complex channel use."""
  return np.log2(1.0 + 10.0 ** (np.asarray(snr_db, np.float64) / 10.0))


def dispersion(snr_db):
  """`V = s (s + 2) / (s + 1)^2 log2(e)^2`, bits^2 per complex use."""
  s = 10.0 ** (np.asarray(snr_db, np.float64) / 10.0)
  return s * (s + 2.0) / (s + 1.0) ** 2 * np.log2(np.e) ** 2


def max_bits(n, snr_db, eps):
  """`k*(n, eps)`: bits `n` complex uses carry at error probability `eps`."""
  n = np.asarray(n, np.float64)
  q_inv = -special.ndtri(np.asarray(eps, np.float64))  # Q^-1(eps)
  return (n * capacity(snr_db) - np.sqrt(n * dispersion(snr_db)) * q_inv
          + 0.5 * np.log2(n))


def error_probability(bits, n, snr_db):
  """Block error probability of `bits` bits over `n` complex uses."""
  n = np.asarray(n, np.float64)
  margin = n * capacity(snr_db) - np.asarray(bits, np.float64) + 0.5 * np.log2(n)
  return special.ndtr(-margin / np.sqrt(n * dispersion(snr_db)))


def snr_for(bits, n, eps, low=-30.0, high=40.0):
  """SNR in dB at which `bits` over `n` uses reach error probability `eps`
  (bisection of `error_probability`, which falls with the SNR)."""
  for _ in range(100):
    mid = 0.5 * (low + high)
    if error_probability(bits, n, mid) > eps:
      low = mid
    else:
      high = mid
  return 0.5 * (low + high)
