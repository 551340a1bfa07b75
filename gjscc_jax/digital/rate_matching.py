"""5G LDPC rate matching and recovery (TS 38.212 5.4.2), with repetition.

Bit selection (5.4.2.1): the circular buffer is the codeword without its
first `2 Z` bits, `d_j = c_{2Z + j}`, of length `N_cb = 66 Z` or `50 Z`
(no limited buffer, `I_LBRM = 0`). The `E` sent bits are read from position
`k0` (redundancy version 0: `k0 = 0`) cyclically, skipping the filler
positions (`K' - 2Z <= j < K - 2Z`):

    e_k = d_{(k0 + j) mod N_cb},  j = 0, 1, ...,  skipping fillers,

so when `E` exceeds the `N_cb - (K - K')` bits of the buffer the reading
wraps around and repeats it: code rates below the mother rate (1/5 for base
graph 2, 1/3 for base graph 1) are the mother code plus repetition. Bit
interleaving (5.4.2.2) then writes `e` row-wise into `Qm` rows and reads it
column-wise: `f_{i + j Qm} = e_{i E/Qm + j}`.

Recovery sums the LLRs of every copy of a position (repetition combining),
gives the never-sent positions (the first `2 Z` and those beyond `E`) LLR 0
and the filler positions a large positive LLR (known zeros).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gjscc_jax.digital import basegraph

#: Redundancy-version start fractions of N_cb (Table 5.4.2.1-2), per graph.
_RV_NUMERATORS = {1: (0, 17, 33, 56), 2: (0, 13, 25, 43)}
_RV_DENOMINATORS = {1: 66, 2: 50}


def start_position(code: basegraph.LDPCCode, rv: int = 0) -> int:
  """`k0` of redundancy version `rv`: `floor(num N_cb / (den Z)) Z`."""
  num = _RV_NUMERATORS[code.bg][rv]
  return (num * code.n_cb // (_RV_DENOMINATORS[code.bg] * code.z)) * code.z


@functools.lru_cache(maxsize=None)
def selection(code: basegraph.LDPCCode, e: int, rv: int = 0) -> np.ndarray:
  """Codeword positions of the `E` rate-matched bits, before interleaving.

  Returns:
    int64 `(E,)` indices into the full `N_ldpc` codeword (`ldpc_encode`).
  """
  if e < 1:
    raise ValueError(f"E={e}: rate matching needs at least one output bit.")
  z, n_cb = code.z, code.n_cb
  order = (start_position(code, rv) + np.arange(n_cb)) % n_cb
  filler = (order >= code.k - 2 * z) & (order < code.k_ldpc - 2 * z)
  order = order[~filler]
  return 2 * z + order[np.arange(e) % order.size]


@functools.partial(jax.jit, static_argnums=1)
def interleave(e_bits, qm: int):
  """Bit interleaving: `f_{i + j Qm} = e_{i E/Qm + j}` on the last axis."""
  length = e_bits.shape[-1]
  if length % qm:
    raise ValueError(f"E={length} is not a multiple of Qm={qm}.")
  lead = e_bits.shape[:-1]
  x = e_bits.reshape(lead + (qm, length // qm))
  return jnp.swapaxes(x, -1, -2).reshape(lead + (length,))


@functools.partial(jax.jit, static_argnums=1)
def deinterleave(f_bits, qm: int):
  """Inverse of `interleave`."""
  length = f_bits.shape[-1]
  lead = f_bits.shape[:-1]
  x = f_bits.reshape(lead + (length // qm, qm))
  return jnp.swapaxes(x, -1, -2).reshape(lead + (length,))


@functools.partial(jax.jit, static_argnames=("code", "e", "qm", "rv"))
def rate_match(code: basegraph.LDPCCode, codeword, e: int, qm: int, rv=0):
  """Selects and interleaves the `E` sent bits of full codewords.

  Args:
    code: the code (static).
    codeword: `(..., N_ldpc)` from `ldpc_encode.encode`.
    e: output length `E` (a multiple of `qm`); any `E >= 1`, repetition
      when it exceeds the buffer.
    qm: bits per modulation symbol (1 disables interleaving in effect).
    rv: redundancy version 0..3.

  Returns:
    `(..., E)`, the codeword's dtype.
  """
  sel = jnp.asarray(selection(code, e, rv))
  return interleave(jnp.take(codeword, sel, axis=-1), qm)


@functools.partial(jax.jit, static_argnames=("code", "qm", "rv", "filler_llr"))
def rate_recover(code: basegraph.LDPCCode, llr, qm: int, rv=0,
                 filler_llr=20.0):
  """LLRs of the full codeword from the `E` received LLRs.

  Args:
    code: the code (static).
    llr: `(..., E)` channel LLRs `log p(0) / p(1)` in interleaved order.
    qm: bits per modulation symbol used by `rate_match`.
    rv: redundancy version.
    filler_llr: LLR given to the filler positions (known zeros).

  Returns:
    float32 `(..., N_ldpc)`: repeated positions summed, unsent ones 0.
  """
  e = llr.shape[-1]
  sel = jnp.asarray(selection(code, e, rv))
  llr = deinterleave(jnp.asarray(llr, jnp.float32), qm)
  out = jnp.zeros(llr.shape[:-1] + (code.n_ldpc,), jnp.float32)
  out = out.at[..., sel].add(llr)
  return out.at[..., code.k:code.k_ldpc].set(filler_llr)


def covered_columns(code: basegraph.LDPCCode, e: int, rv: int = 0) -> int:
  """Base columns up to the last one any of the `E` bits reads (at least
  the systematic and core columns): the decoder may drop the rest."""
  last = int(selection(code, e, rv).max()) // code.z + 1
  return max(last, code.kb + basegraph.CORE_ROWS)
