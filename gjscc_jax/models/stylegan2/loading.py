"""Saving and loading converted StyleGAN2 generators.

A converted generator is a directory with two files:

* ``config.json``: ``{"format": "gjscc-stylegan2", "version": 1, "config":
  {z_dim, w_dim, img_resolution, img_channels, mapping_layers, channel_base,
  channel_max, conv_clamp}, "source": {...provenance...}}``;
* ``variables.npz``: one float32 array per variable, keyed by its path in the
  variables tree (``params/synthesis/b8/conv0/weight``,
  ``buffers/mapping/w_avg``, ...), written with `numpy.savez` and read with
  ``allow_pickle=False`` (plain arrays, no code).

``python -m weights_convert stylegan2 SRC DST`` writes such a directory from
the official weights; `load_stylegan2` turns it into a ready generator.
"""

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from gjscc_jax.models.stylegan2 import generator as generator_lib

FORMAT = 'gjscc-stylegan2'
VERSION = 1
CONFIG_FILE = 'config.json'
VARIABLES_FILE = 'variables.npz'


def expected_shapes(config):
  """{path: shape} of every variable of a generator with this config."""
  g = generator_lib.generator_from_config(config)
  z = jnp.zeros((1, g.z_dim), jnp.float32)
  shapes = jax.eval_shape(lambda: g.init(jax.random.PRNGKey(0), z))
  flat = traverse_util.flatten_dict(shapes, sep='/')
  return {k: tuple(v.shape) for k, v in flat.items()}


def check_variables(config, variables):
  """Raises ValueError unless `variables` fit the generator of `config`."""
  want = expected_shapes(config)
  have = {k: tuple(np.shape(v)) for k, v in
          traverse_util.flatten_dict(variables, sep='/').items()}
  missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
  wrong = sorted(k for k in set(want) & set(have) if want[k] != have[k])
  if missing or extra or wrong:
    details = [f'missing {missing[:5]}' if missing else '',
               f'unexpected {extra[:5]}' if extra else '',
               'wrong shapes ' + ', '.join(f'{k}: {have[k]} != {want[k]}'
                                           for k in wrong[:5]) if wrong else '']
    raise ValueError('variables do not match the StyleGAN2 config '
                     f'{config}: ' + '; '.join(d for d in details if d))


def save_stylegan2(path, config, variables, source=None):
  """Writes a converted generator directory (see module docstring).

  Args:
    path: directory to create (may exist; its two files are overwritten).
    config: architecture dict with the keys `generator.CONFIG_FIELDS`.
    variables: the ``{'params': ..., 'buffers': ...}`` tree.
    source: optional JSON-able provenance (file name, hash, ...).
  """
  check_variables(config, variables)
  os.makedirs(path, exist_ok=True)
  flat = traverse_util.flatten_dict(variables, sep='/')
  arrays = {k: np.asarray(v, np.float32) for k, v in flat.items()}
  tmp = os.path.join(path, VARIABLES_FILE + '.tmp.npz')
  np.savez(tmp, **arrays)
  os.replace(tmp, os.path.join(path, VARIABLES_FILE))
  meta = {'format': FORMAT, 'version': VERSION, 'config': dict(config),
          'source': source or {}}
  with open(os.path.join(path, CONFIG_FILE), 'w') as f:
    json.dump(meta, f, indent=2, sort_keys=True)


def read_config(path):
  """The architecture config dict of a converted generator directory."""
  config_path = os.path.join(path, CONFIG_FILE)
  if not os.path.exists(config_path):
    raise FileNotFoundError(
        f'{config_path} not found: {path!r} is not a converted StyleGAN2 '
        'generator; create one with `python -m weights_convert stylegan2 '
        'SRC DST`.')
  with open(config_path) as f:
    meta = json.load(f)
  if meta.get('format') != FORMAT or meta.get('version') != VERSION:
    raise ValueError(f'{config_path} is not a {FORMAT} v{VERSION} config '
                     f'(format={meta.get("format")!r}, '
                     f'version={meta.get("version")!r}).')
  return meta['config']


def load_stylegan2(path, *, dtype: Any = jnp.float32, precision: Any = None,
                   remat: bool = False):
  """Loads a converted generator.

  Args:
    path: directory written by `save_stylegan2` / the converter.
    dtype: compute dtype of the synthesis feature maps (float32, bfloat16).
    precision: convolution precision (e.g. 'highest' for parity checks).
    remat: recompute each synthesis block in the backward pass
      (`SynthesisNetwork.remat`).

  Returns:
    ``(generator, variables)``: a `Generator` module and its variables
    ``{'params': ..., 'buffers': ...}`` as float32 jax arrays.
  """
  config = read_config(path)
  with np.load(os.path.join(path, VARIABLES_FILE), allow_pickle=False) as npz:
    flat = {k: jnp.asarray(npz[k]) for k in npz.files}
  variables = traverse_util.unflatten_dict(flat, sep='/')
  check_variables(config, variables)
  g = generator_lib.generator_from_config(config, dtype=dtype,
                                          precision=precision, remat=remat)
  return g, variables
