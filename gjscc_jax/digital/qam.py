"""Gray-mapped QAM (TS 38.211 5.1) and soft demapping to LLRs.

Bits `b_0 .. b_{Qm-1}` map to one complex symbol of unit average energy:

* BPSK (`Qm = 1`): `(1 - 2 b_0)(1 + j) / sqrt(2)`;
* `Qm = 2m` (QPSK, 16-, 64-, 256-QAM): the even bits give the in-phase and
  the odd bits the quadrature amplitude, each a Gray-coded PAM level
  `(1 - 2 b_0)(2^(m-1) - (1 - 2 b_2)(2^(m-2) - (1 - 2 b_4)(...)))`,
  scaled by `1 / sqrt(2 (4^m - 1) / 3)` (`sqrt(2)`, `sqrt(10)`, `sqrt(42)`,
  `sqrt(170)`).

Demapping gives, for `y = x + n` with `n ~ CN(0, N0)` (after equalisation,
per-symbol `N0`), the log-likelihood ratio of each bit
`LLR_i = log sum_{x: b_i = 0} exp(-|y - x|^2 / N0)
       - log sum_{x: b_i = 1} exp(-|y - x|^2 / N0)`
('app', exact), or with each sum replaced by its largest term ('maxlog').
Positive LLRs favour 0. (Sionna's demapper returns `log p(1) / p(0)`,
the negative.)
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

#: Modulation names and their bits per symbol.
MODULATIONS = {"bpsk": 1, "qpsk": 2, "16qam": 4, "64qam": 6, "256qam": 8}
DEMAPPINGS = ("app", "maxlog")


def bits_per_symbol(modulation) -> int:
  """`Qm` of a modulation name (or an int `Qm`, returned as is)."""
  if isinstance(modulation, (int, np.integer)):
    if int(modulation) not in MODULATIONS.values():
      raise ValueError(f"Qm={modulation} is not a 38.211 modulation; use one "
                       f"of {sorted(MODULATIONS.values())}.")
    return int(modulation)
  if modulation not in MODULATIONS:
    raise ValueError(f"modulation={modulation!r}: use one of "
                     f"{', '.join(MODULATIONS)}.")
  return MODULATIONS[modulation]


def _pam(bits):
  """Gray PAM level of bit columns `(..., m)` (first bit = sign)."""
  m = bits.shape[-1]
  level = np.ones(bits.shape[:-1])
  for i in range(m - 1, 0, -1):
    level = 2.0**(m - i) - (1 - 2 * bits[..., i]) * level
  return (1 - 2 * bits[..., 0]) * level if m > 1 else 1 - 2.0 * bits[..., 0]


@functools.lru_cache(maxsize=None)
def constellation(qm: int) -> np.ndarray:
  """The `2^Qm` points, complex128, point `i` labelled by the bits of `i`
  (most significant first: `b_0` is the top bit)."""
  qm = bits_per_symbol(qm)
  labels = (np.arange(2**qm)[:, None] >> np.arange(qm - 1, -1, -1)) & 1
  if qm == 1:
    return (1 - 2 * labels[:, 0]) * (1 + 1j) / np.sqrt(2)
  m = qm // 2
  scale = np.sqrt(2 * (4**m - 1) / 3)
  return (_pam(labels[:, 0::2]) + 1j * _pam(labels[:, 1::2])) / scale


def _labels(qm):
  return (np.arange(2**qm)[:, None] >> np.arange(qm - 1, -1, -1)) & 1


@functools.partial(jax.jit, static_argnums=1)
def modulate(bits, qm: int):
  """Bits `(..., N Qm)` to complex64 symbols `(..., N)`."""
  qm = bits_per_symbol(qm)
  bits = jnp.asarray(bits).astype(jnp.int32)
  groups = bits.reshape(bits.shape[:-1] + (-1, qm))
  index = jnp.sum(groups << jnp.arange(qm - 1, -1, -1), axis=-1)
  return jnp.asarray(constellation(qm), jnp.complex64)[index]


@functools.partial(jax.jit, static_argnames=("qm", "method"))
def demodulate(y, noise_var, qm: int, method: str = "app"):
  """Bit LLRs `log p(b=0|y) / p(b=1|y)` of received symbols.

  Args:
    y: complex `(..., N)` symbols, `y = x + n`.
    noise_var: `N0`, broadcastable to `y` (per-symbol after equalisation).
    qm: bits per symbol.
    method: 'app' (log-sum-exp) or 'maxlog'.

  Returns:
    float32 `(..., N Qm)`, bit `b_i` of symbol `t` at `t Qm + i`.
  """
  if method not in DEMAPPINGS:
    raise ValueError(f"method={method!r}: use one of {DEMAPPINGS}.")
  points = jnp.asarray(constellation(qm), jnp.complex64)
  y = jnp.asarray(y, jnp.complex64)
  n0 = jnp.broadcast_to(jnp.asarray(noise_var, jnp.float32), y.shape)
  metric = -jnp.abs(y[..., None] - points) ** 2 / n0[..., None]
  labels = _labels(qm)
  zero = np.stack([np.nonzero(labels[:, i] == 0)[0] for i in range(qm)])
  one = np.stack([np.nonzero(labels[:, i] == 1)[0] for i in range(qm)])
  m0 = metric[..., zero]  # (..., N, Qm, M/2)
  m1 = metric[..., one]
  if method == "app":
    llr = jax.nn.logsumexp(m0, axis=-1) - jax.nn.logsumexp(m1, axis=-1)
  else:
    llr = jnp.max(m0, axis=-1) - jnp.max(m1, axis=-1)
  return llr.reshape(llr.shape[:-2] + (-1,))
