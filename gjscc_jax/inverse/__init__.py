"""InverseJSCC: per-image StyleGAN2 latent search on DeepJSCC reconstructions.

The receiver of DeepJSCC gets a distorted reconstruction `x_hat`. InverseJSCC
(Erdemir, Tung, Dragotti and Gunduz, JSAC 2023) restores it with a pretrained
StyleGAN2 `G`: it searches, image by image, for the `G(.)` whose measurement
`A(G(.))` best explains `x_hat` under `MSE + lambda * LPIPS`, with the search
of Intermediate Layer Optimization (ILO).

* `ilo`: the pure single-image optimiser (`invert_one`), its vmapped and
  sharded batch form (`inverter`), and `ILOConfig` (ILO's defaults).
* `forward_operators`: the operators `A` ('deepjscc', 'identity') and the
  data terms (`DataTerms`).
* `projections`: norm-preserving and L1-ball projections, geocross.
* `generator`: the block view of a generator ILO needs (`LayeredGenerator`).
* `pipeline`: transmit, invert and score a batch in one jitted function.
* `outputs`: per-image outputs written atomically, skipped on rerun.

Batch runs over datasets, with multi-host support: `experiments/invert.py`.
"""

from gjscc_jax.inverse.forward_operators import DataTerms
from gjscc_jax.inverse.generator import LayeredGenerator
from gjscc_jax.inverse.ilo import ILOConfig
from gjscc_jax.inverse.ilo import invert_one
from gjscc_jax.inverse.ilo import inverter
from gjscc_jax.inverse.ilo import Result

__all__ = [
    "DataTerms",
    "ILOConfig",
    "LayeredGenerator",
    "Result",
    "invert_one",
    "inverter",
]
