"""InverseJSCC: per-image StyleGAN2 latent search on DeepJSCC reconstructions.

The receiver of DeepJSCC gets a distorted reconstruction `x_hat`. InverseJSCC
(Erdemir, Tung, Dragotti and Gunduz, JSAC 2023) restores it with a pretrained
StyleGAN2 `G`: it searches, image by image, for the `G(.)` whose measurement
`A(G(.))` best explains `x_hat` under `MSE + lambda * LPIPS`, with the search
of Intermediate Layer Optimization (ILO).

* `ilo`: the pure single-image optimiser (`invert_one` and its parts) and
  `ILOConfig` (ILO's defaults).
* `search`: the batch search (`inverter`): vmapped, jitted, sharded, as
  one program or one program per step.
* `forward_operators`: the operators `A` ('deepjscc', 'identity') and the
  data terms (`DataTerms`).
* `projections`: norm-preserving and L1-ball projections, geocross.
* `generator`: the block view of a StyleGAN2 ILO needs (`LayeredGenerator`,
  `from_stylegan2`) and a random demo prior (`random_stylegan2`).
* `pipeline`: transmit, invert and score a batch in one jitted function.
* `outputs`: per-image outputs written atomically, skipped on rerun.
* `work`: image sources, the split of images over processes, batches, and
  the gather of per-image metrics over processes.
* `report`: summary rows, plots and the progress bar.
* `batch_run`: `run(config)`, a resumable, multi-host run over a dataset.

Command line: `python -m experiments.invert --config=inverse_ffhq[:demo]`.
"""

from gjscc_jax.inverse.forward_operators import DataTerms
from gjscc_jax.inverse.generator import LayeredGenerator
from gjscc_jax.inverse.ilo import ILOConfig
from gjscc_jax.inverse.ilo import invert_one
from gjscc_jax.inverse.ilo import Result
from gjscc_jax.inverse.search import inverter

__all__ = [
    "DataTerms",
    "ILOConfig",
    "LayeredGenerator",
    "Result",
    "invert_one",
    "inverter",
]
