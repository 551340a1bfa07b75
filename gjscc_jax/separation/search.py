"""Per image: the highest codec quality whose payload fits a bit budget.

A `QualitySearch` holds one image and caches, per quality index, the codec's
`Bitstream` (encoded at most once) and its decoding (decoded at most once).
Budgets change with the SNR, the codec's outputs do not, so a sweep over many
SNRs (and, for slow fading, many candidate rates) shares the encodings: each
search costs at most `ceil(log2(Q + 1))` new encodes for `Q` qualities, and
usually fewer, since neighbouring budgets revisit the same indices.

The binary search assumes that the payload grows with the quality index. On
natural images it mostly does, but not strictly: the registered codecs' sizes
have many ties and occasional small decreases between neighbouring qualities
(e.g. WebP's and JPEG's Huffman or partition choices), so the binary search
can stop at a boundary below a higher quality that also fits. With
`exhaustive=True` every quality is encoded once per image (`Q` encodes) and
the answer is the exact largest fitting index. Either way a returned index
always fits its budget: the search only returns indices it has encoded and
measured. `best_fitting_many` also makes the chosen index non-decreasing in
the budget, by starting each search from the previous (smaller) budget's
answer, which still fits.
"""

import numpy as np

from gjscc_jax.separation import codecs as codecs_lib

#: Returned when even the lowest quality exceeds the budget (image lost).
NOT_SENT = -1


class QualitySearch:
  """Codec search over one image, with cached encodings and decodings.

  Attributes:
    codec: the `codecs.Codec`.
    image: the uint8 `(H, W, 3)` image.
    exhaustive: whether `best_fitting` encodes every quality (exact) instead
      of bisecting (`ceil(log2(Q + 1))` encodes per budget at most).
    encodes: how many encodes ran so far (for tests and profiling).
  """

  def __init__(self, codec, image, exhaustive=False):
    self.codec = codec
    self.exhaustive = exhaustive
    self.image = np.asarray(image)
    self._bitstreams = {}
    self._decoded = {}
    self.encodes = 0

  def bitstream(self, index) -> codecs_lib.Bitstream:
    """The `Bitstream` at quality index `index` (encoded once)."""
    if index not in self._bitstreams:
      self._bitstreams[index] = self.codec.encode(self.image, index)
      self.encodes += 1
    return self._bitstreams[index]

  def bits(self, index) -> int:
    """Payload bits at quality index `index`; 0 for `NOT_SENT`."""
    return 0 if index == NOT_SENT else self.bitstream(index).bits

  def decoded(self, index) -> np.ndarray:
    """The decoded uint8 image at quality index `index` (decoded once)."""
    if index not in self._decoded:
      self._decoded[index] = self.codec.decode(self.bitstream(index),
                                               self.image.shape)
    return self._decoded[index]

  def best_fitting(self, budget_bits, at_least=NOT_SENT) -> int:
    """Largest quality index whose payload is at most `budget_bits`.

    Binary search over `(at_least, Q)` (or, when `exhaustive`, a scan of
    every index above `at_least`); `at_least` must be `NOT_SENT` or an index
    known to fit.

    Args:
      budget_bits: the bit budget (int >= 0).
      at_least: a lower end of the search that fits the budget.

    Returns:
      The index, or `NOT_SENT` when even index 0 does not fit.
    """
    if at_least != NOT_SENT and self.bits(at_least) > budget_bits:
      raise ValueError(f"at_least={at_least} needs {self.bits(at_least)} bits, "
                       f"more than the budget of {budget_bits}.")
    if self.exhaustive:
      fitting = [i for i in range(at_least + 1, self.codec.num_qualities)
                 if self.bits(i) <= budget_bits]
      return max(fitting, default=at_least)
    low, high = at_least, self.codec.num_qualities
    while high - low > 1:
      middle = (low + high) // 2
      if self.bits(middle) <= budget_bits:
        low = middle
      else:
        high = middle
    return low

  def best_fitting_many(self, budgets) -> np.ndarray:
    """`best_fitting` for several budgets, non-decreasing in the budget.

    Args:
      budgets: int bit budgets, any order.

    Returns:
      int64 array of indices (or `NOT_SENT`) in the order of `budgets`.
    """
    budgets = np.asarray(budgets, np.int64)
    out = np.empty(budgets.shape, np.int64)
    index = NOT_SENT
    for i in np.argsort(budgets, kind="stable"):
      index = self.best_fitting(int(budgets[i]), at_least=index)
      out[i] = index
    return out
