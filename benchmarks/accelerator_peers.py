"""The PyTorch side of `benchmarks/accelerator_suite.py`, and what both share.

`accelerator_suite.py` runs every stage in a process of its own; the stages
that import torch live here, so that no process holds both JAX's and
PyTorch's device memory. Run by the suite, never by hand::

  python -m benchmarks.accelerator_peers --stage NAME --config CFG --result OUT

Stages:

* ``prepare``: the random official StyleGAN2 generator of
  `benchmarks.official_stylegan2` (``inversion=True``: noise, images in about
  [-1, 1], a real ``w_avg``), written as ``sg2_state.npz`` for the JAX side.
* ``cuda_ops``: builds the official code's custom CUDA ops (``bias_act``,
  ``upfirdn2d``; nvcc and ninja at run time), in the background, into the
  suite's ``TORCH_EXTENSIONS_DIR``; writes whether they built and why not.
* ``sg2_fwd_peer``, ``sg2_fwdbwd_peer``: NVIDIA's generator (``draggan``'s
  copy of stylegan2-ada-pytorch, imported, never copied), fp32 in both
  modulated-convolution modes and, on CUDA, fp16 (``num_fp16_res=4``,
  ``conv_clamp=256``, the ffhq256 configuration) with whichever ops built.
* ``lpips_peer``: the official ``lpips`` 0.1.4 VGG model (torchvision
  replaced by a stub that only lays out VGG16) with the shared random
  weights, value and gradient w.r.t. the first image.
* ``ilo_peer``: `benchmarks.inverse_throughput.TorchILO`, the sequential
  PyTorch ILO loop, at batch 1, from the same start as the JAX search.

Shared with the JAX side (numpy only): the random inputs and LPIPS weights
(`sg2_latents`, `lpips_images`, `random_lpips_weights`), the timing protocol
(`time_calls`) and the result files (`Recorder`).

Every peer stage saves, besides its timings, the outputs of a small batch
computed in full fp32 (TF32 off) to ``<stage>.npz`` in the work folder; the
suite compares them with the JAX side's.
"""

import argparse
import json
import os
import statistics
import sys
import time
import traceback
import types

import numpy as np


#: VGG16's convolutions up to relu5_3, (in, out) channels, torchvision order.
VGG16_CONVS = ((3, 64), (64, 64), (64, 128), (128, 128), (128, 256),
               (256, 256), (256, 256), (256, 512), (512, 512), (512, 512),
               (512, 512), (512, 512), (512, 512))
#: Channels of LPIPS-VGG's five taps (the lengths of its linear layers).
LPIPS_TAPS = (64, 128, 256, 512, 512)
#: W+ width of every generator here.
W_DIM = 512


# ----------------------------------------------------------------------------
# Shared inputs, timing and result files (numpy only).


def num_ws(resolution):
  """Rows of W+ of a generator of `resolution`: 2 log2(R) - 2."""
  return 2 * int(np.log2(resolution)) - 2


def sg2_latents(batch, resolution, seed=0):
  """Fixed W+ latents ``(batch, num_ws, 512)`` float32."""
  rng = np.random.RandomState(seed)
  return rng.randn(batch, num_ws(resolution), W_DIM).astype(np.float32)


def lpips_images(batch, size, seed=1):
  """A fixed pair ``(x, y)`` of NHWC float32 image batches in [-1, 1]."""
  rng = np.random.RandomState(seed)
  x = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
  y = np.clip(x + 0.3 * rng.randn(*x.shape), -1, 1).astype(np.float32)
  return x, y


def random_lpips_weights(seed=2):
  """Random LPIPS-VGG weights, the same on both sides.

  Returns ``{'conv{i}_weight': OIHW, 'conv{i}_bias', 'lin{i}': (C,)}``:
  He-scaled kernels (activations keep their scale through 13 layers), small
  biases, non-negative linear layers (as LPIPS v0.1's are). A random network
  costs what the pretrained one costs.
  """
  rng = np.random.RandomState(seed)
  w = {}
  for i, (cin, cout) in enumerate(VGG16_CONVS):
    w[f'conv{i}_weight'] = (rng.randn(cout, cin, 3, 3)
                            * np.sqrt(2.0 / (9 * cin))).astype(np.float32)
    w[f'conv{i}_bias'] = (0.01 * rng.randn(cout)).astype(np.float32)
  for i, c in enumerate(LPIPS_TAPS):
    w[f'lin{i}'] = np.abs(rng.randn(c) / c).astype(np.float32)
  return w


def time_calls(call, warmups, calls):
  """Times a blocking zero-argument `call`: warm-ups, then `calls` timed ones.

  Returns ``{'median_s', 'p10_s', 'p90_s', 'calls'}`` (percentiles by linear
  interpolation between the sorted times).
  """
  for _ in range(warmups):
    call()
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  p10, p90 = np.percentile(times, [10, 90])
  return dict(median_s=float(statistics.median(times)), p10_s=float(p10),
              p90_s=float(p90), calls=len(times))


def write_json(path, data):
  """Writes `data` to `path` atomically (a reader never sees half a file)."""
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(data, f, indent=1, default=float)
  os.replace(tmp, path)


class Recorder:
  """A stage's result file, rewritten after every row, so that a stage
  killed at its deadline still leaves what it measured.

  ``{'rows': [{...}], 'info': {...}}``.
  """

  def __init__(self, path):
    self.path = path
    self.data = dict(rows=[], info={})
    self.flush()

  def row(self, **row):
    self.data['rows'].append(row)
    self.flush()

  def info(self, **info):
    self.data['info'].update(info)
    self.flush()

  def flush(self):
    if self.path:
      write_json(self.path, self.data)


def wait_for_config(path, limit_s=3600.0):
  """Blocks until the suite writes this stage's config (see `Suite.spawn`);
  returns it. Exits if the suite dies or `limit_s` passes first."""
  start, parent = time.time(), os.getppid()
  while not os.path.exists(path):
    if time.time() - start > limit_s or os.getppid() != parent:
      sys.exit(3)  # The suite is gone.
    time.sleep(0.02)
  with open(path) as f:
    return json.load(f)


class Deadline:
  """The stage's absolute deadline (``time.time()`` seconds)."""

  def __init__(self, at):
    self.at = at

  def left(self):
    return self.at - time.time()

  def allows(self, seconds):
    return self.left() > seconds


# ----------------------------------------------------------------------------
# The official code, imported.


def _official_path():
  from benchmarks import official_stylegan2  # pylint: disable=import-outside-toplevel
  official_stylegan2.import_official_code()


def _device():
  import torch  # pylint: disable=import-outside-toplevel
  return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def _sync():
  import torch  # pylint: disable=import-outside-toplevel
  if torch.cuda.is_available():
    torch.cuda.synchronize()


def _full_fp32(on):
  """TF32 off (`on`) for the parity outputs, or back to PyTorch's defaults."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.backends.cuda.matmul.allow_tf32 = False  # PyTorch's default too
  torch.backends.cudnn.allow_tf32 = not on


def _use_ops(cfg, rec):
  """Makes the official ops use the CUDA plugins if the suite's background
  build made them, else their reference code (without a build attempt).
  Returns 'cuda' or 'ref'."""
  _official_path()
  from torch_utils.ops import bias_act, upfirdn2d  # pylint: disable=import-outside-toplevel,import-error
  state = cfg.get('cuda_ops', 'not built: no CUDA')
  if _device().type == 'cuda' and state == 'built':
    if bias_act._init() and upfirdn2d._init():  # pylint: disable=protected-access
      rec.info(ops='cuda')
      return 'cuda'
    state = 'built, but did not load'
  for module in (bias_act, upfirdn2d):
    module._inited, module._plugin = True, None  # pylint: disable=protected-access
  rec.info(ops='ref', ops_note=state)
  return 'ref'


def official_generator(cfg, fp16=False):
  """NVIDIA's Generator with the weights of ``sg2_state.npz``, eval mode,
  no parameter requiring gradients, on the device."""
  import torch  # pylint: disable=import-outside-toplevel
  _official_path()
  from training.networks import Generator  # pylint: disable=import-outside-toplevel,import-error
  s = cfg['sizes']
  g = Generator(
      z_dim=512, c_dim=0, w_dim=W_DIM, img_resolution=s['resolution'],
      img_channels=3, mapping_kwargs=dict(num_layers=2),
      synthesis_kwargs=dict(channel_base=s['channel_base'], channel_max=512,
                            num_fp16_res=4 if fp16 else 0,
                            conv_clamp=256 if fp16 else None)).eval()
  with np.load(os.path.join(cfg['work'], 'sg2_state.npz')) as state:
    g.load_state_dict({k: torch.from_numpy(state[k]) for k in state.files})
  for p in g.parameters():
    p.requires_grad_(False)
  return g.to(_device())


def _install_torchvision_stub():
  """`torchvision.models.vgg16`'s layout without weights, for `lpips`."""
  import torch  # pylint: disable=import-outside-toplevel

  def vgg16(**unused):
    del unused
    layers = []
    for i, (cin, cout) in enumerate(VGG16_CONVS):
      if i in (2, 4, 7, 10):
        layers.append(torch.nn.MaxPool2d(2, 2))
      layers += [torch.nn.Conv2d(cin, cout, 3, padding=1),
                 torch.nn.ReLU(inplace=True)]
    return types.SimpleNamespace(features=torch.nn.Sequential(*layers))
  stub = types.ModuleType('torchvision')
  stub.models = types.SimpleNamespace(vgg16=vgg16)
  sys.modules['torchvision'] = stub  # This process needs nothing else of it.


def official_lpips():
  """The official LPIPS-VGG with `random_lpips_weights`, on the device."""
  import torch  # pylint: disable=import-outside-toplevel
  _install_torchvision_stub()
  import lpips  # pylint: disable=import-outside-toplevel
  model = lpips.LPIPS(net='vgg', pretrained=False, pnet_rand=True,
                      verbose=False).eval()
  w = random_lpips_weights()
  convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
  with torch.no_grad():
    for i, conv in enumerate(convs):
      conv.weight.copy_(torch.from_numpy(w[f'conv{i}_weight']))
      conv.bias.copy_(torch.from_numpy(w[f'conv{i}_bias']))
    for i, lin in enumerate(model.lins):
      conv = lin.model[-1]
      conv.weight.copy_(torch.from_numpy(w[f'lin{i}']).reshape(conv.weight.shape))
  for p in model.parameters():
    p.requires_grad_(False)
  return model.to(_device())


def _timed_row(rec, cfg, name, call, images, deadline=None, **extra):
  """Times `call` (`time_calls`) and records a row; a row that would not
  leave 5 s before the deadline is recorded as skipped."""
  import torch  # pylint: disable=import-outside-toplevel
  if deadline is not None and not deadline.allows(5):
    rec.row(name=name, skipped=f'budget ({max(deadline.left(), 0):.0f} s '
            'left)')
    return
  cuda = torch.cuda.is_available()
  if cuda:
    torch.cuda.reset_peak_memory_stats()
  t = time_calls(call, cfg['sizes']['warmups'], cfg['sizes']['calls'])
  row = dict(name=name, images=images, images_per_s=images / t['median_s'],
             timing=t, **extra)
  if cuda:
    row['peak_bytes'] = int(torch.cuda.max_memory_allocated())
  rec.row(**row)


# ----------------------------------------------------------------------------
# Stages.


def stage_prepare(cfg, rec, deadline):
  del deadline
  from benchmarks.official_stylegan2 import random_official_generator  # pylint: disable=import-outside-toplevel
  s = cfg['sizes']
  _, state = random_official_generator(s['resolution'], s['channel_base'],
                                       mapping_layers=2, inversion=True)
  np.savez(os.path.join(cfg['work'], 'sg2_state.npz'), **state)
  rec.info(parameters=int(sum(v.size for v in state.values())),
           resolution=s['resolution'], channel_base=s['channel_base'])


def stage_cuda_ops(cfg, rec, deadline):
  """Builds bias_act and upfirdn2d; records 'built' or the reason."""
  del deadline
  import warnings  # pylint: disable=import-outside-toplevel
  _official_path()
  start = time.perf_counter()
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    from torch_utils.ops import bias_act, upfirdn2d  # pylint: disable=import-outside-toplevel,import-error
    built = bias_act._init() and upfirdn2d._init()  # pylint: disable=protected-access
  reason = [str(w.message) for w in caught if 'Failed to build' in str(w.message)]
  reason = ' | '.join(reason[0].strip().splitlines()[-6:])[-600:] if reason else ''
  rec.info(built=bool(built), reason=reason,
           seconds=time.perf_counter() - start)


def _sg2_stage(cfg, rec, deadline, backward):
  import torch  # pylint: disable=import-outside-toplevel
  s = cfg['sizes']
  torch.backends.cudnn.benchmark = True  # As the official training does.
  ops = _use_ops(cfg, rec)
  dev = _device()
  ws = torch.from_numpy(sg2_latents(s['sg2_batch'], s['resolution'])).to(dev)
  pass_name = 'fwdbwd' if backward else 'fwd'

  def call(g, fused, dtype_ws):
    def run():
      if backward:
        w = dtype_ws.clone().requires_grad_(True)
        img = g.synthesis(w, noise_mode='const', fused_modconv=fused)
        img.float().square().sum().backward()
      else:
        with torch.no_grad():
          g.synthesis(dtype_ws, noise_mode='const', fused_modconv=fused)
      _sync()
    return run

  g32 = official_generator(cfg)
  # The exact outputs for parity: fp32, TF32 off, the first images.
  _full_fp32(True)
  w = ws[:s['parity_batch']].clone().requires_grad_(backward)
  img = g32.synthesis(w, noise_mode='const', fused_modconv=False)
  out = {}
  if backward:
    img.square().sum().backward()
    out['grad_ws'] = w.grad.cpu().numpy()
  else:
    out['image'] = img.detach().cpu().numpy().transpose(0, 2, 3, 1)
  np.savez(os.path.join(cfg['work'], f'sg2_{pass_name}_peer.npz'), **out)
  _full_fp32(False)

  modes = (('nonfused', False), ('fused', True))
  if backward and dev.type != 'cuda':
    modes = modes[:1]  # Fused backward is ~3x slower on CPU: not a contender.
  for label, fused in modes:
    _timed_row(rec, cfg, f'official_{pass_name}_fp32_{label}',
               call(g32, fused, ws), s['sg2_batch'], deadline,
               dtype='float32', ops=ops)
  if dev.type != 'cuda':
    rec.info(fp16='skipped: fp16 and the custom ops need CUDA')
    return
  del g32
  g16 = official_generator(cfg, fp16=True)
  for label, fused in modes:
    _timed_row(rec, cfg, f'official_{pass_name}_fp16_{label}',
               call(g16, fused, ws), s['sg2_batch'], deadline,
               dtype='float16', ops=ops)


def stage_sg2_fwd_peer(cfg, rec, deadline):
  _sg2_stage(cfg, rec, deadline, backward=False)


def stage_sg2_fwdbwd_peer(cfg, rec, deadline):
  _sg2_stage(cfg, rec, deadline, backward=True)


def stage_lpips_peer(cfg, rec, deadline):
  del deadline
  import torch  # pylint: disable=import-outside-toplevel
  s = cfg['sizes']
  torch.backends.cudnn.benchmark = True
  dev = _device()
  model = official_lpips()
  nchw = lambda a: torch.from_numpy(a.transpose(0, 3, 1, 2).copy()).to(dev)
  x, y = (nchw(a) for a in lpips_images(s['lpips_batch'], s['lpips_size']))

  def value_and_grad(x, y):
    x = x.clone().requires_grad_(True)
    value = model(x, y).mean()
    (grad,) = torch.autograd.grad(value, x)
    return value, grad

  _full_fp32(True)
  p = s['parity_batch']
  value, grad = value_and_grad(x[:p], y[:p])
  np.savez(os.path.join(cfg['work'], 'lpips_peer.npz'),
           value=value.detach().cpu().numpy(),
           grad=grad.cpu().numpy().transpose(0, 2, 3, 1))
  _full_fp32(False)

  def call():
    value_and_grad(x, y)
    _sync()
  _timed_row(rec, cfg, 'official_lpips_fp32', call, s['lpips_batch'],
             dtype='float32')


def stage_ilo_peer(cfg, rec, deadline):
  del deadline
  import torch  # pylint: disable=import-outside-toplevel
  from benchmarks.inverse_throughput import TorchILO  # pylint: disable=import-outside-toplevel
  from gjscc_jax.inverse.ilo import ILOConfig  # pylint: disable=import-outside-toplevel
  s = cfg['sizes']
  torch.backends.cudnn.benchmark = True
  ops = _use_ops(cfg, rec)
  dev = _device()
  g = official_generator(cfg)
  baseline = TorchILO(g, official_lpips(), ILOConfig(steps=tuple(s['ilo_steps']),
                                                    latent_space='w_plus'))
  path = os.path.join(cfg['work'], 'ilo_identity_inputs.npz')
  if os.path.exists(path):  # The JAX search's start for its image 0.
    with np.load(path) as f:
      ws0, target = f['ws'], f['target']
      noises = [f[f'noise{i}'] for i in range(len(baseline.layers))]
  else:  # No JAX run to agree with: time from a start of our own.
    rec.info(parity='no start saved by the JAX stage: timing only')
    rng = np.random.RandomState(3)
    ws0 = np.broadcast_to(g.mapping.w_avg.cpu().numpy(),
                          (num_ws(s['resolution']), W_DIM))
    target = rng.uniform(-1, 1, (s['resolution'],) * 2 + (3,))
    noises = [rng.randn(l.resolution, l.resolution, 1) for l in baseline.layers]
  as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(dev)
  ws0 = as_t(ws0)[None]
  noises0 = [as_t(n[..., 0]) for n in noises]
  target0 = as_t(np.asarray(target).transpose(2, 0, 1))[None]
  if os.path.exists(path):
    _full_fp32(True)
    _, history = baseline.invert(target0, ws0, noises0)
    np.savez(os.path.join(cfg['work'], 'ilo_peer.npz'),
             objective0=np.float32(history[0]))
    _full_fp32(False)

  def call():
    baseline.invert(target0, ws0, noises0)
    _sync()
  _timed_row(rec, cfg, 'pytorch_ilo_b1', call, 1, dtype='float32', ops=ops,
             steps=list(s['ilo_steps']))


def _preimport(stage):
  """Imports what `stage` needs, before it is started (no device touched)."""
  import torch  # pylint: disable=import-outside-toplevel,unused-import
  _official_path()
  import training.networks  # pylint: disable=import-outside-toplevel,import-error,unused-import
  if stage in ('lpips_peer', 'ilo_peer'):
    _install_torchvision_stub()
    import lpips  # pylint: disable=import-outside-toplevel,unused-import
  if stage == 'ilo_peer':
    import torch._dynamo  # pylint: disable=import-outside-toplevel,unused-import,protected-access  # Adam's first use imports it
    import benchmarks.inverse_throughput  # pylint: disable=import-outside-toplevel,unused-import
  if stage == 'prepare':
    import benchmarks.official_stylegan2  # pylint: disable=import-outside-toplevel,unused-import


STAGES = {
    'prepare': stage_prepare, 'cuda_ops': stage_cuda_ops,
    'sg2_fwd_peer': stage_sg2_fwd_peer,
    'sg2_fwdbwd_peer': stage_sg2_fwdbwd_peer,
    'lpips_peer': stage_lpips_peer, 'ilo_peer': stage_ilo_peer,
}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--stage', required=True, choices=sorted(STAGES))
  parser.add_argument('--config', required=True)
  parser.add_argument('--result', required=True)
  args = parser.parse_args(argv)
  os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
  import torch  # pylint: disable=import-outside-toplevel
  _preimport(args.stage)
  cfg = wait_for_config(args.config)
  rec = Recorder(args.result)
  try:
    rec.info(torch=torch.__version__, device=str(_device()),
             threads=torch.get_num_threads())
    STAGES[args.stage](cfg, rec, Deadline(cfg['deadline']))
    rec.info(process_cpu_s=time.process_time())
  except Exception:  # pylint: disable=broad-except
    traceback.print_exc()
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
