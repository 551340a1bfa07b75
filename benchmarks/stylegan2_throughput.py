"""StyleGAN2 synthesis throughput: gjscc-jax (Flax/XLA) vs the official code.

Measures, in one run on one machine, for the same randomly initialised
generator (default: 256x256, channel base 16384, batch 4):

* forward (``noise_mode='const'``) and forward+backward (gradient of
  ``sum(img**2)`` w.r.t. the W+ latents) images per second, for our jitted
  Flax generator and for NVIDIA's official PyTorch code (``pip install
  torch==2.13.0; pip install --no-deps draggan``) in both of its modulated
  convolution modes (fused = grouped conv, the inference default; non-fused);
* the ratios ours / official (against the faster official mode; the fused
  mode's forward+backward only with --official-fused-backward);
* the compiled FLOP count per image from XLA's cost analysis, and the achieved
  fraction of the machine's fp32 matmul peak, measured here with a jitted
  square matmul and with torch's (MKL) where it imports: against the best
  of the two, and against XLA's own. On CPU our 3x3 convolutions with many
  channels and tiles run as Winograd F(4x4, 3x3) (`gjscc_jax.ops.winograd`),
  which does fewer FLOPs than a direct convolution: the table also gives the
  count of the same program with every convolution direct (compiled at
  'highest' precision), and the "effective" rate that count implies.

By default the script runs itself twice in subprocesses: with the default
glibc allocator, and with::

  GLIBC_TUNABLES=glibc.malloc.mmap_max=0:\
glibc.malloc.trim_threshold=68719476736:glibc.malloc.arena_max=1

which keeps large scratch buffers mapped instead of returning them to the OS
on every call (fewer page faults for both peers). Usage::

  python -m benchmarks.stylegan2_throughput                # both allocators
  python -m benchmarks.stylegan2_throughput --allocator default --repeats 5

Both peers run in the same process, one after the other, with all cores.
Report the load average printed at the start and end: the machine should be
otherwise idle.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

TUNED_ALLOCATOR = ('glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold='
                   '68719476736:glibc.malloc.arena_max=1')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from benchmarks.matmul_peak import compiled_flops, matmul_fns, matmul_gflops  # noqa: E402 pylint: disable=wrong-import-position
from benchmarks.official_stylegan2 import random_official_generator  # noqa: E402 pylint: disable=wrong-import-position


def _time_interleaved(fns, repeats):
  """Times each of `fns` (name -> blocking callable) `repeats` times.

  The peers take turns (one call each per round), so a load burst on the
  machine hits all of them alike. Returns name -> (best, median) seconds.
  """
  for fn in fns.values():
    fn()  # Warm-up (compilation, allocator, caches).
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      t = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t)
  return {k: (float(np.min(v)), float(np.median(v))) for k, v in times.items()}


def official_peers(g, ws_np, fused_backward=False):
  """Blocking callables for the official code, fused and non-fused.

  The fused (grouped-convolution) mode is NVIDIA's inference default; for
  training the official code uses the non-fused mode (stylegan3's
  ``fused_modconv_default='inference_only'``), so forward+backward is timed
  fused only on request (it is ~3x slower).
  """
  import torch
  ws = torch.from_numpy(ws_np)
  peers = {}
  for fused in (False, True):
    mode = 'fused' if fused else 'nonfused'

    def fwd(fused=fused):
      with torch.no_grad():
        g.synthesis(ws, noise_mode='const', fused_modconv=fused)

    def fwd_bwd(fused=fused):
      w = ws.clone().requires_grad_(True)
      img = g.synthesis(w, noise_mode='const', fused_modconv=fused)
      img.square().sum().backward()

    peers[f'official_{mode}_fwd'] = fwd
    if fused_backward or not fused:
      peers[f'official_{mode}_fwdbwd'] = fwd_bwd
  return peers


def our_peers(state, ws_np, args, info):
  """Blocking callables for our jitted generator (+ compile facts in info),
  and the images its timed forward makes."""
  import jax
  import jax.numpy as jnp
  from gjscc_jax.models.stylegan2 import Generator
  from weights_convert.stylegan2 import official_to_variables
  g = Generator(z_dim=512, w_dim=512, img_resolution=args.resolution,
                mapping_layers=args.mapping_layers,
                channel_base=args.channel_base, channel_max=512,
                dtype=jnp.dtype(args.dtype))
  variables = jax.tree.map(jnp.asarray, official_to_variables(state))
  ws = jnp.asarray(ws_np)

  def synth(v, ws):
    return g.apply(v, ws, noise_mode='const', method=g.synthesize)

  def loss(ws, v):
    return jnp.sum(jnp.square(synth(v, ws)))

  peers, image = {}, None
  for name, fn, fargs in (('fwd', synth, (variables, ws)),
                          ('fwdbwd', jax.value_and_grad(loss),
                           (ws, variables))):
    t = time.perf_counter()
    compiled = jax.jit(fn).lower(*fargs).compile()
    info[f'ours_{name}_compile_s'] = time.perf_counter() - t
    info[f'ours_{name}_gflop_per_image'] = (
        compiled_flops(compiled) / ws.shape[0] / 1e9)
    # The same program with every convolution direct (conv2d takes Winograd
    # only below 'highest' precision): the arithmetic a direct
    # implementation does, against which the achieved rate is "effective".
    with jax.default_matmul_precision('highest'):
      direct = jax.jit(fn).lower(*fargs).compile()
    info[f'ours_{name}_direct_gflop_per_image'] = (
        compiled_flops(direct) / ws.shape[0] / 1e9)
    peers[f'ours_{name}'] = (
        lambda c=compiled, a=fargs: jax.block_until_ready(c(*a)))
    if name == 'fwd':
      image = np.asarray(compiled(*fargs))
  return peers, image


def run_once(args):
  """Measures everything in this process; returns a dict."""
  import jax
  res = {'allocator': os.environ.get('GLIBC_TUNABLES', 'default'),
         'load_before': os.getloadavg(), 'cpu_count': os.cpu_count(),
         'python': platform.python_version(), 'jax': jax.__version__,
         'config': vars(args)}
  ws = np.random.RandomState(0).randn(
      args.batch, 2 * int(np.log2(args.resolution)) - 2, 512).astype(
          np.float32)
  peers, state, official_image = {}, None, None
  if args.official:
    try:
      import torch
      res['torch'] = torch.__version__
      res['torch_threads'] = torch.get_num_threads()
      g, state = random_official_generator(
          args.resolution, args.channel_base, args.mapping_layers)
      peers.update(official_peers(g, ws, args.official_fused_backward))
      with torch.no_grad():
        official_image = g.synthesis(torch.from_numpy(ws), noise_mode='const',
                                     fused_modconv=False).numpy()
    except ImportError as e:
      res['official_skipped'] = f'{e} (pip install torch==2.13.0 draggan)'
  if state is None:
    import jax.numpy as jnp
    from gjscc_jax.models.stylegan2 import Generator
    g = Generator(z_dim=512, w_dim=512, img_resolution=args.resolution,
                  mapping_layers=args.mapping_layers,
                  channel_base=args.channel_base)
    state = _variables_to_state(
        g.init(jax.random.PRNGKey(0), jnp.zeros((1, 512))))
  ours, ours_image = our_peers(state, ws, args, res)
  peers.update(ours)
  if official_image is not None:
    # The oracle tests compare at 'highest' precision (direct convolutions);
    # this is the default route that is timed (Winograd on CPU).
    ref = official_image.transpose(0, 2, 3, 1)
    res['image_rel_error_vs_official'] = float(
        np.max(np.abs(ours_image - ref)) / np.max(np.abs(ref)))
  # The matmul yardstick takes its turns in the same rounds, so that it sees
  # the same machine (on a shared host its rate drifts by 20% and more
  # within minutes).
  matmuls = matmul_fns(with_torch=args.official)
  peers.update({f'matmul_{k}': fn for k, fn in matmuls.items()})
  res['times'] = _time_interleaved(peers, args.repeats)
  res['matmul_peak_gflops'] = {
      k: matmul_gflops(res['times'][f'matmul_{k}'][0]) for k in matmuls}
  res['load_after'] = os.getloadavg()
  return res


def _variables_to_state(variables):
  """Inverse of official_to_variables (for runs without the official code)."""
  from flax import traverse_util
  state = {}
  for path, v in traverse_util.flatten_dict(variables).items():
    v = np.asarray(v)
    leaf = path[-1]
    if leaf == 'weight' and v.ndim == 2:
      v = v.T
    elif leaf == 'weight' and v.ndim == 4:
      v = v.transpose(3, 2, 0, 1)
    elif leaf == 'const':
      v = v.transpose(2, 0, 1)
    state['.'.join(path[1:])] = v
  return state


#: The targets this benchmark was written for (256x256, channel base 16384,
#: batch 4, 2-core CPU): ours / best official per allocator and pass, and
#: the forward's effective rate as a fraction of the best measured matmul.
SPEED_UP_TARGETS = {'default': {'fwd': 2.0, 'fwdbwd': 2.5},
                    'tuned': {'fwd': 1.4, 'fwdbwd': 1.8}}
PEAK_FRACTION_TARGET = 0.85


def _verdicts(r, batch):
  """Lines that set the measured figures against the targets."""
  t, peaks = r['times'], r['matmul_peak_gflops']
  allocator = 'default' if r['allocator'] == 'default' else 'tuned'
  lines = []
  for name, target in SPEED_UP_TARGETS[allocator].items():
    official = [t[k] for k in (f'official_nonfused_{name}',
                               f'official_fused_{name}') if k in t]
    if not official:
      continue
    best = t[f'ours_{name}'][0] / min(o[0] for o in official)
    median = t[f'ours_{name}'][1] / min(o[1] for o in official)
    lines.append(f'- {name}: {1 / best:.2f}x the official code (medians: '
                 f'{1 / median:.2f}x); target >= {target}x: '
                 f"{'met' if 1 / best >= target else 'NOT met'}")
  # Best-of against best-of, and median against median: on a shared host
  # the two can differ by 10 points.
  fractions = []
  for i in (0, 1):
    effective = (r['ours_fwd_direct_gflop_per_image'] * batch /
                 t['ours_fwd'][i])
    peak = max(matmul_gflops(t[f'matmul_{k}'][i]) for k in peaks)
    fractions.append((effective, peak, effective / peak))
  (effective, peak, fraction), (_, _, median) = fractions
  lines.append(f'- fwd: {effective:.0f} GFLOP/s effective = {fraction:.0%} of '
               f'the best matmul measured in the same rounds ({peak:.0f}; '
               f'medians: {median:.0%}); target >= '
               f"{PEAK_FRACTION_TARGET:.0%}: "
               f"{'met' if fraction >= PEAK_FRACTION_TARGET else 'NOT met'}")
  if 'image_rel_error_vs_official' in r:
    lines.append('- images vs official (this default route, max abs error / '
                 f"max abs): {r['image_rel_error_vs_official']:.1e}")
  return lines


def report(results, batch):
  """Markdown tables (images/s from the best of the repeats)."""
  lines = []
  for r in results:
    peaks = r['matmul_peak_gflops']
    peak = max(peaks.values())
    t = r['times']
    lines.append(
        f"\n## allocator: {r['allocator']}\n\nload average before "
        f"{r['load_before'][0]:.2f}, after {r['load_after'][0]:.2f}; fp32 "
        'matmul peak ' + ', '.join(f'{k} {v:.0f}' for k, v in peaks.items()) +
        f" GFLOP/s; jax {r['jax']}, torch {r.get('torch', '-')} "
        f"({r.get('torch_threads', '-')} threads); {r['cpu_count']} CPUs\n")
    lines.append('| pass | ours img/s | official non-fused img/s | official '
                 'fused img/s | ours / best official | XLA GFLOP/img (direct '
                 'convs) | ours GFLOP/s (effective) | % of best matmul '
                 '(effective) | % of XLA matmul (effective) |')
    lines.append('|---|---|---|---|---|---|---|---|---|')
    for name in ('fwd', 'fwdbwd'):
      ours = batch / t[f'ours_{name}'][0]
      nf = t.get(f'official_nonfused_{name}')
      fu = t.get(f'official_fused_{name}')
      nf_ips = batch / nf[0] if nf else float('nan')
      fu_ips = batch / fu[0] if fu else float('nan')
      best = np.nanmax([nf_ips, fu_ips])
      gflop = r[f'ours_{name}_gflop_per_image']
      direct = r.get(f'ours_{name}_direct_gflop_per_image', gflop)
      rate, effective = gflop * ours, direct * ours
      lines.append(f'| {name} | {ours:.2f} | {nf_ips:.2f} | {fu_ips:.2f} | '
                   f'{ours / best:.2f}x | {gflop:.1f} ({direct:.1f}) | '
                   f'{rate:.0f} ({effective:.0f}) | {100 * rate / peak:.0f}% '
                   f'({100 * effective / peak:.0f}%) | '
                   f'{100 * rate / peaks["jax"]:.0f}% '
                   f'({100 * effective / peaks["jax"]:.0f}%) |')
    config = r['config']
    if (config['resolution'], config['channel_base'], batch) == (256, 16384,
                                                                 4):
      lines += [''] + _verdicts(r, batch)
  return '\n'.join(lines)


def _without_option(argv, name):
  """`argv` without ``name VALUE`` or ``name=VALUE``."""
  out, skip = [], False
  for a in argv:
    if skip:
      skip = False
    elif a == name:
      skip = True
    elif not a.startswith(name + '='):
      out.append(a)
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--resolution', type=int, default=256)
  p.add_argument('--channel-base', type=int, default=16384)
  p.add_argument('--mapping-layers', type=int, default=8)
  p.add_argument('--batch', type=int, default=4)
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--dtype', default='float32')
  p.add_argument('--allocator', choices=('both', 'default', 'tuned'),
                 default='both')
  p.add_argument('--no-official', dest='official', action='store_false')
  p.add_argument('--official-fused-backward', action='store_true',
                 help='also time the official fused mode forward+backward')
  p.add_argument('--json', action='store_true', help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.json:
    print('RESULT ' + json.dumps(run_once(args)))
    return
  # glibc reads GLIBC_TUNABLES only when a process starts, so every
  # allocator (a single one too) gets a fresh process with it set.
  results = []
  for allocator in (('default', 'tuned') if args.allocator == 'both'
                    else (args.allocator,)):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep +
               os.environ.get('PYTHONPATH', ''))
    env.pop('GLIBC_TUNABLES', None)
    if allocator == 'tuned':
      env['GLIBC_TUNABLES'] = TUNED_ALLOCATOR
    argv = _without_option(sys.argv[1:], '--allocator')
    cmd = [sys.executable, '-m', __spec__.name, *argv, '--json',
           '--allocator', allocator]
    prefix = f'GLIBC_TUNABLES={TUNED_ALLOCATOR} ' if allocator == 'tuned' else ''
    print(f'running: {prefix}python {" ".join(cmd[1:])}', flush=True)
    out = subprocess.run(cmd, env=env, cwd=REPO, check=True, capture_output=True,
                         text=True).stdout
    line = next(l for l in out.splitlines() if l.startswith('RESULT '))
    results.append(json.loads(line[len('RESULT '):]))
  print(report(results, args.batch))
  print('\n(best of --repeats interleaved rounds; medians and compile times '
        'in the JSON below)\n' + json.dumps(results))


if __name__ == '__main__':
  main()
