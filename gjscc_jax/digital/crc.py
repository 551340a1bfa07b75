"""CRC attachment and checking (TS 38.212 5.1).

The parity bits `p_0 .. p_{L-1}` of `a_0 .. a_{A-1}` make
`a_0 x^(A+L-1) + ... + a_{A-1} x^L + p_0 x^(L-1) + ... + p_{L-1}` divisible by
the generator `g(x)`. CRC is linear over GF(2), so the parity of a block is
`a G mod 2` with `G`'s row `i` the parity of the unit vector `e_i`
(`x^(A-1-i+L) mod g(x)`): one integer matrix product per batch of blocks.
"""

import functools

import numpy as np

#: Generator polynomials (coefficients of x^L .. x^0 as an int) and lengths.
POLYNOMIALS = {
    "24A": (0x1864CFB, 24),  # transport blocks of more than 3824 bits
    "24B": (0x1800063, 24),  # code blocks of a segmented transport block
    "16": (0x11021, 16),     # transport blocks of at most 3824 bits
}


@functools.lru_cache(maxsize=32)
def _generator_matrix(kind: str, length: int) -> np.ndarray:
  poly, deg = POLYNOMIALS[kind]
  mask = (1 << deg) - 1
  rows = np.empty((length, deg), np.int32)
  rem = poly & mask  # x^deg mod g
  powers = 1 << np.arange(deg - 1, -1, -1)
  for i in range(length - 1, -1, -1):
    rows[i] = (rem & powers) > 0
    rem <<= 1
    if rem >> deg:
      rem = (rem & mask) ^ (poly & mask)
  return rows


def parity(bits, kind: str) -> np.ndarray:
  """CRC parity bits of `(..., A)` bits: int8 `(..., L)`."""
  bits = np.asarray(bits)
  g = _generator_matrix(kind, bits.shape[-1])
  return ((bits.astype(np.int64) @ g) % 2).astype(np.int8)


def attach(bits, kind: str) -> np.ndarray:
  """`(..., A)` bits followed by their CRC: int8 `(..., A + L)`."""
  bits = np.asarray(bits).astype(np.int8)
  return np.concatenate([bits, parity(bits, kind)], axis=-1)


def check(bits_with_crc, kind: str) -> np.ndarray:
  """Whether each `(..., A + L)` block's CRC matches: bool `(...)`."""
  bits = np.asarray(bits_with_crc)
  length = POLYNOMIALS[kind][1]
  return np.all(parity(bits[..., :-length], kind) == bits[..., -length:],
                axis=-1)
