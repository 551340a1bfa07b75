"""LPIPS value-and-gradient throughput: ours vs lpips-jax vs official PyTorch.

Measures, in one run and on the same inputs, the time of one step of
``value, grad = value_and_grad(lambda x: mean(LPIPS(x, y)))(x)`` (the gradient
with respect to the reconstruction ``x``, as in training and InverseJSCC) at
256x256, batch 4, VGG16, float32:

* ``ours``: `gjscc_jax.losses.PerceptualLoss.lpips` (target features computed
  in every step, the same work as the peers);
* ``ours, fixed target``: the same with the target's features prepared once
  (`PerceptualLoss.prepare_target`), as InverseJSCC optimises against one
  received image for many steps;
* ``lpips-jax``: ``lpips_jax.LPIPS(net_type='vgg16')`` with its own weights;
* ``official lpips (PyTorch)``: ``lpips.LPIPS(net='vgg')`` 0.1.4 with the same
  weights, when ``lpips`` and ``torch`` import (torchvision is replaced by a
  stub that only builds the VGG16 feature layout; its random weights are then
  overwritten).

All values are checked to agree before timing. Candidates are timed
round-robin (one step each per round, starting with a different one each
round) so that load changes on a shared machine hit them all alike; the table
gives the median and the minimum step time and the load average. Run:

  python -m benchmarks.lpips_throughput [--size 256] [--batch 4] [--rounds 10]
"""

import argparse
import os
import pickle
import statistics
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np


from gjscc_jax.losses import lpips_weights  # noqa: E402 pylint: disable=g-import-not-at-top,wrong-import-position
from gjscc_jax.losses import PerceptualLoss  # noqa: E402 pylint: disable=g-import-not-at-top,wrong-import-position


def _ours(x, y, fixed_target):
  loss = PerceptualLoss(lambda_lpips=1.0, net='vgg')  # range check included
  params = loss.load_params()
  if fixed_target:
    target = jax.jit(loss.prepare_target)(params, y)
  else:
    target = y
  step = jax.jit(jax.value_and_grad(
      lambda x, t, p: jnp.mean(loss.lpips(p, x, t))))
  return lambda: step(x, target, params)


def _lpips_jax(x, y):
  from lpips_jax import LPIPS  # pylint: disable=import-outside-toplevel
  with open(lpips_weights.lpips_jax_weights_path('vgg'), 'rb') as f:
    params = {'params': jax.device_put(pickle.load(f))}
  model = LPIPS(net_type='vgg16')
  step = jax.jit(jax.value_and_grad(
      lambda x, y, p: jnp.mean(model.apply(p, x, y))))
  return lambda: step(x, y, params)


def _install_torchvision_stub():
  """A stand-in `torchvision.models.vgg16` (architecture only, no weights)."""
  import torch  # pylint: disable=import-outside-toplevel
  def vgg16(pretrained=False, **unused):
    del pretrained, unused
    layers, cin = [], 3
    for v in (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512,
              'M', 512, 512, 512, 'M'):
      if v == 'M':
        layers.append(torch.nn.MaxPool2d(2, 2))
      else:
        layers += [torch.nn.Conv2d(cin, v, 3, padding=1),
                   torch.nn.ReLU(inplace=True)]
        cin = v
    return types.SimpleNamespace(features=torch.nn.Sequential(*layers))
  stub = types.ModuleType('torchvision')
  stub.models = types.SimpleNamespace(vgg16=vgg16)
  sys.modules.setdefault('torchvision', stub)


def _official(x, y):
  """Official lpips 0.1.4 with our (= lpips-jax's) VGG weights, or None."""
  # Idle OpenMP workers of torch otherwise spin for a while after each step
  # and steal the cores from whichever candidate runs next.
  os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
  try:
    import torch  # pylint: disable=import-outside-toplevel
    _install_torchvision_stub()
    import lpips  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    print(f'official lpips skipped: {e}')
    return None
  model = lpips.LPIPS(net='vgg', pnet_rand=True, verbose=False).eval()
  params = lpips_weights.load_lpips_params('vgg')
  convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
  names = list(params['backbone'])
  with torch.no_grad():
    for conv, name in zip(convs, names, strict=True):
      conv.weight.copy_(torch.from_numpy(
          params['backbone'][name]['kernel'].transpose(3, 2, 0, 1).copy()))
      conv.bias.copy_(torch.from_numpy(params['backbone'][name]['bias']))
  tx = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
  ty = torch.from_numpy(np.asarray(y).transpose(0, 3, 1, 2).copy())

  def step():
    xx = tx.clone().requires_grad_(True)
    value = model(xx, ty).mean()
    (grad,) = torch.autograd.grad(value, xx)
    return value.detach(), grad
  return step


def _as_numpy(out):
  value, grad = out
  if hasattr(grad, 'detach'):  # torch: NCHW -> NHWC
    return float(value), grad.numpy().transpose(0, 2, 3, 1)
  return float(value), np.asarray(grad)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--size', type=int, default=256)
  parser.add_argument('--batch', type=int, default=4)
  parser.add_argument('--rounds', type=int, default=10)
  parser.add_argument('--no-official', action='store_true',
                      help='skip the PyTorch lpips peer')
  args = parser.parse_args(argv)

  load_start = os.getloadavg()
  shape = (args.batch, args.size, args.size, 3)
  kx, ky = jax.random.split(jax.random.PRNGKey(0))
  x = jax.random.uniform(kx, shape, minval=-1, maxval=1)
  y = jnp.clip(x + 0.3 * jax.random.normal(ky, shape), -1, 1)

  candidates = {'ours': _ours(x, y, False),
                'ours, fixed target': _ours(x, y, True),
                'lpips-jax': _lpips_jax(x, y)}
  if not args.no_official:
    official = _official(x, y)
    if official is not None:
      candidates['official lpips (PyTorch)'] = official

  reference = _as_numpy(candidates['lpips-jax']())
  for name, fn in candidates.items():  # also compiles / warms up
    value, grad = _as_numpy(jax.block_until_ready(fn()))
    rel = abs(value - reference[0]) / abs(reference[0])
    # The gradient is discontinuous where a max-pool window holds a near-tie,
    # which rounding differences between libraries can flip: compare norms.
    grad_rel = (np.linalg.norm(grad - reference[1])
                / np.linalg.norm(reference[1]))
    print(f'{name:<26} value {value:.7f}  rel. diff {rel:.1e}  '
          f'grad rel. L2 diff {grad_rel:.1e}')
    assert rel < 1e-5 and grad_rel < 1e-2, f'{name} disagrees with lpips-jax'

  times = {name: [] for name in candidates}
  cpu_times = {name: [] for name in candidates}
  names = list(candidates)
  for r in range(args.rounds):
    for name in names[r % len(names):] + names[:r % len(names)]:  # rotate
      fn = candidates[name]
      start, cpu_start = time.perf_counter(), time.process_time()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - start)
      cpu_times[name].append(time.process_time() - cpu_start)

  load = os.getloadavg()
  peers = [n for n in candidates if not n.startswith('ours')]
  fastest = min(peers, key=lambda n: statistics.median(times[n]))
  peer_median, peer_min = statistics.median(times[fastest]), min(times[fastest])
  print(f'\nLPIPS-VGG value+grad, {args.batch}x{args.size}x{args.size}, '
        f'float32, {jax.devices()[0].device_kind} ({os.cpu_count()} cpus), '
        f'jax {jax.__version__}, {args.rounds} rounds; load average at start '
        f'{load_start[0]:.2f}, at end {load[0]:.2f} {load[1]:.2f} '
        f'{load[2]:.2f}\n')
  print(f'Speed-up = time of the fastest peer ({fastest}) / time. CPU time '
        'is that of all threads of this process, which time-sharing with '
        'other processes inflates less than wall time.\n')
  peer_cpu = statistics.median(cpu_times[fastest])
  print('| implementation | wall s/step, median (min) | CPU s/step, median '
        '| images/s | speed-up: wall median | wall min | CPU |')
  print('|---|---|---|---|---|---|---|')
  for name, ts in times.items():
    med, cpu = statistics.median(ts), statistics.median(cpu_times[name])
    print(f'| {name} | {med:.3f} ({min(ts):.3f}) | {cpu:.3f} | '
          f'{args.batch / med:.2f} | {peer_median / med:.2f}x | '
          f'{peer_min / min(ts):.2f}x | {peer_cpu / cpu:.2f}x |')
  return 0


if __name__ == '__main__':
  sys.exit(main())
