"""The StyleGAN2 converter refuses malicious or broken files and writes nothing.

(Its numerical correctness is tested against the official code in
test_stylegan2_oracle.py.) These tests need no torch.
"""

import io
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from tests._helpers import Evil, pickle_global
from weights_convert import stylegan2 as convert_lib
from weights_convert import torch_format

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _str(s):
  data = s.encode()
  return b'X' + len(data).to_bytes(4, 'little') + data


def _persistent_object_pickle(module_src):
  """An NVlabs-style snapshot whose G_ema carries `module_src` to exec."""
  meta = (b'}' + b'(' + _str('type') + _str('class') + _str('version') +
          b'K\x06' + _str('module_src') + _str(module_src) +
          _str('class_name') + _str('Generator') + _str('state') + b'}' +
          b'u')                                              # SETITEMS
  return (b'\x80\x02}' + _str('G_ema') +
          pickle_global('torch_utils.persistence',
                        '_reconstruct_persistent_obj') +
          meta + b'\x85R' + b's.')


def _cli(*args):
  return subprocess.run([sys.executable, '-m', 'weights_convert', *args],
                        cwd=REPO, capture_output=True, text=True,
                        env=dict(os.environ, PYTHONPATH=REPO))


@pytest.fixture
def marker(tmp_path):
  path = tmp_path / 'pwned'
  yield path
  assert not path.exists(), 'code from the file was executed'


def _zip_pt(payload):
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, 'w') as z:
    z.writestr('archive/data.pkl', payload)
  return buf.getvalue()


@pytest.mark.parametrize('kind', ['pkl', 'pt'])
def test_malicious_files_are_refused_and_nothing_is_written(tmp_path, marker,
                                                            kind):
  payload = pickle.dumps({'G_ema': Evil(os.system, f'touch {marker}')}, 2)
  src = tmp_path / f'evil.{kind}'
  src.write_bytes(payload if kind == 'pkl' else _zip_pt(payload))
  dst = tmp_path / 'out'
  with pytest.raises(torch_format.ForbiddenGlobalError,
                     match="'posix.system'|'nt.system'"):
    convert_lib.convert(src, dst)
  assert not dst.exists()
  result = _cli('stylegan2', str(src), str(dst))
  assert result.returncode == 1
  assert 'not on the allow-list' in result.stderr
  assert not dst.exists()


def test_embedded_module_source_is_never_executed(tmp_path, marker):
  src = tmp_path / 'snapshot.pkl'
  src.write_bytes(_persistent_object_pickle(
      f'import os\nos.system("touch {marker}")\nclass Generator: pass\n'))
  with pytest.raises(convert_lib.ConversionError,
                     match='no synthesis network'):
    convert_lib.convert(src, tmp_path / 'out')
  assert not (tmp_path / 'out').exists()


def test_tensorflow_pickles_get_a_pointer_to_the_pytorch_ones(tmp_path):
  src = tmp_path / 'tf.pkl'
  src.write_bytes(b'\x80\x02' +
                  pickle_global('dnnlib.tflib.network', 'Network') +
                  b')\x81.')                                # NEWOBJ, STOP
  with pytest.raises(convert_lib.ConversionError, match='TensorFlow'):
    convert_lib.convert(src, tmp_path / 'out')


def test_pickle_without_a_generator(tmp_path):
  src = tmp_path / 'other.pkl'
  src.write_bytes(pickle.dumps({'D': None, 'epoch': 3}))
  with pytest.raises(convert_lib.ConversionError,
                     match=r"no 'G_ema' entry \(keys: \['D', 'epoch'\]\)"):
    convert_lib.convert(src, tmp_path / 'out')
  src.write_bytes(pickle.dumps([1, 2, 3]))
  with pytest.raises(convert_lib.ConversionError, match='holds a list'):
    convert_lib.convert(src, tmp_path / 'out')


def test_truncated_and_missing_files(tmp_path):
  data = pickle.dumps({'G_ema': {'w': np.zeros((64, 64), np.float32)}})
  src = tmp_path / 'cut.pkl'
  src.write_bytes(data[:len(data) // 2])
  with pytest.raises(torch_format.TorchFileError, match='truncated'):
    convert_lib.convert(src, tmp_path / 'out')
  result = _cli('stylegan2', str(src), str(tmp_path / 'out'))
  assert result.returncode == 1 and 'truncated' in result.stderr
  with pytest.raises(FileNotFoundError):
    convert_lib.convert(tmp_path / 'nope.pkl', tmp_path / 'out')
  assert not (tmp_path / 'out').exists()


def _fake_tensors(channels, mapping_layers=2, w_dim=8):
  """Official-named tensors with the given {resolution: channels}."""
  t = {f'mapping.fc{i}.weight': np.zeros((w_dim, w_dim), np.float32)
       for i in range(mapping_layers)}
  for r, c in channels.items():
    t[f'synthesis.b{r}.conv1.weight'] = np.zeros((c, c, 3, 3), np.float32)
  t['synthesis.b4.torgb.weight'] = np.zeros((3, channels[4], 1, 1))
  return t


@pytest.mark.parametrize('channels,hint,base,cmax', [
    ({4: 512, 8: 512, 16: 512, 32: 512, 64: 256}, None, 16384, 512),
    ({4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256}, None, 32768, 512),
    ({4: 512, 8: 512, 16: 512}, 32768, 32768, 512),    # ambiguous: use hint
    ({4: 512, 8: 512, 16: 512}, None, 8192, 512),      # any consistent base
    ({4: 64, 8: 32, 16: 16}, None, 256, 64),
])
def test_infer_config_channels(channels, hint, base, cmax):
  config = convert_lib.infer_config(_fake_tensors(channels), {}, hint)
  assert (config['channel_base'], config['channel_max']) == (base, cmax)
  assert config['img_resolution'] == max(channels)
  assert config['mapping_layers'] == 2 and config['conv_clamp'] is None


def test_infer_config_rejects_unsupported_generators():
  with pytest.raises(convert_lib.ConversionError, match='do not follow'):
    convert_lib.infer_config(_fake_tensors({4: 512, 8: 100, 16: 512}))
  tensors = _fake_tensors({4: 8, 8: 8})
  with pytest.raises(convert_lib.ConversionError, match='conditional'):
    convert_lib.infer_config({**tensors, 'mapping.embed.weight': 0})
  with pytest.raises(convert_lib.ConversionError, match="'resnet'"):
    convert_lib.infer_config(tensors, {'synthesis.b8': {
        'architecture': 'resnet'}})
  with pytest.raises(convert_lib.ConversionError, match='lr_multiplier'):
    convert_lib.infer_config(tensors, {'mapping.fc0': {'bias_gain': 1.0}})
  with pytest.raises(convert_lib.ConversionError, match='rosinality key'):
    convert_lib.rosinality_to_official({'discriminator.weight': 0})


def test_cli_usage():
  result = _cli()
  assert result.returncode == 2 and 'stylegan2' in result.stdout
  result = _cli('nope')
  assert result.returncode == 2 and "unknown subcommand 'nope'" in result.stderr
