"""Power-delay profiles of multipath channels: exponential, and 3GPP TDL-A/B/C.

A tapped delay line `h(t) = sum_l a_l delta(t - tau_l)` with independent
Rayleigh taps `a_l ~ CN(0, p_l)`, `sum_l p_l = 1` (so `E|H(f)|^2 = 1` at
every frequency). Delays are in samples of the OFDM sampling period.

* `'exponential'`: `taps` taps at delays `0, 1, ..., taps - 1` samples with
  powers `p_l ~ exp(-l / delay_spread)`.
* `'tdl-a'`, `'tdl-b'`, `'tdl-c'`: the NLOS tapped-delay-line models of
  3GPP TR 38.901 (V16.1.0) Tables 7.7.2-1, -2, -3: normalised delays (in
  units of the RMS delay spread) scaled by `delay_spread` samples, and tap
  powers in dB. Each table's normalised RMS delay spread is 1.
"""

import numpy as np

#: TR 38.901 Table 7.7.2-1 (TDL-A): (normalised delay, power in dB).
TDL_A = (
    (0.0000, -13.4), (0.3819, 0.0), (0.4025, -2.2), (0.5868, -4.0),
    (0.4610, -6.0), (0.5375, -8.2), (0.6708, -9.9), (0.5750, -10.5),
    (0.7618, -7.5), (1.5375, -15.9), (1.8978, -6.6), (2.2242, -16.7),
    (2.1718, -12.4), (2.4942, -15.2), (2.5119, -10.8), (3.0582, -11.3),
    (4.0810, -12.7), (4.4579, -16.2), (4.5695, -18.3), (4.7966, -18.9),
    (5.0066, -16.6), (5.3043, -19.9), (9.6586, -29.7))

#: TR 38.901 Table 7.7.2-2 (TDL-B).
TDL_B = (
    (0.0000, 0.0), (0.1072, -2.2), (0.2155, -4.0), (0.2095, -3.2),
    (0.2870, -9.8), (0.2986, -1.2), (0.3752, -3.4), (0.5055, -5.2),
    (0.3681, -7.6), (0.3697, -3.0), (0.5700, -8.9), (0.5283, -9.0),
    (1.1021, -4.8), (1.2756, -5.7), (1.5474, -7.5), (1.7842, -1.9),
    (2.0169, -7.6), (2.8294, -12.2), (3.0219, -9.8), (3.6187, -11.4),
    (4.1067, -14.9), (4.2790, -9.2), (4.7834, -11.3))

#: TR 38.901 Table 7.7.2-3 (TDL-C).
TDL_C = (
    (0.0000, -4.4), (0.2099, -1.2), (0.2219, -3.5), (0.2329, -5.2),
    (0.2176, -2.5), (0.6366, 0.0), (0.6448, -2.2), (0.6560, -3.9),
    (0.6584, -7.4), (0.7935, -7.1), (0.8213, -10.7), (0.9336, -11.1),
    (1.2285, -5.1), (1.3083, -6.8), (2.1704, -8.7), (2.7105, -13.2),
    (4.2589, -13.9), (4.6003, -13.9), (5.4902, -15.8), (5.6077, -17.1),
    (6.3065, -16.0), (6.6374, -15.7), (7.0427, -21.6), (8.6523, -22.8))

TABLES = {"tdl-a": TDL_A, "tdl-b": TDL_B, "tdl-c": TDL_C}
PROFILES = ("exponential",) + tuple(TABLES)


def power_delay_profile(profile="exponential", taps=8, delay_spread=2.0):
  """`(delays, powers)`: float64 arrays `(L,)`, delays in samples, powers
  summing to 1 (module docstring).

  Raises:
    ValueError: naming the field, for an unknown profile or a non-positive
      size.
  """
  if profile not in PROFILES:
    raise ValueError(f"pdp={profile!r} is not supported; use one of "
                     f"{PROFILES}.")
  if delay_spread <= 0:
    raise ValueError(f"delay_spread={delay_spread} must be > 0 samples.")
  if profile == "exponential":
    if taps < 1:
      raise ValueError(f"taps={taps} must be >= 1.")
    delays = np.arange(taps, dtype=np.float64)
    powers = np.exp(-delays / delay_spread)
  else:
    table = np.asarray(TABLES[profile], np.float64)
    delays = table[:, 0] * delay_spread
    powers = 10.0 ** (table[:, 1] / 10.0)
  return delays, powers / powers.sum()


def rms_delay_spread(delays, powers):
  """RMS delay spread `sqrt(sum p tau^2 / sum p - (sum p tau / sum p)^2)`."""
  powers = np.asarray(powers, np.float64) / np.sum(powers)
  mean = np.sum(powers * delays)
  return float(np.sqrt(np.sum(powers * (np.asarray(delays) - mean) ** 2)))
