"""The practical separation baseline: a codec over 5G NR LDPC and QAM.

One concept per module:

* `qam`: TS 38.211 Gray QAM, exact and max-log soft demapping;
* `basegraph` (+ `ldpc_tables/`): base graphs, lifting, code parameters;
* `ldpc_encode`: systematic encoding;
* `rate_matching`: bit selection with wrap-around repetition, interleaving;
* `crc`, `segmentation`: CRCs, code blocks, transport block sizes;
* `ldpc_decode`: belief propagation (sum-product, min-sum variants);
* `link`: a transport block over LDPC, QAM and the channel;
* `fbl`: the finite-blocklength normal approximation;
* `mcs`: modulation and coding schemes (TS 38.214);
* `baseline`: per image, SNR and MCS, the codec over the link, and the
  envelope; `outputs`: its extra files.

`python -m experiments.separation --link=ldpc` runs it.
"""

from gjscc_jax.digital import fbl
from gjscc_jax.digital import ldpc_decode
from gjscc_jax.digital import mcs
from gjscc_jax.digital import qam
from gjscc_jax.digital.baseline import check_selection
from gjscc_jax.digital.baseline import DigitalResult
from gjscc_jax.digital.baseline import evaluate_images
from gjscc_jax.digital.baseline import label
from gjscc_jax.digital.baseline import LINKS
from gjscc_jax.digital.link import Receiver
from gjscc_jax.digital.outputs import write_outputs

__all__ = ["DigitalResult", "LINKS", "Receiver", "check_selection",
           "evaluate_images", "fbl", "label", "ldpc_decode", "mcs", "qam",
           "write_outputs"]
