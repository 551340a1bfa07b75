"""Transport blocks: CRC, code-block segmentation and bit budgets (38.212).

A transport block of `A` payload bits gets a CRC (16 bits if `A <= 3824`,
else 24, 7.2.1), giving `B = A + L` bits; the base graph is chosen from `A`
and the target rate `R` (`basegraph.select_base_graph`). If `B` exceeds the
largest code block `Kcb` (8448 bits for base graph 1, 3840 for 2) it is cut
into `C = ceil(B / (Kcb - 24))` code blocks of `K' = B' / C` bits, each with
its own 24-bit CRC (5.2.2; `B' = B + 24 C`). The `G = N_sym Qm` coded bits
of the allocation are shared by the blocks (5.4.2.1, one layer):
`E_r = Qm floor(G' / C)` for the first `C - (G' mod C)` blocks and
`Qm ceil(G' / C)` for the rest, `G' = G / Qm`.

The standard's transport block sizes (38.214 5.1.3.2) are chosen so that
`C` divides `B'`; here any payload size `A` is allowed by padding the block
with zeros up to `C K'` (`pad`), and `max_payload` gives the largest `A`
whose blocks carry at most `floor(R G)` information bits (payload, CRCs and
padding): the bit budget of a modulation and coding scheme.
"""

import dataclasses
import math

import numpy as np

from gjscc_jax.digital import basegraph
from gjscc_jax.digital import crc


@dataclasses.dataclass(frozen=True)
class TransportPlan:
  """How `A` payload bits travel in `G` coded bits (hashable).

  Attributes:
    payload: `A`.
    tb_crc: '16' or '24A'.
    num_blocks: `C`.
    pad: zero bits appended to the block with its CRC so `C` divides it.
    code: the `basegraph.LDPCCode` of every block (`K'` with CB CRC).
    qm: bits per symbol.
    e: `E_r` per block, a tuple of `C` ints summing to `G`.
  """
  payload: int
  tb_crc: str
  num_blocks: int
  pad: int
  code: basegraph.LDPCCode
  qm: int
  e: tuple

  @property
  def cb_crc(self) -> bool:
    """Whether each code block carries a 24B CRC (`C > 1`)."""
    return self.num_blocks > 1

  @property
  def info_bits(self) -> int:
    """Information bits over all blocks, `C K'`."""
    return self.num_blocks * self.code.k

  @property
  def coded_bits(self) -> int:
    return sum(self.e)


def _tb_crc(a):
  return "16" if a <= 3824 else "24A"


def _layout(a, rate):
  """`(tb_crc, C, K', pad, bg)` for `A` payload bits at target rate `R`."""
  tb_crc = _tb_crc(a)
  b = a + crc.POLYNOMIALS[tb_crc][1]
  bg = basegraph.select_base_graph(a, rate)
  kcb = basegraph.MAX_BLOCK[bg]
  if b <= kcb:
    return tb_crc, 1, b, 0, bg, b
  c = math.ceil(b / (kcb - 24))
  k_prime = math.ceil(b / c) + 24
  return tb_crc, c, k_prime, c * (k_prime - 24) - b, bg, b


def plan(payload_bits: int, coded_bits: int, qm: int, rate: float = None
         ) -> TransportPlan:
  """The `TransportPlan` of `A` payload bits over `G` coded bits.

  Args:
    payload_bits: `A >= 1`.
    coded_bits: `G`, a multiple of `qm`.
    qm: bits per symbol.
    rate: target code rate for the base-graph choice (default `A / G`).
  """
  if payload_bits < 1 or coded_bits < qm or coded_bits % qm:
    raise ValueError(f"A={payload_bits} payload bits over G={coded_bits} "
                     f"coded bits at Qm={qm}: need A >= 1 and G a positive "
                     "multiple of Qm.")
  rate = payload_bits / coded_bits if rate is None else rate
  tb_crc, c, k_prime, pad, bg, b = _layout(payload_bits, rate)
  code = basegraph.make_code(k_prime, bg, b)
  symbols = coded_bits // qm
  small = c - symbols % c
  e = tuple(qm * (symbols // c) if r < small else qm * -(-symbols // c)
            for r in range(c))
  if min(e) < qm:
    raise ValueError(f"G={coded_bits} bits cannot give each of {c} code "
                     "blocks a symbol.")
  return TransportPlan(payload_bits, tb_crc, c, pad, code, qm, e)


def max_payload(coded_bits: int, qm: int, rate: float) -> int:
  """Largest `A` whose `C K'` information bits fit `floor(R G)`; 0 if none.

  Args:
    coded_bits: `G`.
    qm: bits per symbol.
    rate: the MCS code rate `R`.
  """
  target = math.floor(rate * coded_bits)
  a = target - 16
  while a >= 1:
    _, c, k_prime, _, _, _ = _layout(a, rate)
    if c * k_prime <= target:
      return a
    a -= max(1, (c * k_prime - target) // 2)
  return 0


def segment(plan_: TransportPlan, payload) -> np.ndarray:
  """Payload bits `(..., A)` to code blocks with CRCs: int8 `(..., C, K')`."""
  payload = np.asarray(payload).astype(np.int8)
  if payload.shape[-1] != plan_.payload:
    raise ValueError(f"Expected {plan_.payload} payload bits; got "
                     f"{payload.shape[-1]}.")
  block = crc.attach(payload, plan_.tb_crc)
  lead = block.shape[:-1]
  block = np.concatenate([block, np.zeros(lead + (plan_.pad,), np.int8)],
                         axis=-1)
  if not plan_.cb_crc:
    return block[..., None, :]
  pieces = block.reshape(lead + (plan_.num_blocks, -1))
  return crc.attach(pieces, "24B")


def desegment(plan_: TransportPlan, blocks):
  """Decoded blocks `(..., C, K')` to `(payload (..., A), ok (...))`.

  `ok` is whether every code-block CRC and the transport-block CRC match.
  """
  blocks = np.asarray(blocks).astype(np.int8)
  ok = np.ones(blocks.shape[:-2], bool)
  if plan_.cb_crc:
    ok &= np.all(crc.check(blocks, "24B"), axis=-1)
    blocks = blocks[..., :-24]
  flat = blocks.reshape(blocks.shape[:-2] + (-1,))
  tb_len = plan_.payload + crc.POLYNOMIALS[plan_.tb_crc][1]
  flat = flat[..., :tb_len]
  ok &= crc.check(flat, plan_.tb_crc)
  return flat[..., :plan_.payload], ok
