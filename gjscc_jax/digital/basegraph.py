"""5G NR LDPC base graphs, lifting sizes and code parameters (TS 38.212 5.3.2).

A 5G LDPC code is a quasi-cyclic code lifted from one of two base graphs:
base graph 1 (46 x 68, 22 systematic columns, for large blocks and high
rates) and base graph 2 (42 x 52, 10 systematic columns). Entry `(r, c)` of
a base graph is either empty or a shift `V`; lifting by `Z` replaces it with
the `Z x Z` identity cyclically shifted by `V mod Z` (check `r Z + i` touches
variable `c Z + (i + V) mod Z`) and the empty entries with zero blocks. The
shifts depend on the lifting-set index `iLS` of `Z` (Table 5.3.2-1); the
tables of shifts (Tables 5.3.2-2 and 5.3.2-3) are data, in
`ldpc_tables/bg1.txt` and `bg2.txt` (`row column V(iLS=0) ... V(iLS=7)`).

For `K'` information bits per code block (payload and code-block CRC), the
lifting size is the smallest `Z` of Table 5.3.2-1 with `Kb Z >= K'`; `Kb` is
22 for base graph 1, and for base graph 2 is 10, 9, 8 or 6 as the transport
block with its CRC, `B`, exceeds 640, 560, 192 bits or not. The code then has
`K = 22 Z` (base graph 1) or `10 Z` (base graph 2) systematic positions, the
last `K - K'` of which are filler bits (known zeros, never sent), and
`N = 66 Z` or `50 Z` coded bits after the first `2 Z` systematic bits, which
are never sent either.
"""

import dataclasses
import functools
import importlib.resources

import numpy as np

#: Table 5.3.2-1: lifting sizes per lifting-set index iLS = 0..7.
LIFTING_SETS = (
    (2, 4, 8, 16, 32, 64, 128, 256),
    (3, 6, 12, 24, 48, 96, 192, 384),
    (5, 10, 20, 40, 80, 160, 320),
    (7, 14, 28, 56, 112, 224),
    (9, 18, 36, 72, 144, 288),
    (11, 22, 44, 88, 176, 352),
    (13, 26, 52, 104, 208),
    (15, 30, 60, 120, 240),
)
#: (rows, columns) of each base graph.
SHAPES = {1: (46, 68), 2: (42, 52)}
#: Systematic columns of each base graph (before `Kb` shortening).
SYSTEMATIC_COLUMNS = {1: 22, 2: 10}
#: Largest code block `Kcb` (information bits, with CRC) per base graph.
MAX_BLOCK = {1: 8448, 2: 3840}
#: Rows of the core (double-diagonal) parity part, the same for both graphs.
CORE_ROWS = 4


@functools.lru_cache(maxsize=None)
def table(bg: int) -> np.ndarray:
  """The nonzero entries of base graph `bg`: int32 `(E, 10)`, rows
  `(row, column, V(iLS=0), ..., V(iLS=7))`, sorted by row then column."""
  if bg not in SHAPES:
    raise ValueError(f"bg={bg!r}: 5G NR has base graphs 1 and 2.")
  path = importlib.resources.files("gjscc_jax.digital") / "ldpc_tables" / (
      f"bg{bg}.txt")
  with path.open() as f:
    entries = np.loadtxt(f, dtype=np.int32, comments="#", ndmin=2)
  order = np.lexsort((entries[:, 1], entries[:, 0]))
  return entries[order]


def matrix(bg: int, i_ls: int) -> np.ndarray:
  """Base matrix of `bg` for lifting set `i_ls`: int `(rows, cols)`, the
  shift `V` of each entry and -1 where the block is zero."""
  out = np.full(SHAPES[bg], -1, np.int64)
  entries = table(bg)
  out[entries[:, 0], entries[:, 1]] = entries[:, 2 + i_ls]
  return out


def select_base_graph(payload_bits: int, rate: float) -> int:
  """Base graph by 38.212 7.2.2 from the transport block size `A` (without
  CRC) and the target code rate `R`: 2 if `A <= 292`, or `A <= 3824` and
  `R <= 0.67`, or `R <= 0.25`; 1 otherwise."""
  if payload_bits <= 292 or (payload_bits <= 3824 and rate <= 0.67) or (
      rate <= 0.25):
    return 2
  return 1


def _kb(bg, b):
  if bg == 1:
    return 22
  return 10 if b > 640 else 9 if b > 560 else 8 if b > 192 else 6


def lifting(k_prime: int, bg: int, b: int = None):
  """`(Z, iLS)`: the smallest lifting size with `Kb Z >= K'` (5.2.2).

  Args:
    k_prime: information bits per code block `K'` (with its CRC).
    bg: base graph, 1 or 2.
    b: transport block bits with CRC, `B` (decides `Kb` for base graph 2);
      default `K'` (one code block).
  """
  kb = _kb(bg, k_prime if b is None else b)
  best = None
  for i_ls, sizes in enumerate(LIFTING_SETS):
    for z in sizes:
      if kb * z >= k_prime and (best is None or z < best[0]):
        best = (z, i_ls)
  if best is None or k_prime > MAX_BLOCK[bg]:
    raise ValueError(f"K'={k_prime} bits do not fit one base graph {bg} code "
                     f"block (at most {MAX_BLOCK[bg]}); segment first.")
  return best


@dataclasses.dataclass(frozen=True)
class LDPCCode:
  """One 5G LDPC code block configuration (hashable: a static argument).

  Attributes:
    bg: base graph, 1 or 2.
    z: lifting size `Z`.
    i_ls: lifting-set index of `Z`.
    k: information bits `K'` (payload and code-block CRC).
  """
  bg: int
  z: int
  i_ls: int
  k: int

  @property
  def kb(self) -> int:
    """Systematic base columns (22 or 10)."""
    return SYSTEMATIC_COLUMNS[self.bg]

  @property
  def k_ldpc(self) -> int:
    """Systematic positions `K = 22 Z` or `10 Z` (information and fillers)."""
    return self.kb * self.z

  @property
  def fillers(self) -> int:
    """Filler bits `K - K'`."""
    return self.k_ldpc - self.k

  @property
  def n_ldpc(self) -> int:
    """Codeword length with the first `2 Z` bits: 68 Z or 52 Z."""
    return SHAPES[self.bg][1] * self.z

  @property
  def n_cb(self) -> int:
    """Circular buffer length `N_cb = N = 66 Z` or `50 Z` (I_LBRM = 0)."""
    return self.n_ldpc - 2 * self.z

  @property
  def num_rows(self) -> int:
    return SHAPES[self.bg][0]

  def base_matrix(self) -> np.ndarray:
    return matrix(self.bg, self.i_ls)


def make_code(k_prime: int, bg: int, b: int = None) -> LDPCCode:
  """The `LDPCCode` for `K'` information bits on base graph `bg` (`b`: the
  transport block with CRC, see `lifting`)."""
  z, i_ls = lifting(k_prime, bg, b)
  return LDPCCode(bg=bg, z=z, i_ls=i_ls, k=int(k_prime))


def lifted_edges(code: LDPCCode, rows=None, columns=None):
  """Edges of the lifted graph, base entry by base entry.

  Args:
    code: the code.
    rows: number of base rows kept (default all).
    columns: number of base columns kept (default all).

  Returns:
    `(row, col, var)`: int arrays, `row (E,)` and `col (E,)` the base entry
    of each kept nonzero block, `var (E, Z)` the variable index
    `col Z + (i + V) mod Z` that check `row Z + i` touches.
  """
  rows = code.num_rows if rows is None else rows
  columns = SHAPES[code.bg][1] if columns is None else columns
  entries = table(code.bg)
  keep = (entries[:, 0] < rows) & (entries[:, 1] < columns)
  row, col = entries[keep, 0], entries[keep, 1]
  shift = entries[keep, 2 + code.i_ls] % code.z
  lane = np.arange(code.z)
  var = col[:, None] * code.z + (lane[None, :] + shift[:, None]) % code.z
  return row.astype(np.int64), col.astype(np.int64), var.astype(np.int64)
