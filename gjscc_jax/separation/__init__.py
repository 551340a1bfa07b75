"""Separate source-channel coding: standard image codecs over an ideal channel code.

The classical baseline of the DeepJSCC literature: a standard codec (HEVC
intra as in BPG, JPEG 2000, WebP, AVIF, JPEG) whose bitstream is sent with an
ideal channel code at the capacity of the channel (AWGN; slow or block
Rayleigh/Rician fading and OFDM with outage; fast fading at the ergodic
capacity; one entry per channel kind, `capacity.CAPACITIES`).

* `codecs`: the codec registry and what each codec's payload counts;
* `capacity`: bit budgets, outage probabilities, seeded fading draws;
* `search`: per image, the highest quality whose payload fits a budget;
* `baseline`: the sweep over images and SNRs, summary rows and per-image
  results;
* `outputs`: an output directory (settings, tables, plots, per-image
  arrays).

One call evaluates a dataset split::

  result = separation.evaluate('heif', data_config, 'test', None, '1/192',
                               [-5, 0, 5], channel='awgn')
  report.write_tables(result.rows, output_dir)
"""

from gjscc_jax.separation.baseline import default_label
from gjscc_jax.separation.baseline import evaluate
from gjscc_jax.separation.baseline import evaluate_images
from gjscc_jax.separation.baseline import FALLBACK
from gjscc_jax.separation.baseline import mean_image
from gjscc_jax.separation.baseline import plan_image
from gjscc_jax.separation.baseline import SCHEME
from gjscc_jax.separation.baseline import SeparationResult
from gjscc_jax.separation.codecs import CODECS
from gjscc_jax.separation.codecs import get_codec
from gjscc_jax.separation.outputs import read_settings
from gjscc_jax.separation.outputs import RUN_CONFIG
from gjscc_jax.separation.outputs import run_settings
from gjscc_jax.separation.outputs import write_outputs

__all__ = [
    "CODECS", "FALLBACK", "SCHEME", "SeparationResult", "default_label",
    "evaluate", "evaluate_images", "get_codec", "mean_image", "plan_image",
    "read_settings", "RUN_CONFIG", "run_settings", "write_outputs",
]
