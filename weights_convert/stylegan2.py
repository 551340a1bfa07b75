"""Converts official StyleGAN2 generator weights to a gjscc-jax directory.

Usage::

  python -m weights_convert stylegan2 SRC DST [--network G_ema|G]

SRC is one of

* an NVlabs network pickle (stylegan2-ada-pytorch, or stylegan3's StyleGAN2
  generators): ``{'G', 'D', 'G_ema', ...}`` of ``torch_utils.persistence``
  objects; ``G_ema`` is taken unless ``--network G``;
* a rosinality stylegan2-pytorch checkpoint (``.pt``): ``{'g_ema': state
  dict, 'latent_avg': w_avg, ...}`` (used by ILO and GPEN).

DST becomes a directory that `gjscc_jax.models.stylegan2.load_stylegan2`
loads (see ``loading.py`` for the format). A file without the average
latent ``w_avg`` (a rosinality checkpoint saved without ``latent_avg``) gets
one estimated as training tracks it, the mean of ``mapping(z)`` over
`W_AVG_SAMPLES` latents ``z ~ N(0, I)`` drawn from ``PRNGKey(W_AVG_SEED)``;
the estimate is recorded in the directory's ``source`` (truncation, the
W+ search of InverseJSCC and GenerativeJSCC's W+ offset start from it, so a
zero would be wrong). The configuration (resolution,
channel base/max, mapping depth, w_dim, num_ws, conv_clamp) is inferred from
the tensors and the stored layer attributes.

Safety: nothing from SRC is executed and torch is not needed. NVlabs pickles
normally rebuild their classes by ``exec``-ing source code stored inside the
pickle; here ``torch_utils.persistence._reconstruct_persistent_obj`` is mapped
to `PersistentObject`, which only keeps the pickled state, and every other
global outside the allow-list of `weights_convert.torch_format` is refused.
"""

import argparse
import hashlib
import os
import re
import sys

import numpy as np

from gjscc_jax import errors
from weights_convert import torch_format

#: The [1, 3, 3, 1] filter as the official code stores it (normalised 2-D).
_FIR = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32) / 64
MAPPING_LR_MULTIPLIER = 0.01
#: Latents averaged for a missing ``w_avg`` (in chunks of `_W_AVG_CHUNK`).
W_AVG_SAMPLES = 2 ** 17
#: Seed of those latents.
W_AVG_SEED = 0
_W_AVG_CHUNK = 2 ** 14


class PersistentObject:
  """Inert stand-in for an NVlabs ``persistent_class`` object.

  Keeps the class name and pickled ``__dict__`` (``state``); the embedded
  module source is dropped, never executed.
  """

  def __init__(self, meta):
    if not isinstance(meta, dict) or not isinstance(meta.get('state'), dict):
      raise torch_format.TorchFileError(
          'malformed persistent object in the pickle: the file is corrupt.')
    self.class_name = meta.get('class_name')
    self.state = meta['state']

  def __repr__(self):
    return f'PersistentObject({self.class_name})'


class EasyDict(dict):
  """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""


NVLABS_GLOBALS = {
    **torch_format.TORCH_GLOBALS,
    'torch_utils.persistence._reconstruct_persistent_obj': PersistentObject,
    'dnnlib.util.EasyDict': EasyDict,
    'dnnlib.EasyDict': EasyDict,
}


class ConversionError(ValueError):
  """The file holds no convertible StyleGAN2 generator."""


def _flatten_module(obj, prefix=''):
  """{dotted name: array} and {dotted module name: attributes} of a module."""
  tensors, attrs = {}, {prefix.rstrip('.'): obj.state}
  for group in ('_parameters', '_buffers'):
    for name, value in (obj.state.get(group) or {}).items():
      if value is not None:
        tensors[prefix + name] = value
  for name, child in (obj.state.get('_modules') or {}).items():
    if child is None:
      continue
    if not isinstance(child, PersistentObject):
      raise ConversionError(f'unexpected submodule {prefix + name}: '
                            f'{type(child).__name__}')
    t, a = _flatten_module(child, f'{prefix}{name}.')
    tensors.update(t)
    attrs.update(a)
  return tensors, attrs


def _from_nvlabs(data, network):
  if network not in data:
    raise ConversionError(
        f'the pickle has no {network!r} entry (keys: {sorted(data)}); it is '
        'not an NVlabs network snapshot, or use --network.')
  g = data[network]
  if not isinstance(g, PersistentObject):
    raise ConversionError(f'{network!r} is a {type(g).__name__}, not a '
                          'pickled StyleGAN2 generator.')
  tensors, attrs = _flatten_module(g)
  return tensors, attrs


def _rosinality_key(key):
  """rosinality g_ema parameter name -> official name (None if unknown)."""
  m = re.fullmatch(r'style\.(\d+)\.(weight|bias)', key)
  if m:
    return f'mapping.fc{int(m[1]) - 1}.{m[2]}'
  if key == 'input.input':
    return 'synthesis.b4.const'
  m = re.fullmatch(r'noises\.noise_(\d+)', key)
  if m:
    layer = int(m[1])
    res = 4 * 2**((layer + 1) // 2)
    conv = 'conv1' if layer % 2 == 0 else 'conv0'
    return f'synthesis.b{res}.{conv}.noise_const'
  m = re.fullmatch(r'(conv1|to_rgb1|convs\.(\d+)|to_rgbs\.(\d+))\.(.+)', key)
  if not m:
    return None
  head, conv_idx, rgb_idx, rest = m.groups()
  if head == 'conv1':
    layer = 'b4.conv1'
  elif head == 'to_rgb1':
    layer = 'b4.torgb'
  elif conv_idx is not None:
    layer = f'b{2**(int(conv_idx) // 2 + 3)}.conv{int(conv_idx) % 2}'
  else:
    layer = f'b{2**(int(rgb_idx) + 3)}.torgb'
  rest = {'conv.weight': 'weight', 'conv.modulation.weight': 'affine.weight',
          'conv.modulation.bias': 'affine.bias', 'noise.weight':
          'noise_strength', 'activate.bias': 'bias', 'bias': 'bias'}.get(rest)
  return None if rest is None else f'synthesis.{layer}.{rest}'


def rosinality_to_official(g_ema, latent_avg=None):
  """Renames a rosinality ``g_ema`` state dict to official names and shapes."""
  out = {}
  for key, value in g_ema.items():
    if key.endswith(('.blur.kernel', '.upsample.kernel')):
      # The [1, 3, 3, 1] FIR filter times up^2 (a constant buffer).
      if not np.allclose(np.asarray(value), _FIR * 4):
        raise ConversionError(f'{key} is not the [1, 3, 3, 1] filter.')
      continue
    name = _rosinality_key(key)
    if name is None:
      raise ConversionError(f'unexpected rosinality key {key!r}')
    value = np.asarray(value)
    if name.endswith('.const') or (name.endswith('.weight') and
                                   value.ndim == 5):
      value = value[0]                          # [1, C, 4, 4] / [1, O, I, k, k]
    elif name.endswith('noise_const'):
      value = value[0, 0]                       # [1, 1, r, r]
    elif name.endswith('noise_strength'):
      value = value.reshape(())                 # [1]
    elif name.endswith('torgb.bias'):
      value = value.reshape(-1)                 # [1, 3, 1, 1]
    out[name] = value
  if latent_avg is not None:
    out['mapping.w_avg'] = np.asarray(latent_avg).reshape(-1)
  return out


def infer_config(tensors, attrs=None, channel_base_hint=None):
  """Infers the `Generator` config from official-named tensors (+ attrs)."""
  attrs = attrs or {}
  if any(k.startswith('mapping.embed') for k in tensors):
    raise ConversionError('conditional generators (c_dim > 0) are not '
                          'supported.')
  resolutions = sorted({int(m[1]) for k in tensors
                        if (m := re.match(r'synthesis\.b(\d+)\.', k))})
  if not resolutions or resolutions[0] != 4:
    raise ConversionError('no synthesis network (synthesis.b4.*) found.')
  res = resolutions[-1]
  if resolutions != [4 * 2**i for i in range(len(resolutions))]:
    raise ConversionError(f'unexpected block resolutions {resolutions}')
  chans = {r: tensors[f'synthesis.b{r}.conv1.weight'].shape[0]
           for r in resolutions}
  channel_max = max(chans.values())

  def consistent(base):
    return all(min(base // r, channel_max) == c for r, c in chans.items())

  candidates = [channel_base_hint] if channel_base_hint else []
  candidates += [c * r for r, c in chans.items() if c < channel_max]
  candidates += [channel_max * res]
  channel_base = next((b for b in candidates if b and consistent(b)), None)
  if channel_base is None:
    raise ConversionError(f'channels per resolution {chans} do not follow '
                          'min(channel_base // r, channel_max).')
  num_fc = len([k for k in tensors if re.fullmatch(r'mapping\.fc\d+\.weight',
                                                   k)])
  w_dim = tensors[f'mapping.fc{num_fc - 1}.weight'].shape[0]
  for i in range(num_fc):
    bias_gain = attrs.get(f'mapping.fc{i}', {}).get('bias_gain',
                                                    MAPPING_LR_MULTIPLIER)
    if not np.isclose(bias_gain, MAPPING_LR_MULTIPLIER):
      raise ConversionError(f'mapping lr_multiplier {bias_gain} is not 0.01')
  for name, a in attrs.items():
    if a.get('architecture', 'skip') != 'skip':
      raise ConversionError(f"{name}: architecture {a['architecture']!r} is "
                            "not supported (only 'skip').")
  for key, value in tensors.items():
    if key.endswith('resample_filter') and not np.allclose(value, _FIR):
      raise ConversionError(f'{key} is not the [1, 3, 3, 1] filter.')
  clamp = attrs.get('synthesis.b4.conv1', {}).get('conv_clamp')
  return {
      'z_dim': int(tensors['mapping.fc0.weight'].shape[1]),
      'w_dim': int(w_dim),
      'img_resolution': int(res),
      'img_channels': int(tensors['synthesis.b4.torgb.weight'].shape[0]),
      'mapping_layers': int(num_fc),
      'channel_base': int(channel_base),
      'channel_max': int(channel_max),
      'conv_clamp': None if clamp is None else float(clamp),
  }


def official_to_variables(tensors):
  """Official-named tensors -> ``{'params': ..., 'buffers': ...}`` tree."""
  variables = {'params': {}, 'buffers': {}}
  for key, value in tensors.items():
    if key.endswith('resample_filter'):
      continue
    value = np.asarray(value, np.float32)
    leaf = key.rsplit('.', 1)[-1]
    collection = 'buffers' if leaf in ('w_avg', 'noise_const') else 'params'
    if leaf == 'weight' and value.ndim == 2:
      value = value.T                              # [out, in] -> [in, out]
    elif leaf == 'weight' and value.ndim == 4:
      value = value.transpose(2, 3, 1, 0)          # OIHW -> HWIO
    elif leaf == 'const':
      value = value.transpose(1, 2, 0)             # CHW -> HWC
    node = variables[collection]
    *path, leaf = key.split('.')
    for part in path:
      node = node.setdefault(part, {})
    node[leaf] = np.array(value, order='C')
  return variables


def read_generator(path, network='G_ema'):
  """Reads SRC; returns (config, variables, description of the source)."""
  try:
    data = torch_format.load_torch_file(path, allowed_globals=NVLABS_GLOBALS)
  except torch_format.ForbiddenGlobalError as e:
    if e.global_name.startswith('dnnlib.tflib'):
      raise ConversionError(
          f'{path} is a TensorFlow StyleGAN2 pickle (NVlabs/stylegan2), which '
          'is not supported; use the PyTorch pickles of stylegan2-ada-pytorch '
          'or stylegan3 (the same FFHQ weights).') from e
    raise
  if not isinstance(data, dict):
    raise ConversionError(f'{path} holds a {type(data).__name__}, not a '
                          'StyleGAN2 checkpoint.')
  rosinality_key = {'G_ema': 'g_ema', 'G': 'g'}[network]
  if isinstance(data.get(rosinality_key), dict):
    kind = 'rosinality'
    tensors = rosinality_to_official(data[rosinality_key],
                                     data.get('latent_avg'))
    attrs = {}
    hint = None
  else:
    kind = 'nvlabs'
    tensors, attrs = _from_nvlabs(data, network)
    kwargs = attrs.get('', {}).get('_init_kwargs') or {}
    synthesis_kwargs = kwargs.get('synthesis_kwargs') or kwargs
    hint = synthesis_kwargs.get('channel_base')
  config = infer_config(tensors, attrs, hint)
  source = {'kind': kind, 'network': network}
  if 'mapping.w_avg' not in tensors:
    # A placeholder until `convert` estimates it (`source['w_avg']`).
    tensors['mapping.w_avg'] = np.zeros(config['w_dim'], np.float32)
    source['w_avg'] = 'missing'
  return config, official_to_variables(tensors), source


def estimate_w_avg(config, variables, samples=W_AVG_SAMPLES, seed=W_AVG_SEED):
  """The mean of ``mapping(z)`` (untruncated) over `samples` latents
  ``z ~ N(0, I)``, chunk ``c`` drawn from ``fold_in(PRNGKey(seed), c)``;
  float32 ``(w_dim,)``, accumulated in float64."""
  # Imported here: reading and checking a file needs no jax.
  import jax  # pylint: disable=g-import-not-at-top
  from gjscc_jax.models import stylegan2  # pylint: disable=g-import-not-at-top
  g = stylegan2.generator_from_config(config)

  @jax.jit
  def chunk_sum(index):
    z = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(seed), index),
                          (_W_AVG_CHUNK, g.z_dim))
    return g.apply(variables, z, method=g.map)[:, 0].sum(0)

  total = sum(np.asarray(chunk_sum(c), np.float64)
              for c in range(samples // _W_AVG_CHUNK))
  return (total / (samples // _W_AVG_CHUNK * _W_AVG_CHUNK)).astype(np.float32)


def convert(src, dst, *, network='G_ema'):
  """Converts SRC into the directory DST; returns the config."""
  # Imported here: reading and checking a file needs no jax.
  from gjscc_jax.models.stylegan2 import loading  # pylint: disable=g-import-not-at-top
  if os.path.isdir(src):
    raise ConversionError(
        f'{src} is a directory: pass the weights file itself (an NVlabs .pkl '
        'or a rosinality .pt); a converted directory needs no conversion.')
  config, variables, source = read_generator(src, network)
  if source.get('w_avg') == 'missing':
    print(f'{src} stores no w_avg (latent_avg): estimating it as the mean of '
          f'mapping(z) over {W_AVG_SAMPLES} latents (seed {W_AVG_SEED}).',
          file=sys.stderr)
    variables['buffers']['mapping']['w_avg'] = estimate_w_avg(config,
                                                               variables)
    source['w_avg'] = {'estimated': 'mean of mapping(z), z ~ N(0, I)',
                       'samples': W_AVG_SAMPLES, 'seed': W_AVG_SEED}
  with open(src, 'rb') as f:
    source['sha256'] = hashlib.sha256(f.read()).hexdigest()
  source['file'] = os.path.basename(os.fspath(src))
  loading.save_stylegan2(dst, config, variables, source=source)
  return config


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog='python -m weights_convert stylegan2',
      description='Convert an official StyleGAN2 generator (NVlabs pickle or '
      'rosinality .pt) for gjscc_jax.models.stylegan2.load_stylegan2. Needs '
      'no PyTorch and runs no code from the file.')
  parser.add_argument('src', help='NVlabs .pkl or rosinality .pt file')
  parser.add_argument('dst', help='output directory')
  parser.add_argument('--network', default='G_ema', choices=('G_ema', 'G'),
                      help='which NVlabs generator to take (default G_ema)')
  parser.add_argument('--verbose', action='store_true',
                      help='show the traceback of an error')
  args = parser.parse_args(argv)
  try:
    config = convert(args.src, args.dst, network=args.network)
  except (ConversionError, torch_format.TorchFileError,
          torch_format.ForbiddenGlobalError, OSError) as e:
    if errors.verbose(argv):
      raise
    print(f'Error: {errors.one_line(e)} (--verbose shows the traceback)',
          file=sys.stderr)
    return 1
  print(f'wrote {args.dst}: {config}')
  return 0
