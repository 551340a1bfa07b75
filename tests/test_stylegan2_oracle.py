"""Parity with NVIDIA's official StyleGAN2 (the oracle) through the converter.

Random official generators are built with NVIDIA's code (``pip install
torch==2.13.0; pip install --no-deps draggan``; never copied, only imported
here), perturbed so that every parameter matters (non-zero noise strengths
and biases, a random ``w_avg``, biases large enough to hit ``conv_clamp``),
pickled the way official training writes its snapshots, converted by our
converter in a subprocess that never imports torch, loaded with
`load_stylegan2` and compared: mapping outputs and ``w_avg``, and images for
the same z and for the same ws, psi in {1, 0.7}, ``noise_mode='const'``.

Relative error = max |ours - official| / max |official|, required <= 1e-5
(float32, highest matmul precision).
"""

import copy
import json
import os
import pickle
import subprocess
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip(
    'torch', reason='the official StyleGAN2 oracle needs torch==2.13.0')
draggan = pytest.importorskip(
    'draggan', reason='the official StyleGAN2 code: pip install --no-deps '
    'draggan')
sys.path.insert(0, os.path.join(os.path.dirname(draggan.__file__),
                                'stylegan2'))
from training import networks as official  # noqa: E402  # pylint: disable=all

from gjscc_jax.models.stylegan2 import load_stylegan2  # noqa: E402
from weights_convert import stylegan2 as convert_lib  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = 1e-5
BATCH = 2

# (resolution, channel_base, mapping layers, conv_clamp, kwargs layout).
# 'stylegan3' passes the synthesis kwargs flattened, as the stylegan3 repo's
# networks_stylegan2.Generator does.
CONFIGS = {
    'r32_cb16384_map8_noclamp': (32, 16384, 8, None, 'ada'),
    'r64_cb32768_map2_clamp256': (64, 32768, 2, 256, 'stylegan3'),
    'r256_cb16384_map2_clamp256': (256, 16384, 2, 256, 'ada'),
}


def _official_generator(res, channel_base, mapping_layers, clamp, layout,
                        seed):
  torch.manual_seed(seed)
  synthesis_kwargs = dict(channel_base=channel_base, channel_max=512,
                          num_fp16_res=4, conv_clamp=clamp)
  common = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=res,
                img_channels=3, mapping_kwargs=dict(num_layers=mapping_layers))
  if layout == 'ada':
    g = official.Generator(**common, synthesis_kwargs=synthesis_kwargs)
  else:
    g = official.Generator(**common, **synthesis_kwargs)
  with torch.no_grad():
    for name, p in g.named_parameters():
      if name.endswith(('bias', 'noise_strength')):
        p.add_(torch.randn_like(p) * 0.5)
      if clamp is not None and name.endswith('conv1.bias'):
        p[0] = 400.0                      # Saturates conv_clamp = 256.
    g.mapping.w_avg.copy_(torch.randn_like(g.mapping.w_avg))
  return g.eval()


def _snapshot(g_ema, path, with_d=False, g=None):
  """Pickles like stylegan2-ada's training_loop.py network snapshots."""
  d = None
  if with_d:
    d = official.Discriminator(c_dim=0, img_resolution=g_ema.img_resolution,
                               img_channels=3, channel_base=1024,
                               channel_max=32)
  data = dict(G=g if g is not None else g_ema, D=d, G_ema=g_ema,
              augment_pipe=None, training_set_kwargs=dict(path='ffhq.zip'))
  for key, value in data.items():
    if isinstance(value, torch.nn.Module):
      data[key] = copy.deepcopy(value).eval().requires_grad_(False)
  with open(path, 'wb') as f:
    pickle.dump(data, f)


def _rosinality_checkpoint(g_ema, path, latent_avg=True):
  """Writes g_ema's tensors under rosinality stylegan2-pytorch's names (and
  its w_avg as 'latent_avg', unless `latent_avg` is False)."""
  sd = {k: v.detach().clone() for k, v in g_ema.state_dict().items()}
  out = {}
  for i in range(g_ema.mapping.num_layers):
    out[f'style.{i + 1}.weight'] = sd[f'mapping.fc{i}.weight']
    out[f'style.{i + 1}.bias'] = sd[f'mapping.fc{i}.bias']
  out['input.input'] = sd['synthesis.b4.const'][None]
  fir = torch.tensor(np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64 * 4,
                     dtype=torch.float32)

  def styled(dst, src, up=False):
    out[f'{dst}.conv.weight'] = sd[f'{src}.weight'][None]
    out[f'{dst}.conv.modulation.weight'] = sd[f'{src}.affine.weight']
    out[f'{dst}.conv.modulation.bias'] = sd[f'{src}.affine.bias']
    out[f'{dst}.noise.weight'] = sd[f'{src}.noise_strength'].reshape(1)
    out[f'{dst}.activate.bias'] = sd[f'{src}.bias']
    if up:
      out[f'{dst}.conv.blur.kernel'] = fir

  def to_rgb(dst, src, up=True):
    out[f'{dst}.conv.weight'] = sd[f'{src}.weight'][None]
    out[f'{dst}.conv.modulation.weight'] = sd[f'{src}.affine.weight']
    out[f'{dst}.conv.modulation.bias'] = sd[f'{src}.affine.bias']
    out[f'{dst}.bias'] = sd[f'{src}.bias'].reshape(1, -1, 1, 1)
    if up:
      out[f'{dst}.upsample.kernel'] = fir

  styled('conv1', 'synthesis.b4.conv1')
  to_rgb('to_rgb1', 'synthesis.b4.torgb', up=False)
  out['noises.noise_0'] = sd['synthesis.b4.conv1.noise_const'][None, None]
  res, k = 8, 0
  while res <= g_ema.img_resolution:
    styled(f'convs.{2 * k}', f'synthesis.b{res}.conv0', up=True)
    styled(f'convs.{2 * k + 1}', f'synthesis.b{res}.conv1')
    to_rgb(f'to_rgbs.{k}', f'synthesis.b{res}.torgb')
    for j, conv in ((2 * k + 1, 'conv0'), (2 * k + 2, 'conv1')):
      out[f'noises.noise_{j}'] = sd[f'synthesis.b{res}.{conv}.noise_const'][
          None, None]
    res, k = res * 2, k + 1
  extra = {'latent_avg': sd['mapping.w_avg']} if latent_avg else {}
  torch.save({'g_ema': out, **extra}, path)


_CONVERT_SCRIPT = """
import json, sys
from weights_convert.__main__ import main
from weights_convert.stylegan2 import convert
jobs = json.loads(sys.argv[1])
for src, dst, network in jobs[1:]:
  convert(src, dst, network=network)
src, dst, _ = jobs[0]
assert main(['stylegan2', src, dst]) == 0
assert 'torch' not in sys.modules, 'the converter imported torch'
"""


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  """Builds, pickles and converts all oracle generators (torch-free)."""
  tmp = tmp_path_factory.mktemp('oracle')
  nets, jobs = {}, []
  for i, (name, cfg) in enumerate(CONFIGS.items()):
    g = _official_generator(*cfg, seed=i)
    nets[name] = g
    if i == 0:  # Also: a real D inside, and a G that differs from G_ema.
      g_train = _official_generator(*cfg, seed=100)
      _snapshot(g, tmp / f'{name}.pkl', with_d=True, g=g_train)
      nets['G_of_' + name] = g_train
      jobs.append((str(tmp / f'{name}.pkl'), str(tmp / ('G_of_' + name)),
                   'G'))
      _rosinality_checkpoint(g, tmp / 'rosinality.pt')
      nets['rosinality'] = g
      jobs.append((str(tmp / 'rosinality.pt'), str(tmp / 'rosinality'),
                   'G_ema'))
      _rosinality_checkpoint(g, tmp / 'no_avg.pt', latent_avg=False)
      jobs.append((str(tmp / 'no_avg.pt'), str(tmp / 'no_avg'), 'G_ema'))
    else:
      _snapshot(g, tmp / f'{name}.pkl')
    jobs.append((str(tmp / f'{name}.pkl'), str(tmp / name), 'G_ema'))
  jobs.insert(0, jobs.pop())  # The CLI handles the last one.
  env = dict(os.environ, PYTHONPATH=REPO)
  subprocess.run([sys.executable, '-c', _CONVERT_SCRIPT, json.dumps(jobs)],
                 check=True, cwd=REPO, env=env)
  return tmp, nets


def _rel(ours, ref):
  return float(np.max(np.abs(np.asarray(ours) - ref)) / np.max(np.abs(ref)))


def _compare(g_off, path, seed=0):
  """Returns the relative errors of every compared quantity."""
  g, v = load_stylegan2(path, precision='highest')
  z = np.random.RandomState(seed).randn(BATCH, 512).astype(np.float32)
  mapping = jax.jit(lambda v, z, psi: g.apply(v, z, truncation_psi=psi,
                                              method=g.map))
  synth = jax.jit(lambda v, ws: g.apply(v, ws, noise_mode='const',
                                        method=g.synthesize))
  errors = {'w_avg': _rel(v['buffers']['mapping']['w_avg'],
                          g_off.mapping.w_avg.numpy())}
  for psi in (1.0, 0.7):
    with torch.no_grad():
      ws_off = g_off.mapping(torch.from_numpy(z), None, truncation_psi=psi)
      img_off = g_off.synthesis(ws_off, noise_mode='const')
    ws_off = ws_off.numpy()
    img_off = img_off.numpy().transpose(0, 2, 3, 1)
    with jax.default_matmul_precision('highest'):
      ws = mapping(v, z, psi)
      errors[f'mapping psi={psi}'] = _rel(ws, ws_off)
      errors[f'image from z psi={psi}'] = _rel(synth(v, ws), img_off)
      errors[f'image from ws psi={psi}'] = _rel(synth(v, ws_off), img_off)
  return errors, (g, v, ws_off, img_off)


@pytest.mark.parametrize('name', list(CONFIGS))
def test_matches_official_generator(converted, name):
  tmp, nets = converted
  errors, (g, v, ws, img_off) = _compare(nets[name], tmp / name)
  print(f'\n{name}: ' + ', '.join(f'{k} {e:.1e}' for k, e in errors.items()))
  assert max(errors.values()) <= TOLERANCE, errors
  res, cbase, layers, clamp, _ = CONFIGS[name]
  assert g.config == dict(z_dim=512, w_dim=512, img_resolution=res,
                          img_channels=3, mapping_layers=layers,
                          channel_base=cbase, channel_max=512,
                          conv_clamp=clamp)
  if clamp is not None:  # The clamp is active: without it images differ.
    g_free = g.clone(conv_clamp=None)
    with jax.default_matmul_precision('highest'):
      free = jax.jit(lambda v, ws: g_free.apply(
          v, ws, method=g_free.synthesize))(v, ws)
    assert _rel(free, img_off) > 1e-3


def test_network_g_selects_the_training_generator(converted):
  tmp, nets = converted
  name = next(iter(CONFIGS))
  errors, _ = _compare(nets['G_of_' + name], tmp / ('G_of_' + name))
  assert max(errors.values()) <= TOLERANCE, errors


def test_rosinality_checkpoint_matches_official_images(converted):
  tmp, nets = converted
  errors, _ = _compare(nets['rosinality'], tmp / 'rosinality')
  print('\nrosinality: ' + ', '.join(f'{k} {e:.1e}' for k, e in
                                     errors.items()))
  assert max(errors.values()) <= TOLERANCE, errors
  with open(tmp / 'rosinality' / 'config.json') as f:
    assert json.load(f)['source']['kind'] == 'rosinality'


def test_missing_w_avg_is_estimated_from_the_mapping_network(converted):
  """A rosinality checkpoint without latent_avg: w_avg becomes the mean of
  the official mapping network's outputs (not 0), recorded as estimated."""
  tmp, nets = converted
  g_off = nets['rosinality']
  _, v = load_stylegan2(tmp / 'no_avg')
  estimate = np.asarray(v['buffers']['mapping']['w_avg'])
  z = torch.from_numpy(np.random.RandomState(5).randn(
      2 ** 15, g_off.z_dim).astype(np.float32))
  with torch.no_grad():
    w = g_off.mapping(z, None)[:, 0].numpy().astype(np.float64)
  # Within 5 standard errors of the official mapping's mean, per coordinate
  # (the estimate uses 2**17 other latents).
  error = np.abs(estimate - w.mean(0)) / (w.std(0) / np.sqrt(len(w)))
  assert error.max() < 5.0, error.max()
  assert np.abs(estimate).max() > 10 * (w.std(0) / np.sqrt(len(w))).max()
  with open(tmp / 'no_avg' / 'config.json') as f:
    source = json.load(f)['source']
  assert source['w_avg']['samples'] == convert_lib.W_AVG_SAMPLES
