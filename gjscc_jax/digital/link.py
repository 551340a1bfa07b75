"""One transport block over 5G LDPC, QAM and the channel, end to end.

Transmitter: payload bits -> CRC and code-block segmentation
(`segmentation`) -> LDPC encoding (`ldpc_encode`) -> rate matching to
`E_r` bits per block and bit interleaving (`rate_matching`) -> Gray QAM
(`qam`) -> `G / Qm` unit-energy complex symbols.

Channel (the project's, `gjscc_jax.channel`): `y = h x + n`,
`n ~ CN(0, sigma^2)`, `sigma^2 = 10^(-SNR/10)`; `h = 1` (AWGN), one `h` per
block (slow Rayleigh; the caller passes `|h|^2`, e.g. the separation
baseline's seeded draws, so both baselines see the same fades) or one
`h ~ CN(0, 1)` per symbol (fast Rayleigh), known at the receiver.

Receiver: equalisation (`channel.equalize`, ZF or MMSE) then, per symbol,
the unbiased estimate `x + n'` with effective noise variance
`sigma^2 / |h|^2` (MMSE's bias `|h|^2 / (|h|^2 + sigma^2)` divided out; for
a scalar channel with known `h` both equalisers then give the same LLRs) ->
soft demapping (`qam.demodulate`, exact or max-log, per-symbol noise) ->
rate recovery (repetitions combined) -> BP decoding (`ldpc_decode`) ->
CRC checks. A block is received when every code-block CRC and the
transport-block CRC match and the bits equal those sent (an undetected
error, which the CRC would miss about once in 2^24, also counts as a loss).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from gjscc_jax import channel as channel_lib
from gjscc_jax.digital import ldpc_decode
from gjscc_jax.digital import ldpc_encode
from gjscc_jax.digital import qam
from gjscc_jax.digital import rate_matching
from gjscc_jax.digital import segmentation


@dataclasses.dataclass(frozen=True)
class Receiver:
  """Receiver settings.

  Attributes:
    algorithm: BP check-node rule (`ldpc_decode.ALGORITHMS`).
    num_iter: most BP iterations (early stop on parity).
    demapping: 'app' (exact) or 'maxlog'.
    equalization: 'mmse' or 'zf' (Rayleigh).
  """
  algorithm: str = "sum-product"
  num_iter: int = 20
  demapping: str = "app"
  equalization: str = "mmse"


def transport_plan(mcs, channel_uses):
  """The transport block an MCS fills in `floor(k)` channel uses, or None
  when not even one payload bit fits.

  Args:
    mcs: an `mcs.MCS`.
    channel_uses: `k`, complex channel uses (floored to whole symbols).
  """
  symbols = int(math.floor(channel_uses))
  coded = symbols * mcs.qm
  payload = segmentation.max_payload(coded, mcs.qm, mcs.rate) if symbols else 0
  if payload < 1:
    return None
  return segmentation.plan(payload, coded, mcs.qm, mcs.rate)


def noise_keys(seed, indices, snrs_db, realisation=0):
  """One PRNG key per transport block, from (seed, image index, SNR in
  millidecibels, realisation): the same draws in every run."""
  base = jax.random.key(int(seed))
  keys = [jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(
      jax.random.fold_in(base, int(i)), int(round(float(s) * 1000)) + 10**9),
      int(r)), 0) for i, s, r in zip(
          indices, snrs_db, np.broadcast_to(realisation, len(indices)))]
  return jnp.stack(keys)


@jax.jit
def _complex_noise(keys, like):
  return jax.vmap(lambda k: channel_lib.complex_normal(
      jax.random.fold_in(k, 1), like.shape[1:]))(keys)


@jax.jit
def _complex_gains(keys, like):
  return jax.vmap(lambda k: channel_lib.complex_normal(
      jax.random.fold_in(k, 2), like.shape[1:]))(keys)


def through_channel(keys, x, snr_db, channel="awgn", fading="slow",
                    gains=None, equalization="mmse"):
  """Sends symbols over the channel and equalises them.

  Args:
    keys: PRNG keys `(N,)`, one per block (`noise_keys`).
    x: complex64 `(N, S)` symbols.
    snr_db: `(N,)` SNR in dB.
    channel: 'awgn' or 'rayleigh'.
    fading: 'slow' (needs `gains`) or 'fast'.
    gains: slow fading: `|h|^2` per block, `(N,)`.
    equalization: 'mmse' or 'zf'.

  Returns:
    `(x_hat, noise_var)`: the unbiased estimates `(N, S)` and their
    per-symbol noise variance `sigma^2 / |h|^2` `(N, S)`.
  """
  channel_lib.validate_options(channel, fading, equalization)
  sigma2 = (10.0 ** (-np.asarray(snr_db, np.float64) / 10.0)).astype(
      np.float32)[:, None]
  noise = _complex_noise(keys, x) * jnp.sqrt(sigma2)
  if channel == "awgn":
    return x + noise, jnp.broadcast_to(sigma2, x.shape)
  if fading == "slow":
    if gains is None:
      raise ValueError("Slow fading needs the |h|^2 of each block (gains=).")
    h = jnp.sqrt(jnp.asarray(gains, jnp.float32))[:, None].astype(
        jnp.complex64) * jnp.ones_like(x)
  else:
    h = _complex_gains(keys, x)
  y = h * x + noise
  z = channel_lib.equalize(y, h, sigma2, 1.0, equalization)
  power = jnp.abs(h) ** 2
  if equalization == "mmse":
    z = z * ((power + sigma2) / power)
  return z, sigma2 / power


def simulate(plan, payload, snr_db, keys, *, channel="awgn", fading="slow",
             gains=None, receiver=Receiver()):
  """Sends transport blocks over the link and decodes them.

  Args:
    plan: the `segmentation.TransportPlan` (from `transport_plan`).
    payload: `(N, A)` payload bits, `A = plan.payload`.
    snr_db: `(N,)` SNR in dB per block.
    keys: `(N,)` PRNG keys (`noise_keys`).
    channel, fading, gains: the channel (`through_channel`).
    receiver: a `Receiver`.

  Returns:
    `(decoded, received)`: int8 `(N, A)` decoded payload and bool `(N,)`
    whether the block arrived (CRCs match and the bits are those sent).
  """
  payload = np.asarray(payload, np.int8)
  code, qm = plan.code, plan.qm
  blocks = segmentation.segment(plan, payload)  # (N, C, K')
  codewords = ldpc_encode.encode(code, blocks)  # (N, C, N_ldpc)
  sent = jnp.concatenate([
      rate_matching.rate_match(code, codewords[:, r], e, qm)
      for r, e in enumerate(plan.e)], axis=-1)
  x = qam.modulate(sent, qm)
  x_hat, noise_var = through_channel(
      keys, x, np.broadcast_to(np.asarray(snr_db, np.float64), (len(payload),)),
      channel, fading, gains, receiver.equalization)
  llr = qam.demodulate(x_hat, noise_var, qm, receiver.demapping)
  bounds = np.cumsum((0,) + plan.e)
  full = jnp.stack([
      rate_matching.rate_recover(code, llr[:, bounds[r]:bounds[r + 1]], qm)
      for r in range(plan.num_blocks)], axis=1)  # (N, C, N_ldpc)
  bits, _, _ = ldpc_decode.decode(
      code, full, e=max(plan.e), num_iter=receiver.num_iter,
      algorithm=receiver.algorithm)
  decoded, ok = segmentation.desegment(plan, np.asarray(bits))
  return decoded, ok & np.all(decoded == payload, axis=-1)
