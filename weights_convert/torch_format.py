"""Reads PyTorch files without PyTorch and without executing anything.

`torch.load` runs an ordinary pickle, and a pickle may call any importable
function (``os.system``, ``builtins.eval``, ...). This module parses the three
kinds of file that carry PyTorch weights with a *restricted* unpickler:

* the zip format (``torch.save`` default since PyTorch 1.6): an archive with
  ``<name>/data.pkl`` (the object graph) and ``<name>/data/<key>`` (raw storage
  bytes), plus a ``<name>/byteorder`` record;
* the legacy format (older ``torch.save``, e.g. the LPIPS ``.pth`` files):
  three small pickles (magic number 0x1950A86A20F9469CFC6C, protocol 1001,
  system info), the object pickle, the pickled list of storage keys, then for
  each key an int64 element count followed by the raw bytes;
* plain pickles of objects that hold tensors (e.g. NVlabs network snapshots):
  every tensor there pickles its storage as ``torch.storage._load_from_bytes``
  of a small legacy-format file, which is parsed the same way.

Every global a pickle names must be on an allow-list that maps it to a
replacement written here (or to a harmless standard type): tensors become
`numpy.ndarray` copies, ``OrderedDict`` stays ``OrderedDict``. Any other global
raises `ForbiddenGlobalError` before anything is built, so malicious files are
refused, not run. Truncated or corrupt files raise `TorchFileError`.

Example:

  >>> state = load_torch_file('vgg.pth')           # doctest: +SKIP
  >>> state['lin0.model.1.weight'].shape            # doctest: +SKIP
  (1, 64, 1, 1)

Callers with extra, known-harmless globals (e.g. NVlabs'
``dnnlib.util.EasyDict``) pass ``allowed_globals={**TORCH_GLOBALS, 'dnnlib.util.EasyDict': dict}``.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any, Callable, Mapping

import ml_dtypes
import numpy as np

__all__ = [
    'ForbiddenGlobalError',
    'TorchFileError',
    'TORCH_GLOBALS',
    'StorageType',
    'load_torch_file',
    'load_torch_bytes',
]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001


class TorchFileError(ValueError):
  """The file is truncated, corrupt, or not a PyTorch/pickle weight file."""


class ForbiddenGlobalError(pickle.UnpicklingError):
  """The pickle names a global that is not on the allow-list (not executed).

  Attributes:
    global_name: the refused ``'module.name'``.
  """

  def __init__(self, global_name):
    super().__init__(
        f"the pickle refers to '{global_name}', which is not on the "
        'allow-list of harmless globals; it was refused and nothing was '
        'executed. If the file is trusted and the global is harmless, pass '
        'it in allowed_globals.')
    self.global_name = global_name


class StorageType:
  """Stands in for a ``torch.<X>Storage`` class: just the element dtype."""

  def __init__(self, name: str, dtype: np.dtype):
    self.name = name
    self.dtype = np.dtype(dtype)

  def __repr__(self):
    return f'StorageType({self.name}, {self.dtype})'


class _Storage:
  """A flat, typed buffer; `data` is None until its bytes have been read."""

  def __init__(self, dtype: np.dtype, numel: int):
    self.dtype = dtype
    self.numel = numel
    self.data: np.ndarray | None = None

  def fill(self, raw: bytes | memoryview, byteorder: str):
    nbytes = self.numel * self.dtype.itemsize
    if len(raw) < nbytes:
      raise TorchFileError(
          f'storage needs {nbytes} bytes but the file has {len(raw)}: the file '
          'is truncated or corrupt; download it again.')
    dtype = self.dtype.newbyteorder('<' if byteorder == 'little' else '>')
    self.data = np.frombuffer(raw, dtype=dtype, count=self.numel).astype(
        self.dtype.newbyteorder('='))


# ---------------------------------------------------------------------------
# Replacements for the allowed torch globals.


def _rebuild_tensor(storage, storage_offset, size, stride, dtype=None):
  """Copies the strided view ``storage[offset + sum(i_k * stride_k)]`` out."""
  if not isinstance(storage, _Storage):
    raise TorchFileError(f'tensor refers to {type(storage).__name__}, not to a '
                         'storage: the file is corrupt.')
  if storage.data is None:  # First pass over a legacy file: shape only.
    return None
  size, stride = tuple(size), tuple(stride)
  ints = (storage_offset,) + size + stride
  if (len(size) != len(stride) or
      not all(isinstance(v, int) and v >= 0 for v in ints)):
    raise TorchFileError(f'bad tensor geometry size={size} stride={stride} '
                         f'offset={storage_offset}: the file is corrupt.')
  data = storage.data
  if dtype is not None and dtype != data.dtype:  # v3: typed view of raw bytes.
    usable = data.nbytes // dtype.itemsize * dtype.itemsize
    data = data.view(np.uint8)[:usable].view(dtype)
  if 0 in size:
    return np.zeros(size, data.dtype)
  last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= data.size:
    raise TorchFileError(
        f'tensor of size {size} reads element {last} of a storage with '
        f'{data.size} elements: the file is corrupt.')
  view = np.lib.stride_tricks.as_strided(
      data[storage_offset:], shape=size,
      strides=tuple(s * data.itemsize for s in stride), writeable=False)
  return np.array(view, order='C')  # A contiguous copy owning its memory.


def _rebuild_tensor_v2(storage, storage_offset, size, stride,
                       requires_grad=False, backward_hooks=None, metadata=None):
  del requires_grad, backward_hooks
  if metadata:
    raise TorchFileError(f'tensor metadata {metadata!r} (conjugate/negative '
                         'views) is not supported; save a plain tensor.')
  return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad,
                       backward_hooks, dtype, metadata=None):
  del requires_grad, backward_hooks
  if not isinstance(dtype, np.dtype):
    raise TorchFileError(f'bad tensor dtype {dtype!r}: the file is corrupt.')
  if metadata:
    raise TorchFileError(f'tensor metadata {metadata!r} is not supported.')
  return _rebuild_tensor(storage, storage_offset, size, stride, dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None,
                       state=None):
  del requires_grad, backward_hooks, state
  return data


def _rebuild_from_type_v2(func, new_type, args, state):
  """Tensor subclasses with Python state: keep the array, drop the rest."""
  del new_type, state
  if func not in (_rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter):
    raise TorchFileError(f'unexpected tensor rebuild function {func!r}.')
  return func(*args)


class _TensorType:
  """Stands in for ``torch.Tensor`` / ``torch.nn.Parameter`` as type tags."""


def _codecs_encode(text, encoding='utf-8'):
  """Protocol-2 pickles spell ``bytes`` as ``_codecs.encode(str, 'latin1')``."""
  if encoding not in ('latin1', 'latin-1') or not isinstance(text, str):
    raise TorchFileError(f'_codecs.encode with {encoding!r} is not allowed.')
  return text.encode('latin1')


def load_torch_bytes(data: bytes) -> Any:
  """Reads ``torch.storage._load_from_bytes`` payloads (legacy format).

  The payload only ever holds storages, so the default allow-list applies.
  """
  if not isinstance(data, (bytes, bytearray)):
    raise TorchFileError('_load_from_bytes expects bytes: the file is corrupt.')
  return _load_stream(io.BytesIO(data), TORCH_GLOBALS, '<embedded storage>')


_STORAGE_DTYPES = {
    'DoubleStorage': np.float64, 'FloatStorage': np.float32,
    'HalfStorage': np.float16, 'BFloat16Storage': ml_dtypes.bfloat16,
    'LongStorage': np.int64, 'IntStorage': np.int32, 'ShortStorage': np.int16,
    'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
    'ComplexFloatStorage': np.complex64, 'ComplexDoubleStorage': np.complex128,
}
_TORCH_DTYPES = {
    'float64': np.float64, 'double': np.float64, 'float32': np.float32,
    'float': np.float32, 'float16': np.float16, 'half': np.float16,
    'bfloat16': ml_dtypes.bfloat16, 'int64': np.int64, 'long': np.int64,
    'int32': np.int32, 'int': np.int32, 'int16': np.int16, 'short': np.int16,
    'int8': np.int8, 'uint8': np.uint8, 'uint16': np.uint16,
    'uint32': np.uint32, 'uint64': np.uint64, 'bool': np.bool_,
    'complex64': np.complex64, 'complex128': np.complex128,
    'float8_e4m3fn': ml_dtypes.float8_e4m3fn,
    'float8_e5m2': ml_dtypes.float8_e5m2,
}


def _numpy_globals() -> dict[str, Any]:
  """numpy's own array/scalar/dtype reconstructors (data only, no code)."""
  core = np._core.multiarray  # pylint: disable=protected-access
  reconstruct = core._reconstruct  # pylint: disable=protected-access
  table = {'numpy.ndarray': np.ndarray, 'numpy.dtype': np.dtype}
  for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
    table[f'{module}._reconstruct'] = reconstruct
    table[f'{module}.scalar'] = core.scalar
  for name in ('float16', 'float32', 'float64', 'int8', 'int16', 'int32',
               'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'bool_'):
    dtype_class = type(np.dtype(name))
    table[f'numpy.dtypes.{dtype_class.__name__}'] = dtype_class
  return table


#: The default allow-list: everything ``torch.save`` of tensors, state dicts
#: and containers of them can name, mapped to torch-free replacements.
TORCH_GLOBALS: Mapping[str, Any] = {
    'collections.OrderedDict': collections.OrderedDict,
    'builtins.set': set,
    'builtins.frozenset': frozenset,
    'builtins.complex': complex,
    'builtins.slice': slice,
    '_codecs.encode': _codecs_encode,
    'torch._utils._rebuild_tensor': _rebuild_tensor,
    'torch._utils._rebuild_tensor_v2': _rebuild_tensor_v2,
    'torch._utils._rebuild_tensor_v3': _rebuild_tensor_v3,
    'torch._utils._rebuild_parameter': _rebuild_parameter,
    'torch._utils._rebuild_parameter_with_state': _rebuild_parameter,
    'torch._tensor._rebuild_from_type_v2': _rebuild_from_type_v2,
    'torch.Tensor': _TensorType,
    'torch.nn.parameter.Parameter': _TensorType,
    'torch.Size': tuple,
    'torch.storage._load_from_bytes': load_torch_bytes,
    'torch.storage.UntypedStorage': StorageType('UntypedStorage', np.uint8),
    'torch.UntypedStorage': StorageType('UntypedStorage', np.uint8),
    **{f'torch.{k}': StorageType(k, v) for k, v in _STORAGE_DTYPES.items()},
    **{f'torch.{k}': np.dtype(v) for k, v in _TORCH_DTYPES.items()},
    **_numpy_globals(),
}


class _RestrictedUnpickler(pickle.Unpickler):
  """An unpickler that resolves globals only through an allow-list."""

  def __init__(self, file, allowed_globals: Mapping[str, Any],
               storage_source: Callable[..., _Storage] | None):
    super().__init__(file, encoding='utf-8')
    self._allowed = allowed_globals
    self._storage_source = storage_source

  def find_class(self, module, name):
    key = f'{module}.{name}'
    if key not in self._allowed:
      raise ForbiddenGlobalError(key)
    return self._allowed[key]

  def persistent_load(self, pid):
    if (self._storage_source is None or not isinstance(pid, tuple) or
        len(pid) < 5 or pid[0] not in ('storage', b'storage')):
      raise TorchFileError(f'unexpected persistent id {pid!r}: only tensor '
                           'storages are supported; the file is corrupt.')
    storage_type, key, _, numel = pid[1:5]
    if not isinstance(storage_type, StorageType):
      raise TorchFileError(f'persistent id names {storage_type!r} instead of a '
                           'storage type: the file is corrupt.')
    if not isinstance(numel, int) or numel < 0:
      raise TorchFileError(f'bad storage size {numel!r}: the file is corrupt.')
    if len(pid) > 5 and pid[5] is not None:
      raise TorchFileError('storage views (pre-1.0 PyTorch files) are not '
                           'supported; re-save the file with a newer PyTorch.')
    key = key.decode('ascii') if isinstance(key, bytes) else str(key)
    return self._storage_source(storage_type, key, numel)


def _unpickle(file, allowed_globals, storage_source=None):
  return _RestrictedUnpickler(file, allowed_globals, storage_source).load()


def _load_zip(archive: zipfile.ZipFile, allowed_globals, name):
  """Reads the zip format: ``<prefix>/data.pkl`` + ``<prefix>/data/<key>``."""
  pickles = [n for n in archive.namelist() if n.endswith('data.pkl')
             and n.count('/') <= 1]
  if len(pickles) != 1:
    raise TorchFileError(f'{name} is a zip archive without a single data.pkl '
                         'record: not a torch.save file.')
  prefix = pickles[0][:-len('data.pkl')]
  byteorder = 'little'
  if f'{prefix}byteorder' in archive.namelist():
    byteorder = archive.read(f'{prefix}byteorder').decode('ascii').strip()
    if byteorder not in ('little', 'big'):
      raise TorchFileError(f'{name}: unknown byte order {byteorder!r}.')
  storages: dict[str, _Storage] = {}

  def storage_source(storage_type, key, numel):
    if key not in storages:
      storage = _Storage(storage_type.dtype, numel)
      try:
        storage.fill(archive.read(f'{prefix}data/{key}'), byteorder)
      except KeyError:
        raise TorchFileError(f'{name} lacks the data record of storage {key!r}:'
                             ' the file is truncated or corrupt.') from None
      storages[key] = storage
    return storages[key]

  return _unpickle(io.BytesIO(archive.read(pickles[0])), allowed_globals,
                   storage_source)


def _load_legacy(stream, allowed_globals, name):
  """Reads the legacy format after its magic number (see module docstring)."""
  protocol = _unpickle(stream, TORCH_GLOBALS)
  if protocol != LEGACY_PROTOCOL_VERSION:
    raise TorchFileError(f'{name}: legacy torch protocol {protocol!r} is not '
                         f'supported (expected {LEGACY_PROTOCOL_VERSION}).')
  sys_info = _unpickle(stream, TORCH_GLOBALS)
  byteorder = 'little'
  if isinstance(sys_info, dict) and sys_info.get('little_endian') is False:
    byteorder = 'big'
  start = stream.tell()
  # Pass 1 learns the storages (the bytes follow the object pickle).
  storages: dict[str, _Storage] = {}

  def declare(storage_type, key, numel):
    return storages.setdefault(key, _Storage(storage_type.dtype, numel))

  _unpickle(stream, allowed_globals, declare)
  keys = _unpickle(stream, TORCH_GLOBALS)
  if not isinstance(keys, list) or set(keys) != set(storages):
    raise TorchFileError(f'{name}: the storage key list does not match the '
                         'storages the object uses: the file is corrupt.')
  for key in keys:
    storage = storages[key]
    header = stream.read(8)
    if len(header) != 8:
      raise TorchFileError(f'{name} is truncated (storage {key!r} missing).')
    numel, = struct.unpack('<q' if byteorder == 'little' else '>q', header)
    if numel != storage.numel:
      raise TorchFileError(f'{name}: storage {key!r} holds {numel} elements '
                           f'but the pickle declares {storage.numel}: corrupt.')
    storage.fill(stream.read(numel * storage.dtype.itemsize), byteorder)
  # Pass 2 rebuilds the objects with the data in place.
  stream.seek(start)
  return _unpickle(stream, allowed_globals, lambda t, key, n: storages[key])


def _load_stream(stream, allowed_globals, name):
  head = stream.read(4)
  stream.seek(0)
  if head.startswith(b'PK'):
    with zipfile.ZipFile(stream) as archive:
      return _load_zip(archive, allowed_globals, name)
  first = _unpickle(stream, allowed_globals)
  if isinstance(first, int) and first == LEGACY_MAGIC_NUMBER:
    return _load_legacy(stream, allowed_globals, name)
  return first  # A plain pickle (e.g. an NVlabs network snapshot).


def load_torch_file(path: str | os.PathLike | bytes | io.IOBase, *,
                    allowed_globals: Mapping[str, Any] = TORCH_GLOBALS) -> Any:
  """Loads a PyTorch file or pickle into plain Python objects and numpy arrays.

  Reads ``torch.save`` zip archives, legacy ``torch.save`` files and plain
  pickles holding tensors, without importing torch and without running code
  from the file.

  Args:
    path: a file path, the file's bytes, or a binary file object.
    allowed_globals: maps ``'module.name'`` of every global the pickle may
      refer to onto the object to use instead. Defaults to `TORCH_GLOBALS`;
      extend it (``{**TORCH_GLOBALS, ...}``) only with harmless data types.

  Returns:
    The unpickled object; every tensor/parameter is a contiguous
    `numpy.ndarray` copy (bfloat16 as `ml_dtypes.bfloat16`).

  Raises:
    ForbiddenGlobalError: the pickle names a global not on the allow-list.
    TorchFileError: the file is truncated, corrupt or of an unknown kind.
    FileNotFoundError: there is no file at `path`.
  """
  if isinstance(path, (bytes, bytearray)):
    data, name = bytes(path), '<bytes>'
  elif isinstance(path, io.IOBase):
    data, name = path.read(), getattr(path, 'name', '<stream>')
  else:
    with open(path, 'rb') as f:
      data = f.read()
    name = os.fspath(path)
  if not data:
    raise TorchFileError(f'{name} is empty.')
  try:
    return _load_stream(io.BytesIO(data), allowed_globals, name)
  except (ForbiddenGlobalError, TorchFileError):
    raise
  except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError,
          TypeError, KeyError, IndexError, AttributeError, struct.error,
          UnicodeDecodeError) as e:
    raise TorchFileError(f'{name} could not be read ({type(e).__name__}: {e}); '
                         'the file is truncated, corrupt or not a PyTorch '
                         'file.') from e
