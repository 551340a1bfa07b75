"""Systematic 5G LDPC encoding (TS 38.212 5.3.2), in JAX.

The lifted parity-check matrix of either base graph has the form

    H = [ A  B  0 ]   4 Z rows: information columns A, core parity B
        [ C1 C2 I ]   extension rows: one identity per extension parity

over the codeword `c = (s, p_core, p_ext)` with `s` the `K` systematic bits
(information then fillers). `H c = 0` is solved without inverting `B`: its
first column holds three circulants, two with one shift `a` and one with
another shift `b`, and its other three columns are double-diagonal identity
blocks. Summing the four core rows cancels the identities and two of the
three shifted blocks, leaving `P^b p_0 = sum_r lambda_r` with
`lambda = A s`, so `p_0 = P^-b sum_r lambda_r`; each core row then has one
unknown identity block left, solved in turn. The extension parities are
`p_ext = C1 s + C2 p_core`. Every product with a circulant `P^V` is a cyclic
shift (`(P^V x)_i = x_{(i + V) mod Z}`), so the encoder is gathers, sums and
XORs, jit- and vmap-able, on any batch shape.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gjscc_jax.digital import basegraph


def _shift(x, v, z):
  """`P^v x` on the last axis (`(P^v x)_i = x_{(i + v) mod Z}`)."""
  return jnp.roll(x, -(int(v) % z), axis=-1)


@functools.lru_cache(maxsize=None)
def _plan(code: basegraph.LDPCCode):
  """Static index arrays and the core solve order of `code`."""
  bm = code.base_matrix()
  kb, z = code.kb, code.z
  core = list(range(kb, kb + basegraph.CORE_ROWS))
  # Row sums of lambda = A s (rows 0..3) and of C1 s + C2 p (rows 4..).
  row_a, _, var_a = basegraph.lifted_edges(code, basegraph.CORE_ROWS, kb)
  row_c, _, var_c = basegraph.lifted_edges(code, None, kb + len(core))
  keep = row_c >= basegraph.CORE_ROWS
  row_c, var_c = row_c[keep] - basegraph.CORE_ROWS, var_c[keep]
  # The first core column: two equal shifts and one odd one out.
  first = [(r, bm[r, kb]) for r in range(basegraph.CORE_ROWS) if bm[r, kb] >= 0]
  shifts = [v % z for _, v in first]
  odd = [v for v in shifts if shifts.count(v) == 1]
  if len(first) != 3 or len(odd) != 1:
    raise ValueError(f"Base graph {code.bg} iLS={code.i_ls} Z={z}: the first "
                     f"core column is not of the 5G form ({first}).")
  for r in range(basegraph.CORE_ROWS):
    for c in core[1:]:
      if bm[r, c] not in (-1, 0):
        raise ValueError("The double-diagonal core blocks must be identities.")
  # Order the core rows so that each has one unknown column left.
  known, order = {core[0]}, []
  while len(known) < len(core):
    for r in range(basegraph.CORE_ROWS):
      unknown = [c for c in core if bm[r, c] >= 0 and c not in known]
      if len(unknown) == 1:
        order.append((r, unknown[0]))
        known.add(unknown[0])
        break
    else:
      raise ValueError("The core parity rows cannot be solved in turn.")
  order = [(r, u, [(c, int(bm[r, c])) for c in core
                   if bm[r, c] >= 0 and c != u]) for r, u in order]
  return dict(row_a=row_a, var_a=var_a, row_c=row_c, var_c=var_c,
              odd=int(odd[0]), order=order,
              num_ext=code.num_rows - basegraph.CORE_ROWS)


def _row_sums(x_flat, var, row, num_rows):
  """XOR over the edges of each row: `(..., num_rows, Z)` bits."""
  vals = jnp.take(x_flat, jnp.asarray(var), axis=-1)  # (..., E, Z)
  onehot = jax.nn.one_hot(jnp.asarray(row), num_rows, dtype=jnp.int32)
  sums = jnp.einsum("...ez,er->...rz", vals.astype(jnp.int32), onehot)
  return sums % 2


@functools.partial(jax.jit, static_argnums=0)
def encode(code: basegraph.LDPCCode, bits):
  """Encodes information bits into a full 5G LDPC codeword.

  Args:
    code: the `basegraph.LDPCCode` (static).
    bits: `(..., K')` information bits in {0, 1}, any integer or float dtype.

  Returns:
    int32 `(..., N_ldpc)` codeword `(s, p_core, p_ext)` with `N_ldpc = 68 Z`
    or `52 Z`, including the first `2 Z` systematic bits and the `K - K'`
    filler positions (zeros); `rate_matching` selects what is sent.
  """
  plan = _plan(code)
  z, kb = code.z, code.kb
  bits = jnp.asarray(bits).astype(jnp.int32)
  batch = bits.shape[:-1]
  s = jnp.concatenate(
      [bits, jnp.zeros(batch + (code.fillers,), jnp.int32)], axis=-1)
  lam = _row_sums(s, plan["var_a"], plan["row_a"], basegraph.CORE_ROWS)
  parity = {kb: jnp.roll(jnp.sum(lam, axis=-2) % 2, plan["odd"], axis=-1)}
  for r, unknown, others in plan["order"]:
    acc = lam[..., r, :]
    for c, v in others:
      acc = acc + _shift(parity[c], v, z)
    parity[unknown] = acc % 2
  core = jnp.concatenate([parity[kb + i] for i in range(basegraph.CORE_ROWS)],
                         axis=-1)
  head = jnp.concatenate([s, core], axis=-1)
  ext = _row_sums(head, plan["var_c"], plan["row_c"], plan["num_ext"])
  return jnp.concatenate([head, ext.reshape(batch + (-1,))], axis=-1)


@functools.partial(jax.jit, static_argnums=0)
def syndrome(code: basegraph.LDPCCode, codeword):
  """`H c mod 2`: int32 `(..., rows * Z)`, zero for a codeword."""
  row, _, var = basegraph.lifted_edges(code)
  sums = _row_sums(jnp.asarray(codeword).astype(jnp.int32), var, row,
                   code.num_rows)
  return sums.reshape(sums.shape[:-2] + (-1,))
