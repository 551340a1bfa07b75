"""Transmission schemes the trainer and the evaluator build from a config.

`build_scheme(config)` returns the `Scheme` (see `base`) named by
`config.scheme`: 'deepjscc' (`deepjscc.py`) or 'generative'
(GenerativeJSCC, `generative.py`). InverseJSCC is not a trained scheme: it
restores the outputs of a trained 'deepjscc' run (`gjscc_jax.inverse`).
"""

from gjscc_jax.schemes.base import compute_dtype
from gjscc_jax.schemes.base import remat_enabled
from gjscc_jax.schemes.base import Scheme
from gjscc_jax.schemes.registry import build_scheme

__all__ = ["Scheme", "build_scheme", "compute_dtype", "remat_enabled"]
