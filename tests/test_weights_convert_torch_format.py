"""Tests for the torch-free, code-free PyTorch file reader."""

import collections
import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import ml_dtypes
import numpy as np
import pytest

from tests._helpers import Evil, pickle_global
from weights_convert import torch_format
from weights_convert.torch_format import (ForbiddenGlobalError, TorchFileError,
                                          load_torch_file)


def _torch():
  return pytest.importorskip(
      'torch', reason='torch is the oracle for files written by torch.save '
      '(pip install torch==2.13.0)')


def _state_dict(torch):
  g = torch.Generator().manual_seed(0)
  return collections.OrderedDict(
      dense=torch.randn(3, 4, generator=g),
      strided=torch.arange(10)[2:9:3],                   # offset + stride.
      transposed=torch.randn(4, 5, generator=g).t(),     # non-contiguous.
      scalar=torch.tensor(3.5, dtype=torch.bfloat16),
      param=torch.nn.Parameter(torch.randn(2, generator=g)),
      unsigned=torch.full((2, 3), 7, dtype=torch.uint16),  # _rebuild_tensor_v3.
      half=torch.randn(2, 2, generator=g).half(),
      mask=torch.tensor([True, False]),
      empty=torch.zeros(0, 3),
  )


def _assert_same(ours, theirs, torch):
  assert set(ours) == set(theirs)
  for key, ref in theirs.items():
    ref = ref.detach()
    if ref.dtype == torch.bfloat16:
      assert ours[key].dtype == ml_dtypes.bfloat16
      ref = ref.float()
    ref = ref.numpy()
    assert ours[key].shape == ref.shape, key
    np.testing.assert_array_equal(np.asarray(ours[key], ref.dtype), ref,
                                  err_msg=key)


@pytest.mark.parametrize('zip_format', [True, False], ids=['zip', 'legacy'])
def test_reads_torch_save_files_bit_exactly(zip_format):
  torch = _torch()
  sd = _state_dict(torch)
  buf = io.BytesIO()
  torch.save(sd, buf, _use_new_zipfile_serialization=zip_format)
  ours = load_torch_file(buf.getvalue())
  assert isinstance(ours, collections.OrderedDict)
  _assert_same(ours, sd, torch)
  assert all(v.flags.c_contiguous and v.flags.owndata for v in ours.values())


def test_reads_plain_pickles_whose_tensors_embed_legacy_storages(tmp_path):
  torch = _torch()
  sd = _state_dict(torch)
  path = tmp_path / 'snapshot.pkl'
  with open(path, 'wb') as f:  # How NVlabs snapshots store their tensors.
    pickle.dump({'nested': [sd], 'epoch': 3}, f)
  ours = load_torch_file(path)
  assert ours['epoch'] == 3
  _assert_same(ours['nested'][0], sd, torch)


def test_reader_never_imports_torch(tmp_path):
  torch = _torch()
  path = tmp_path / 'w.pt'
  torch.save({'w': torch.ones(2)}, path)
  code = ('import sys;'
          'from weights_convert.torch_format import load_torch_file;'
          f'w = load_torch_file({str(path)!r})["w"]; assert w.sum() == 2;'
          'assert "torch" not in sys.modules, "torch was imported"')
  subprocess.run([sys.executable, '-c', code], check=True,
                 cwd=os.path.dirname(os.path.dirname(__file__)))


def _legacy_file(payload_pickle: bytes) -> bytes:
  head = b''.join(pickle.dumps(x, protocol=2) for x in (
      torch_format.LEGACY_MAGIC_NUMBER, torch_format.LEGACY_PROTOCOL_VERSION,
      {'protocol_version': 1001, 'little_endian': True}))
  return head + payload_pickle + pickle.dumps([], protocol=2)


def _zip_file(payload_pickle: bytes) -> bytes:
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, 'w') as z:
    z.writestr('archive/data.pkl', payload_pickle)
    z.writestr('archive/byteorder', 'little')
  return buf.getvalue()


@pytest.mark.parametrize('wrap', [lambda p: p, _legacy_file, _zip_file],
                         ids=['pickle', 'legacy', 'zip'])
@pytest.mark.parametrize('func', [os.system, eval, exec, __import__,
                                  getattr, subprocess.Popen],
                         ids=lambda f: getattr(f, '__name__', str(f)))
def test_malicious_pickles_are_refused_and_run_nothing(tmp_path, wrap, func):
  marker = tmp_path / 'pwned'
  arg = (f'touch {marker}' if func in (os.system,) else
         [f'touch {marker}'] if func is subprocess.Popen else
         f'open({str(marker)!r}, "w")' if func in (eval, exec) else 'os')
  args = ('os', 'system') if func is getattr else (arg,)
  payload = pickle.dumps({'w': Evil(func, *args)}, protocol=2)
  with pytest.raises(ForbiddenGlobalError, match='not on the allow-list'):
    load_torch_file(wrap(payload))
  assert not marker.exists()


def test_malicious_global_inside_an_embedded_storage_is_refused(tmp_path):
  marker = tmp_path / 'pwned'
  inner = _legacy_file(pickle.dumps(Evil(os.system, f'touch {marker}'), 2))
  outer = (b'\x80\x02' + pickle_global('torch.storage', '_load_from_bytes') +
           pickle.dumps(inner, protocol=2)[2:-1] + b'\x85R.')
  with pytest.raises(ForbiddenGlobalError, match="'posix.system'|'nt.system'"):
    load_torch_file(outer)
  assert not marker.exists()


def test_extra_globals_must_be_allowed_explicitly():
  payload = pickle.dumps(collections.Counter('aab'))
  with pytest.raises(ForbiddenGlobalError, match="'collections.Counter'"):
    load_torch_file(payload)
  allowed = {**torch_format.TORCH_GLOBALS, 'collections.Counter': dict}
  assert load_torch_file(payload, allowed_globals=allowed) == {'a': 2, 'b': 1}


def test_truncated_and_corrupt_files_give_clear_errors(tmp_path):
  torch = _torch()
  for zip_format in (True, False):
    buf = io.BytesIO()
    torch.save({'w': torch.randn(64)}, buf,
               _use_new_zipfile_serialization=zip_format)
    data = buf.getvalue()
    for cut in (len(data) // 3, len(data) - 40):
      with pytest.raises(TorchFileError, match='truncated|corrupt'):
        load_torch_file(data[:cut])
  with pytest.raises(TorchFileError, match='empty'):
    load_torch_file(b'')
  with pytest.raises(TorchFileError, match='not a PyTorch file|corrupt'):
    load_torch_file(b'\x89PNG\r\n\x1a\n garbage')


def test_out_of_bounds_tensor_geometry_is_rejected():
  # A storage of 4 floats viewed as 3x3 would read past its end.
  storage = torch_format._Storage(np.dtype(np.float32), 4)
  storage.fill(np.arange(4, dtype=np.float32).tobytes(), 'little')
  with pytest.raises(TorchFileError, match='reads element 8'):
    torch_format._rebuild_tensor_v2(storage, 0, (3, 3), (3, 1))
  with pytest.raises(TorchFileError, match='bad tensor geometry'):
    torch_format._rebuild_tensor_v2(storage, 0, (2,), (-1,))
  np.testing.assert_array_equal(  # Column-major view with an offset.
      torch_format._rebuild_tensor_v2(storage, 1, (2, 1), (1, 2)),
      [[1], [2]])


def _legacy_tensor_file(values, little_endian):
  """Hand-assembles a legacy torch.save file holding one float32 tensor."""
  n = len(values)
  pid = (b'(' + b'X\x07\x00\x00\x00storage' +
         pickle_global('torch', 'FloatStorage') +
         b'X\x02\x00\x00\x00k0' + b'X\x03\x00\x00\x00cpu' +
         b'K' + bytes([n]) + b'N' + b't' + b'Q')                # BINPERSID.
  body = (b'\x80\x02' + pickle_global('torch._utils', '_rebuild_tensor_v2') +
          b'(' + pid + b'K\x00' + b'K' + bytes([n]) + b'\x85' + b'K\x01\x85' +
          b'\x89' + pickle_global('collections', 'OrderedDict') + b')R' + b't' +
          b'R.')
  head = b''.join(pickle.dumps(x, protocol=2) for x in (
      torch_format.LEGACY_MAGIC_NUMBER, torch_format.LEGACY_PROTOCOL_VERSION,
      {'protocol_version': 1001, 'little_endian': little_endian}))
  order = '<' if little_endian else '>'
  return (head + body + pickle.dumps(['k0'], protocol=2) +
          struct.pack(order + 'q', n) +
          np.asarray(values, order + 'f4').tobytes())


@pytest.mark.parametrize('little_endian', [True, False])
def test_hand_written_legacy_file_in_either_byte_order(little_endian):
  values = [1.5, -2.0, 3.25]
  got = load_torch_file(_legacy_tensor_file(values, little_endian))
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, values)
