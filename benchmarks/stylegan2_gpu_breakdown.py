r"""Where StyleGAN2's forward spends its time on an accelerator, and the
routes of its upsampling convolution compared.

  python -m benchmarks.stylegan2_gpu_breakdown --out breakdown.json
  python -m benchmarks.stylegan2_gpu_breakdown --tiny     # CPU check

The generator is the accelerator suite's (`accelerator_suite.py`, stage
`sg2_fwd`): 256x256, channel base 16384, channel max 512, w_dim 512, random
weights, batch 64, `noise_mode='const'`. For each route of `conv0`'s
stride-2 transposed convolution + [1, 3, 3, 1] FIR (every block but the
first), the synthesis network is compiled and timed (2 warm-ups, 10 calls,
median), in bfloat16 and float32, forward and forward + backward w.r.t. W+:

* ``phases``: `gjscc_jax.ops.upsample_conv.phases` (the library's CPU
  form): four small stride-1 convolutions of the input, one per output
  phase, the FIR as shifted adds on the phases, one interleave.
* ``transposed``: `upsample_conv.transposed` (the library's GPU and TPU
  form): one transposed convolution (an lhs-dilated convolution, which
  cuDNN runs as a strided data-gradient kernel), then the FIR as shifted
  adds at the output resolution.
* ``transposed_6x6``: the FIR folded into the kernel (the 3x3 kernel
  convolved with the 4x4 filter: 6x6), one lhs-dilated convolution.

Each route's image is checked against ``phases`` at 'highest' precision.
FLOPs are XLA's count of the ``phases`` program (the same useful work for
every route), set against a bf16 / fp32 8192^3 matmul timed in the same
run. With ``--profile``, a device trace of the bf16 forward of each route
(`jax.profiler`, Perfetto JSON) is summed per kernel name: the time in
convolutions, XLA fusions and copies.
"""

import argparse
import collections
import glob
import gzip
import json
import os
import tempfile
import time

import numpy as np


import jax  # noqa: E402 pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # noqa: E402 pylint: disable=g-import-not-at-top
from jax import lax  # noqa: E402 pylint: disable=g-import-not-at-top

from gjscc_jax.models import stylegan2  # noqa: E402 pylint: disable=g-import-not-at-top
from gjscc_jax.models.stylegan2 import resampling  # noqa: E402 pylint: disable=g-import-not-at-top
from gjscc_jax.ops import upsample_conv  # noqa: E402 pylint: disable=g-import-not-at-top

_DN = ('NHWC', 'HWIO', 'NHWC')
_FIR = np.array([1., 3., 3., 1.], np.float32) / 4  # Gain 2 per axis.


def fir_kernel(kernel):
  """The 6x6 kernel of the transposed convolution followed by the FIR."""
  f = jnp.asarray(np.outer(_FIR, _FIR), kernel.dtype)
  k6 = jnp.zeros((6, 6) + kernel.shape[2:], kernel.dtype)
  for i in range(4):
    for j in range(4):
      k6 = k6.at[i:i + 3, j:j + 3].add(f[i, j] * kernel)
  return k6


def transposed_6x6(x, kernel, *, precision=None):
  """`upsample_conv_2x` as one transposed convolution with the FIR folded
  into a 6x6 kernel."""
  return lax.conv_general_dilated(
      x, fir_kernel(kernel)[::-1, ::-1], (1, 1), ((3, 3), (3, 3)),
      lhs_dilation=(2, 2), dimension_numbers=_DN, precision=precision)


ROUTES = {'phases': upsample_conv.phases,
          'transposed': upsample_conv.transposed,
          'transposed_6x6': transposed_6x6}


def _time(fn, args, warmups, calls):
  for _ in range(warmups):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(calls):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return float(np.median(times)), float(np.percentile(times, 10))


def matmul_ceiling(dtype, n, warmups, calls):
  """TFLOP/s of an n^3 matmul at default precision (fastest decile)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
  f = jax.jit(jnp.matmul)
  _, p10 = _time(f, (a, b), warmups, calls)
  return 2 * n ** 3 / p10 / 1e12


def _programs(sizes, dtype, backward):
  module = stylegan2.Generator(
      z_dim=512, w_dim=512, img_resolution=sizes['resolution'],
      mapping_layers=2, channel_base=sizes['channel_base'], channel_max=512,
      conv_clamp=256, dtype=dtype)
  variables = jax.jit(module.init)(jax.random.PRNGKey(0),
                                   jnp.zeros((1, 512), jnp.float32))
  ws = jax.random.normal(jax.random.PRNGKey(2),
                         (sizes['batch'], module.num_ws, 512), jnp.float32)

  def synth(v, ws):
    return module.apply(v, ws, noise_mode='const', method=module.synthesize)
  if not backward:
    return synth, (variables, ws)
  loss = lambda ws, v: jnp.sum(jnp.square(synth(v, ws).astype(jnp.float32)))
  return (lambda v, ws: jax.value_and_grad(loss)(ws, v)), (variables, ws)


def direct_flops(fn, *args):
  """XLA's FLOP count of `fn(*args)` lowered for CUDA on the CPU backend
  (direct convolutions, whatever the host's route); 0 where unavailable."""
  try:
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                            args)
    with jax.default_device(jax.devices('cpu')[0]):
      cost = jax.jit(fn).trace(*abstract).lower(
          lowering_platforms=('cuda',)).cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost['flops'])
  except Exception:  # pylint: disable=broad-except
    return 0.0


def _with_route(route, thunk):
  original = resampling.upsample_conv_2x
  resampling.upsample_conv_2x = ROUTES[route]
  try:
    return thunk()
  finally:
    resampling.upsample_conv_2x = original


def kernel_summary(trace_dir, top):
  """`{'total_ms', 'by_kind', 'top'}` of the device kernels in a Perfetto
  trace written by `jax.profiler.trace(..., create_perfetto_trace=True)`."""
  paths = glob.glob(os.path.join(trace_dir, '**', 'perfetto_trace.json.gz'),
                    recursive=True)
  if not paths:
    return dict(error='no Perfetto trace written')
  with gzip.open(paths[0], 'rt') as f:
    events = json.load(f)
  events = events['traceEvents'] if isinstance(events, dict) else events
  names = {e['pid']: e.get('args', {}).get('name', '') for e in events
           if e.get('ph') == 'M' and e.get('name') == 'process_name'}
  device = {pid for pid, n in names.items()
            if ('GPU' in n or 'TPU' in n or '/device:' in n)
            and 'CPU' not in n and 'Host' not in n}
  per_name = collections.defaultdict(lambda: [0.0, 0])
  for e in events:
    if e.get('ph') == 'X' and e.get('pid') in device:
      entry = per_name[e.get('name', '?')]
      entry[0] += float(e.get('dur', 0)) / 1e3
      entry[1] += 1

  def kind(name):
    n = name.lower()
    if any(s in n for s in ('conv', 'xmma', 'gemm', 'cudnn', 'cutlass',
                            'sm90', 'sm80', 'wgmma', 'dgrad', 'fprop',
                            'wgrad')):
      return 'convolution/matmul'
    if 'fusion' in n or 'triton' in n or n.startswith(('loop_', 'input_')):
      return 'xla fusion'
    if any(s in n for s in ('copy', 'transpose', 'memcpy', 'memset')):
      return 'copy/transpose'
    return 'other'
  by_kind = collections.defaultdict(float)
  for name, (ms, _) in per_name.items():
    by_kind[kind(name)] += ms
  ranked = sorted(per_name.items(), key=lambda kv: -kv[1][0])[:top]
  return dict(trace=os.path.basename(paths[0]),
              processes=sorted(set(names.values())),
              device_processes=sorted(names[p] for p in device),
              total_ms=sum(ms for ms, _ in per_name.values()),
              by_kind=dict(by_kind),
              top=[dict(name=n[:120], ms=ms, count=c)
                   for n, (ms, c) in ranked])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default=None, help='JSON of every figure.')
  parser.add_argument('--tiny', action='store_true',
                      help='CPU sizes (32x32, channel base 512, batch 2).')
  parser.add_argument('--routes', default=','.join(ROUTES))
  parser.add_argument('--rows', default='fwd_bf16,fwd_fp32,fwdbwd_bf16',
                      help='Programs: fwd|fwdbwd _ bf16|fp32.')
  parser.add_argument('--profile', action='store_true',
                      help='Device kernel breakdown of each bf16 forward.')
  parser.add_argument('--budget-s', type=float, default=300.0)
  args = parser.parse_args(argv)
  start = time.perf_counter()
  tiny = args.tiny or jax.default_backend() == 'cpu'
  sizes = (dict(resolution=32, channel_base=512, batch=2, warmups=1, calls=3,
                matmul=512) if tiny else
           dict(resolution=256, channel_base=16384, batch=64, warmups=2,
                calls=10, matmul=8192))
  routes = args.routes.split(',')
  result = dict(backend=jax.default_backend(),
                device=str(jax.devices()[0].device_kind),
                jax=jax.__version__, sizes=sizes, rows=[], parity={},
                profiles={})

  def save():
    if args.out:
      with open(args.out, 'w') as f:
        json.dump(result, f, indent=1)

  def left():
    return args.budget_s - (time.perf_counter() - start)

  result['ceiling_tflops'] = {
      name: matmul_ceiling(dtype, sizes['matmul'], 2, 10)
      for name, dtype in (('bf16', jnp.bfloat16), ('fp32', jnp.float32))}
  print('ceilings TFLOP/s', result['ceiling_tflops'], flush=True)

  flops = {}
  for backward in (False, True):
    for label, dtype in (('bf16', jnp.bfloat16), ('fp32', jnp.float32)):
      if f"{'fwdbwd' if backward else 'fwd'}_{label}" not in args.rows:
        continue
      for route in routes:
        name = f"{'fwdbwd' if backward else 'fwd'}_{label}_{route}"
        if left() < 30:
          result['rows'].append(dict(name=name, skipped='budget'))
          continue
        try:
          def run(route=route, backward=backward, dtype=dtype):
            fn, fargs = _programs(sizes, dtype, backward)
            t0 = time.perf_counter()
            lowered = jax.jit(fn).lower(*fargs)
            compiled = lowered.compile()
            compile_s = time.perf_counter() - t0
            median, p10 = _time(compiled, fargs, sizes['warmups'],
                                sizes['calls'])
            return compile_s, direct_flops(fn, *fargs), median, p10
          compile_s, counted, median, p10 = _with_route(route, run)
          if route == 'phases':
            flops[name] = counted
          useful = flops.get(f"{'fwdbwd' if backward else 'fwd'}_{label}_phases",
                             counted)
          row = dict(name=name, route=route, dtype=label, backward=backward,
                     images_per_s=sizes['batch'] / median, median_s=median,
                     p10_s=p10, compile_s=compile_s, flops_counted=counted,
                     flops_useful=useful,
                     tflops=useful / median / 1e12)
          row['pct_ceiling'] = 100 * row['tflops'] / result['ceiling_tflops'][label]
        except Exception as e:  # pylint: disable=broad-except
          row = dict(name=name, error=f'{type(e).__name__}: {e}'[:400])
        result['rows'].append(row)
        print(json.dumps(row), flush=True)
        save()

  # Parity against 'phases' (fp32, 'highest', two images).
  small = dict(sizes, batch=2)
  with jax.default_matmul_precision('highest'):
    fn, fargs = _programs(small, jnp.float32, False)
    ref = _with_route('phases', lambda: jax.jit(fn)(*fargs))
    for route in routes[1:]:
      fn, fargs = _programs(small, jnp.float32, False)
      out = _with_route(route, lambda: jax.jit(fn)(*fargs))
      result['parity'][route] = float(jnp.max(jnp.abs(out - ref)) /
                                      jnp.max(jnp.abs(ref)))
  print('parity vs phases (max rel, highest)', result['parity'], flush=True)
  save()

  if args.profile:
    for route in routes:
      if left() < 20:
        break
      try:
        def profile(route=route):
          fn, fargs = _programs(sizes, jnp.bfloat16, False)
          compiled = jax.jit(fn).lower(*fargs).compile()
          jax.block_until_ready(compiled(*fargs))
          with tempfile.TemporaryDirectory() as d:
            with jax.profiler.trace(d, create_perfetto_trace=True):
              for _ in range(3):
                jax.block_until_ready(compiled(*fargs))
            return kernel_summary(d, 25)
        summary = _with_route(route, profile)
      except Exception as e:  # pylint: disable=broad-except
        summary = dict(error=f'{type(e).__name__}: {e}'[:400])
      result['profiles'][route] = summary
      print(f'profile {route}:', json.dumps(summary, indent=1)[:6000],
            flush=True)
      save()

  print(f"\n{'row':34s} {'img/s':>9s} {'TFLOP/s':>8s} {'%ceil':>6s} "
        f"{'compile s':>9s}")
  for row in result['rows']:
    if 'images_per_s' in row:
      print(f"{row['name']:34s} {row['images_per_s']:9.1f} "
            f"{row['tflops']:8.1f} {row['pct_ceiling']:6.1f} "
            f"{row['compile_s']:9.1f}")
    else:
      print(f"{row['name']:34s} {row.get('skipped') or row.get('error')}")
  save()


if __name__ == '__main__':
  main()
