"""Modulation and coding schemes (TS 38.214 5.1.3.1).

An MCS is a modulation order `Qm` and a target code rate `R`; `k` complex
channel uses then carry `G = k Qm` coded bits and at most `floor(R G)`
information bits (payload and CRCs, `segmentation.max_payload`). The
tables below are 38.214's PDSCH MCS index tables 1 (Table 5.1.3.1-1, up to
64-QAM) and 3 (Table 5.1.3.1-3, low spectral efficiency), as
`(Qm, 1024 R)`; an MCS is named `T:I`, index `I` of table `T`.
"""

import dataclasses

from gjscc_jax.digital import qam

#: Table 5.1.3.1-1 (MCS index table 1): (Qm, 1024 R) per index 0..28.
TABLE1 = (
    (2, 120), (2, 157), (2, 193), (2, 251), (2, 308), (2, 379), (2, 449),
    (2, 526), (2, 602), (2, 679), (4, 340), (4, 378), (4, 434), (4, 490),
    (4, 553), (4, 616), (4, 658), (6, 438), (6, 466), (6, 517), (6, 567),
    (6, 616), (6, 666), (6, 719), (6, 772), (6, 822), (6, 873), (6, 910),
    (6, 948))
#: Table 5.1.3.1-3 (MCS index table 3, low spectral efficiency), 0..28.
TABLE3 = (
    (2, 30), (2, 40), (2, 50), (2, 64), (2, 78), (2, 99), (2, 120),
    (2, 157), (2, 193), (2, 251), (2, 308), (2, 379), (2, 449), (2, 526),
    (2, 602), (4, 340), (4, 378), (4, 434), (4, 490), (4, 553), (4, 616),
    (6, 438), (6, 466), (6, 517), (6, 567), (6, 616), (6, 666), (6, 719),
    (6, 772))
TABLES = {1: TABLE1, 3: TABLE3}
#: The default subset: every few steps of spectral efficiency from
#: 0.06 (table 3) to 5.3 bits per symbol (table 1), for -8 to 20 dB.
DEFAULT = ("3:0", "3:3", "3:6", "1:2", "1:5", "1:9", "1:12", "1:15",
           "1:18", "1:21", "1:24", "1:27")


@dataclasses.dataclass(frozen=True)
class MCS:
  """One modulation and coding scheme.

  Attributes:
    name: 'T:I' (table and index), or 'Qm/R1024' for a custom one.
    qm: bits per symbol.
    rate_1024: 1024 times the target code rate.
  """
  name: str
  qm: int
  rate_1024: int

  @property
  def rate(self) -> float:
    return self.rate_1024 / 1024.0

  @property
  def efficiency(self) -> float:
    """Spectral efficiency `Qm R`, bits per channel use."""
    return self.qm * self.rate

  @property
  def modulation(self) -> str:
    return {v: k for k, v in qam.MODULATIONS.items()}[self.qm]

  def describe(self) -> str:
    """E.g. '16QAM R=0.42'."""
    return f"{self.modulation.upper()} R={self.rate:.2f}"


def parse(spec: str) -> MCS:
  """An MCS from 'T:I' (38.214 table T in {1, 3}, index I) or 'Qm/R1024'
  (e.g. '2/30': QPSK at rate 30/1024, any rate above 0)."""
  spec = str(spec).strip()
  try:
    if ":" in spec:
      table, index = (int(x) for x in spec.split(":"))
      qm, rate = TABLES[table][index]
      return MCS(spec, qm, rate)
    qm, rate = (int(x) for x in spec.split("/"))
  except (KeyError, IndexError, ValueError):
    raise ValueError(
        f"MCS {spec!r}: use T:I (table 1 or 3 of TS 38.214, index 0..28) or "
        "Qm/R1024 (e.g. 2/30).") from None
  qam.bits_per_symbol(qm)
  if not 0 < rate < 1024:
    raise ValueError(f"MCS {spec!r}: 1024 R must lie in (0, 1024).")
  return MCS(spec, qm, rate)


def parse_all(specs) -> tuple:
  """Parsed MCSs sorted by spectral efficiency (ties: lower Qm first)."""
  out = [parse(s) for s in specs]
  if not out:
    raise ValueError("Give at least one MCS.")
  return tuple(sorted(out, key=lambda m: (m.efficiency, m.qm)))
