"""FID Inception-v3 parameters: where they come from and how they are stored.

The weights are the ``pytorch-fid`` port of TensorFlow's
``inception-2015-12-05`` graph, ``pt_inception-2015-12-05-6726825d.pth``
(91 MB; Apache-2.0, released with ``pytorch-fid`` on GitHub). Nothing here
downloads it: users fetch it once themselves and convert it torch-free with
``python -m weights_convert inception pt_inception-2015-12-05-6726825d.pth
DIR`` (`weights_convert.inception`), which writes ``DIR/fid_inception.npz``.

The ``.npz`` layout: one float32 array per parameter under its '/'-joined
path (``Mixed_5b/branch1x1/kernel`` (HWIO), ``.../scale``, ``.../bias``,
``.../mean``, ``.../var``), plus ``kind`` (a 0-d string array,
'fid_inception') and ``source_sha256`` (of the converted file).
"""

import functools
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from gjscc_jax.perception import inception as inception_lib

#: The file users download, and what `weights_convert` writes from it.
OFFICIAL_FILE = 'pt_inception-2015-12-05-6726825d.pth'
OFFICIAL_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/'
                f'fid_weights/{OFFICIAL_FILE}')
NPZ_FILE = 'fid_inception.npz'
_KIND = 'fid_inception'


def missing_weights_message(flag: str = '--inception_weights') -> str:
  """The one line telling a user what to download and how to convert it."""
  return (f'FID/KID need the FID Inception-v3 weights: download {OFFICIAL_URL}'
          f' and convert them with `python -m weights_convert inception '
          f'{OFFICIAL_FILE} DIR`, then pass {flag}=DIR.')


@functools.lru_cache(maxsize=1)
def param_shapes() -> dict[str, tuple[int, ...]]:
  """'/'-joined name -> shape of every `FIDInceptionV3` parameter."""
  shapes = jax.eval_shape(inception_lib.FIDInceptionV3().init,
                          jax.random.PRNGKey(0),
                          jnp.zeros((1, 75, 75, 3), jnp.float32))['params']
  return {'/'.join(k.key for k in path): tuple(v.shape)
          for path, v in jax.tree_util.tree_flatten_with_path(shapes)[0]}


def check_params(flat: Mapping[str, Any]) -> dict[str, Any]:
  """Checks a flat {'/'-name: array} tree against the architecture and
  returns the nested float32 parameter tree.

  Raises:
    ValueError: naming the first missing, unexpected or mis-shaped entry.
  """
  expected = param_shapes()
  missing = sorted(set(expected) - set(flat))
  extra = sorted(set(flat) - set(expected))
  if missing or extra:
    raise ValueError('FID Inception parameters do not match the architecture:'
                     f' missing {missing[:5]}{"..." if len(missing) > 5 else ""}'
                     f', unexpected {extra[:5]}.')
  tree = {}
  for key, shape in expected.items():
    value = np.asarray(flat[key], np.float32)
    if value.shape != shape:
      raise ValueError(f'FID Inception parameter {key} has shape '
                       f'{value.shape}; expected {shape}.')
    if not np.all(np.isfinite(value)):
      raise ValueError(f'FID Inception parameter {key} is not finite.')
    node = tree
    *parents, last = key.split('/')
    for p in parents:
      node = node.setdefault(p, {})
    node[last] = value
  return tree


def save_inception_params(directory: str, flat: Mapping[str, Any],
                          source_sha256: str = '') -> str:
  """Writes checked parameters to ``directory/fid_inception.npz``; returns
  the path."""
  check_params(flat)
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, NPZ_FILE)
  arrays = {k: np.asarray(v, np.float32) for k, v in flat.items()}
  with open(path, 'wb') as f:
    np.savez(f, kind=np.array(_KIND), source_sha256=np.array(source_sha256),
             **arrays)
  return path


def weights_file(path: str) -> str:
  """The ``.npz`` of a converted directory (or the file itself).

  Raises:
    FileNotFoundError: with `missing_weights_message`.
  """
  path = os.fspath(path)
  candidate = os.path.join(path, NPZ_FILE) if os.path.isdir(path) else path
  if not os.path.isfile(candidate):
    raise FileNotFoundError(f'{path} holds no converted FID Inception weights.'
                            f' {missing_weights_message()}')
  return candidate


@functools.lru_cache(maxsize=2)
def _load(path: str) -> dict[str, Any]:
  with np.load(path, allow_pickle=False) as data:
    if 'kind' not in data or str(data['kind']) != _KIND:
      raise ValueError(f'{path} is not a converted FID Inception file. '
                       f'{missing_weights_message()}')
    flat = {k: data[k] for k in data.files
            if k not in ('kind', 'source_sha256')}
  return check_params(flat)


def load_inception_params(path: str) -> dict[str, Any]:
  """The FID Inception parameters (a cached, read-only numpy tree).

  Args:
    path: the directory ``python -m weights_convert inception`` wrote, or
      its ``fid_inception.npz``.
  """
  return _load(weights_file(path))
