"""The accelerator benchmark: every throughput figure of the project in one run.

One command measures, on one device, each stage of `STAGES` against its
official PyTorch peer on the same device, and rewrites a JSON file after
every stage, so that a run cut short keeps what it measured::

  python -m benchmarks.accelerator_suite --tiny       # CPU sizes (`SIZES`)
  python -m benchmarks.accelerator_suite --budget-s 450 --out $OUT/accelerator_suite.json

Stages, in order of value: ``env`` (versions; measured bf16 and fp32 matmul
TFLOP/s and device-copy GB/s, the ceilings); ``prepare`` (the random
official StyleGAN2, 256², channel base 16384, both sides load); ``sg2_fwd``
and ``sg2_fwdbwd`` (our synthesis network in bf16 and fp32, forward and
forward+backward w.r.t. W+) with NVIDIA's code as ``sg2_*_peer`` (fp32
fused and non-fused, and on CUDA fp16 with its custom ops where they
build); ``lpips`` (LPIPS-VGG value+grad) with the official ``lpips`` as
``lpips_peer``; ``ilo_identity`` (one ILO round of 8 steps at 256², batch
1, 8, 64) with the sequential PyTorch ILO loop of
`benchmarks/inverse_throughput.py` as ``ilo_peer``; ``ilo_deepjscc``
(A = DeepJSCC); ``train_deepjscc``, ``train_generative`` (the trainer's own
step at paper scale, batch 32).

This process is the parent: it runs every stage in a process of its own
(JAX preallocates device memory, and JAX never shares a process with
PyTorch) from `accelerator_stages.py` (JAX) or `accelerator_peers.py`
(torch), keeps the budget, compares the two sides' outputs and prints the
table; it never imports JAX. Per row: images/s (median of the timed calls,
p10/p90 beside it), compile time, memory, achieved FLOP/s and its fraction
of the measured ceiling of the row's dtype, the error against the peer.
Timed calls run at the default matmul precision; the parity outputs are
computed apart in full fp32 (ours at 'highest' precision, PyTorch with TF32
off) and compared as max |ours - peer| / max |peer|. ``--budget-s`` (450 s
on an accelerator) skips what no longer fits, and says so; the output ends
with a table of at most 40 lines and one verdict per target.
benchmarks/README.md has the details and the device recipe.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from benchmarks import accelerator_peers as peers  # noqa: E402 pylint: disable=wrong-import-position

#: The training configs the JSCC stages build through the library
#: (`schemes.build_scheme`): (config name, argument, {dotted key: value}).
#: Full: the paper's `deepjscc_ffhq` and `generative_ffhq` (bcr 1/192, 256²,
#: the synthesis network fine-tuned at a tenth of the rate, MSE + 0.1
#: LPIPS-VGG). Tiny: their `:demo` at 16x16 with the small (Bourtsoulatze)
#: encoder, 4x downsampling (the Tung network alone takes XLA:CPU ~15 s per
#: program to compile).
PAPER_DEEPJSCC = ('deepjscc_ffhq', '', {})
PAPER_GENERATIVE = ('generative_ffhq', '', {})
_TINY_ENCODER = {'data.resolution': 16, 'model.downsampling': 4,
                 'model.latent_channels': 8}
DEMO_DEEPJSCC = ('deepjscc_ffhq', 'demo', dict(
    _TINY_ENCODER, **{'model.arch': 'small'}))
DEMO_GENERATIVE = ('generative_ffhq', 'demo', dict(
    _TINY_ENCODER, **{'model.encoder_arch': 'small',
                      'model.inject_max_resolution': 8}))

SIZES = dict(
    full=dict(resolution=256, channel_base=16384, sg2_batch=64,
              parity_batch=4, lpips_size=256, lpips_batch=32, ilo_steps=(8,),
              ilo_identity_batches=(1, 8, 64),
              ilo_deepjscc_batches=(8, 1, 64), deepjscc=PAPER_DEEPJSCC,
              train_batch=32, generative=PAPER_GENERATIVE,
              matmul=(('bf16', 8192), ('fp32', 8192), ('fp32_highest', 4096)),
              lpips_dtypes=('fp32', 'bf16'), copy_mib=2048, warmups=2,
              calls=10),
    tiny=dict(resolution=16, channel_base=1024, sg2_batch=4, parity_batch=2,
              lpips_size=16, lpips_batch=2, ilo_steps=(2,),
              ilo_identity_batches=(1,), ilo_deepjscc_batches=(2,),
              deepjscc=DEMO_DEEPJSCC, train_batch=2,
              generative=DEMO_GENERATIVE,
              matmul=(('bf16', 256), ('fp32', 256), ('fp32_highest', 256)),
              lpips_dtypes=('fp32',), copy_mib=16, warmups=1, calls=3))

#: (stage, process kind, seconds it needs at least: full sizes, --tiny). A
#: stage with several rows skips the later ones itself when they don't fit.
STAGES = (
    ('env', 'jax', 20, 4), ('prepare', 'torch', 10, 3),
    ('sg2_fwd', 'jax', 40, 5), ('sg2_fwd_peer', 'torch', 25, 3),
    ('sg2_fwdbwd', 'jax', 50, 6), ('sg2_fwdbwd_peer', 'torch', 25, 3),
    ('lpips', 'jax', 30, 4), ('lpips_peer', 'torch', 15, 3),
    ('ilo_identity', 'jax', 50, 10), ('ilo_peer', 'torch', 20, 4),
    ('ilo_deepjscc', 'jax', 60, 10), ('train_deepjscc', 'jax', 40, 6),
    ('train_generative', 'jax', 80, 12))
#: Stages that load the generator the `prepare` stage writes.
NEEDS_PREPARE = ('sg2_', 'ilo_')
#: Peer stage -> our stage it is compared with (skipped when that was).
PEER_OF = dict(sg2_fwd_peer='sg2_fwd', sg2_fwdbwd_peer='sg2_fwdbwd',
               lpips_peer='lpips', ilo_peer='ilo_identity')
#: Stages whose PyTorch ops would use the custom CUDA build.
USES_CUDA_OPS = ('sg2_fwd_peer', 'sg2_fwdbwd_peer', 'ilo_peer')
#: --tiny on a CPU proves the code, it times nothing that matters: XLA:CPU
#: compiles about four times faster without LLVM's optimisations and with
#: its older loop emitters (measured in CPU time on the 2-core host).
TINY_XLA_FLAGS = ('--xla_backend_optimization_level=0 '
                  '--xla_llvm_disable_expensive_passes=true '
                  '--xla_cpu_use_fusion_emitters=false '
                  '--xla_cpu_parallel_codegen_split_count=1')
#: Seconds kept for the final table; stages stop this much earlier.
RESERVE_S = 4.0

#: (error key, our file, key, peer file, key): compared in the parent. The
#: ``*_timed`` keys compare our timed outputs (default precision, bf16 or
#: fp32) with the peer's full-fp32 ones; the others are both in full fp32.
PARITY = (
    ('sg2_fwd_image', 'sg2_fwd', 'image', 'sg2_fwd_peer', 'image'),
    ('sg2_fwd_image_bf16_timed', 'sg2_fwd', 'image_bf16_timed',
     'sg2_fwd_peer', 'image'),
    ('sg2_fwd_image_fp32_timed', 'sg2_fwd', 'image_fp32_timed',
     'sg2_fwd_peer', 'image'),
    ('sg2_fwdbwd_grad_ws', 'sg2_fwdbwd', 'grad_ws', 'sg2_fwdbwd_peer',
     'grad_ws'),
    ('sg2_fwdbwd_grad_ws_bf16_timed', 'sg2_fwdbwd', 'grad_ws_bf16_timed',
     'sg2_fwdbwd_peer', 'grad_ws'),
    ('sg2_fwdbwd_grad_ws_fp32_timed', 'sg2_fwdbwd', 'grad_ws_fp32_timed',
     'sg2_fwdbwd_peer', 'grad_ws'),
    ('lpips_value', 'lpips', 'value', 'lpips_peer', 'value'),
    ('lpips_grad', 'lpips', 'grad', 'lpips_peer', 'grad'),
    ('ilo_objective0', 'ilo_identity', 'objective0', 'ilo_peer',
     'objective0'),
    ('ilo_objective0_timed', 'ilo_identity', 'objective0_timed', 'ilo_peer',
     'objective0'),
)


# ----------------------------------------------------------------------------
# The parent: runs the stages, keeps the budget, compares, reports.


def _tail(path, lines=15, chars=2500):
  try:
    with open(path, errors='replace') as f:
      text = f.read().strip().splitlines()
  except OSError:
    return ''
  return '\n'.join(text[-lines:])[-chars:]


def _die_with_parent():
  """In a stage's process, before it runs: SIGKILL it if the suite dies
  (Linux's PR_SET_PDEATHSIG), so no stage outlives a suite that was killed
  and keeps the device."""
  try:
    import ctypes  # pylint: disable=import-outside-toplevel
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)
  except (OSError, AttributeError):
    pass


def _kill(proc):
  """Ends a stage we started, with everything it started (its session)."""
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except ProcessLookupError:
    pass
  proc.wait()


class Suite:
  """The parent process: one `run` per suite."""

  def __init__(self, args):
    self.args = args
    self.t0 = time.time()
    self.work = tempfile.mkdtemp(prefix='accelerator-suite-')
    self.budget = args.budget_s or 450.0  # Until `env` tells the mode.
    self.mode = 'tiny' if args.tiny else ('full' if args.full else 'auto')
    self.env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (REPO, os.environ.get('PYTHONPATH')) if p),
        PYTHONUNBUFFERED='1',
        TORCH_EXTENSIONS_DIR=os.path.join(self.work, 'torch_ext'),
        # A compilation cache of this run only: programs that stages share
        # (a model's init, a target's LPIPS features) compile once, and every
        # timed program's compile_s is a cold compile.
        JAX_COMPILATION_CACHE_DIR=os.path.join(self.work, 'jax_cache'),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='1',
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
    self.ops_proc, self.ops_waited, self.standby = None, 0.0, None
    self.backend = None  # `env` tells
    self.results = dict(
        suite='benchmarks.accelerator_suite', command=sys.argv,
        started=datetime.datetime.now().isoformat(timespec='seconds'),
        stages={}, cuda_ops=dict(status='not started'), parity={})

  # -- bookkeeping

  def left(self):
    return self.t0 + self.budget - RESERVE_S - time.time()

  def save(self):
    self.results.update(elapsed_s=time.time() - self.t0, budget_s=self.budget,
                        mode=self.mode)
    peers.write_json(self.args.out, self.results)

  def config(self):
    """A stage's config: its sizes (`SIZES` of every mode while `env` has
    not chosen one), work folder, deadline, the CUDA ops' state."""
    return dict(mode=self.mode, sizes=SIZES.get(self.mode), sizes_by_mode=SIZES,
                work=self.work, deadline=time.time() + self.left() - 1.0,
                cuda_ops=self.results['cuda_ops']['status'])

  def log(self, message):
    print(f'[{time.time() - self.t0:6.1f} s] {message}', flush=True)

  # -- stages

  def spawn(self, name, kind):
    """Starts a stage's process on standby: it imports its libraries (no
    device is touched) and waits for its config, so that the import of the
    next stage overlaps the current one."""
    module = ('benchmarks.accelerator_peers' if kind == 'torch'
              else 'benchmarks.accelerator_suite')
    env = dict(self.env)
    if self.mode == 'tiny' and kind == 'jax' and self.backend == 'cpu':
      env['XLA_FLAGS'] = f"{env.get('XLA_FLAGS', '')} {TINY_XLA_FLAGS}".strip()
    with open(os.path.join(self.work, f'{name}.log'), 'w') as out:
      return subprocess.Popen(
          [sys.executable, '-m', module, '--stage', name, '--config',
           os.path.join(self.work, f'{name}.config.json'), '--result',
           os.path.join(self.work, f'{name}.json')], stdout=out,
          stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True,
          preexec_fn=_die_with_parent)

  def skip_reason(self, name, needs_s):
    status = lambda stage: self.results['stages'].get(stage, {}).get(
        'status', 'not run')
    if name.startswith(NEEDS_PREPARE) and status('prepare') != 'ok':
      return 'skipped: needs the prepare stage'
    if name in PEER_OF and status(PEER_OF[name]).startswith('skipped'):
      return f'skipped: {PEER_OF[name]} was'
    if needs_s > self.left():
      return (f'skipped: budget (needs ~{needs_s:.0f} s, '
              f'{max(self.left(), 0):.0f} s left)')
    return None

  def run_stage(self, name, kind, needs_s, proc=None, after=None):
    """Runs one stage (`proc`: its standby process, if spawned) and records
    it; `after` = (name, kind) of the next stage, spawned on standby."""
    entry = dict(kind=kind)
    self.results['stages'][name] = entry
    skipped = self.skip_reason(name, needs_s)
    if skipped:
      if proc is not None:
        _kill(proc)
      entry['status'] = skipped
      self.log(f'{name}: {skipped}')
      self.save()
      return entry, None
    if name in USES_CUDA_OPS:
      self.poll_cuda_ops(wait=True)
    proc = proc or self.spawn(name, kind)
    standby = self.spawn(*after) if after else None
    start = time.time()
    peers.write_json(os.path.join(self.work, f'{name}.config.json'),
                     self.config())
    try:
      rc = proc.wait(timeout=max(self.left(), 1.0))
    except subprocess.TimeoutExpired:
      _kill(proc)
      rc = None
    entry['wall_s'] = time.time() - start
    try:
      with open(os.path.join(self.work, f'{name}.json')) as f:
        entry.update(json.load(f))
    except (OSError, ValueError):
      entry.update(rows=[], info={})
    if rc == 0:
      entry['status'] = 'ok'
    else:
      entry['status'] = ('timeout: budget' if rc is None
                         else f'error (exit {rc})')
      entry['error'] = _tail(os.path.join(self.work, f'{name}.log'))
    self.log(f'{name}: {entry["status"]} ({entry["wall_s"]:.1f} s)')
    self.compare()
    self.save()
    return entry, standby

  def start_cuda_ops(self, env_info):
    if env_info.get('platform') != 'gpu' or self.args.no_cuda_ops:
      why = ('skipped: --no-cuda-ops' if self.args.no_cuda_ops else
             'skipped: no CUDA device (fp16 peer skipped too)')
      self.results['cuda_ops'] = dict(status=why)
      return
    cfg_path = os.path.join(self.work, 'cuda_ops.config.json')
    peers.write_json(cfg_path, self.config())
    if env_info.get('compute_capability'):  # The build and every later load
      self.env.setdefault('TORCH_CUDA_ARCH_LIST',  # agree: no rebuild.
                          env_info['compute_capability'])
    env = self.env
    self.ops_log = os.path.join(self.work, 'cuda_ops.log')
    with open(self.ops_log, 'w') as out:
      self.ops_proc = subprocess.Popen(
          [sys.executable, '-m', 'benchmarks.accelerator_peers',
           '--stage', 'cuda_ops', '--config', cfg_path, '--result',
           os.path.join(self.work, 'cuda_ops.json')], stdout=out,
          stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True,
          preexec_fn=_die_with_parent)
    self.ops_start = time.time()
    self.results['cuda_ops'] = dict(status='building')
    self.log('cuda_ops: building in the background')

  def poll_cuda_ops(self, wait=False):
    """Updates results['cuda_ops']: 'built', 'did not build: ...' or
    'building'; may wait (up to --ops-wait-s in all) for the build."""
    proc = self.ops_proc
    if proc is None:
      return
    allowance = min(self.args.ops_wait_s - self.ops_waited, self.left() - 60)
    if wait and proc.poll() is None and allowance > 0:
      start = time.time()
      try:
        proc.wait(timeout=allowance)
      except subprocess.TimeoutExpired:
        pass
      self.ops_waited += time.time() - start
    seconds = time.time() - self.ops_start
    if proc.poll() is None and (seconds > self.args.ops_cap_s or not wait):
      if seconds <= self.args.ops_cap_s:
        return
      _kill(proc)
      status = f'did not build: still compiling after {seconds:.0f} s'
    elif proc.poll() is None:
      self.results['cuda_ops'] = dict(status='building',
                                      note='peers so far used the reference ops')
      return
    else:
      try:
        with open(os.path.join(self.work, 'cuda_ops.json')) as f:
          info = json.load(f)['info']
      except (OSError, ValueError, KeyError):
        info = {}
      if info.get('built'):
        status = 'built'
      else:
        status = 'did not build: ' + (info.get('reason') or _tail(
            self.ops_log, 3, 300) or f'exit {proc.returncode}')
    self.ops_proc = None
    self.results['cuda_ops'] = dict(status=status, seconds=seconds)
    if status != 'built':
      self.results['cuda_ops']['log'] = _tail(self.ops_log, 12, 1500)
    self.log(f'cuda_ops: {status}')

  def run(self):
    env, _ = self.run_stage('env', 'jax', 0)
    info = env.get('info', {})
    if env['status'] != 'ok' or 'mode' not in info:
      self.log('env failed: nothing else can run')
      self.report()
      return 1
    self.mode, self.backend = info['mode'], info['backend']
    if not self.args.budget_s:
      self.budget = 450.0 if self.mode == 'full' else 600.0
    self.start_cuda_ops(info)
    wanted = self.args.stages.split(',') if self.args.stages else None
    plan = [(name, kind, full_s if self.mode == 'full' else tiny_s)
            for name, kind, full_s, tiny_s in STAGES[1:]
            if not wanted or name in wanted or name == 'prepare']
    for i, (name, kind, needs_s) in enumerate(plan):
      after = plan[i + 1][:2] if i + 1 < len(plan) else None
      _, self.standby = self.run_stage(name, kind, needs_s, self.standby,
                                       after)
    if self.ops_proc is not None:
      self.poll_cuda_ops()
      if self.ops_proc is not None:
        _kill(self.ops_proc)
        self.results['cuda_ops'] = dict(status='did not build: the suite '
                                        'ended first')
    self.report()
    return 0

  # -- comparing and reporting

  def compare(self):
    """Parity errors of every (ours, peer) pair whose files both exist."""
    def load(name, key):
      path = os.path.join(self.work, f'{name}.npz')
      if not os.path.exists(path):
        return None
      with np.load(path) as f:
        return np.asarray(f[key], np.float64) if key in f.files else None
    for name, ours, ours_key, peer, peer_key in PARITY:
      a, b = load(ours, ours_key), load(peer, peer_key)
      if a is None or b is None:
        continue
      diff = np.abs(a - b)
      self.results['parity'][name] = dict(
          max_rel=float(diff.max() / max(np.abs(b).max(), 1e-30)),
          l2_rel=float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)),
          precision=('ours fp32 at highest precision vs PyTorch fp32 with TF32'
                     ' off' if not name.endswith('_timed') else
                     'ours as timed (default precision, the dtype named) vs '
                     'PyTorch fp32 with TF32 off'))

  def report(self):
    self.results['table'], self.results['targets'] = report_lines(
        self.results)
    self.save()
    print('\n'.join(self.results['table']))
    print(f'\nresults: {self.args.out} ({time.time() - self.t0:.0f} s)')


# -- the table


def _rows(results):
  rows = {}
  for name, stage in results['stages'].items():
    for row in stage.get('rows', ()):
      rows[row['name']] = dict(row, stage=name)
  return rows


def _fastest(rows, prefix):
  cands = [r for n, r in rows.items()
           if n.startswith(prefix) and 'images_per_s' in r]
  return max(cands, key=lambda r: r['images_per_s']) if cands else None


def _ceilings(rows):
  out = {}
  for key in ('bf16', 'fp32', 'fp32_highest'):
    r = rows.get(f'matmul_{key}')
    if r and 'flops_per_call' in r:
      out[key] = r['flops_per_call'] / r['timing']['p10_s'] / 1e12
  r = rows.get('device_copy')
  if r:
    out['copy_gbs'] = r['bytes_moved'] / r['timing']['p10_s'] / 1e9
  return out


#: (our row, label, peer row prefix, parity key shown).
TABLE = (
    ('sg2_fwd_bf16', 'SG2 fwd bf16', 'official_fwd_', 'sg2_fwd_image_bf16_timed'),
    ('sg2_fwd_fp32', 'SG2 fwd fp32', 'official_fwd_fp32', 'sg2_fwd_image'),
    ('sg2_fwdbwd_bf16', 'SG2 fwd+bwd bf16', 'official_fwdbwd_',
     'sg2_fwdbwd_grad_ws_bf16_timed'),
    ('sg2_fwdbwd_fp32', 'SG2 fwd+bwd fp32', 'official_fwdbwd_fp32',
     'sg2_fwdbwd_grad_ws'),
    ('lpips_fp32', 'LPIPS-VGG v+g fp32', 'official_lpips', 'lpips_grad'),
    ('lpips_bf16', 'LPIPS-VGG v+g bf16', 'official_lpips', None),
    ('ilo_identity_b1', 'ILO A=id b1', 'pytorch_ilo_b1', 'ilo_objective0'),
    ('ilo_identity_b8', 'ILO A=id b8', 'pytorch_ilo_b1', None),
    ('ilo_identity_b64', 'ILO A=id b64', 'pytorch_ilo_b1', None),
    ('ilo_identity_b2', 'ILO A=id b2', 'pytorch_ilo_b1', None),
    ('ilo_deepjscc_b1', 'ILO A=deepjscc b1', None, None),
    ('ilo_deepjscc_b8', 'ILO A=deepjscc b8', None, None),
    ('ilo_deepjscc_b64', 'ILO A=deepjscc b64', None, None),
    ('ilo_deepjscc_b2', 'ILO A=deepjscc b2', None, None),
    ('train_deepjscc', 'train DeepJSCC', None, None),
    ('train_generative', 'train GenerativeJSCC', None, None),
)


def _peer_label(r):
  """'fp16 fused+ops' (custom CUDA ops), 'fp32 nonfused', 'ilo b1', ..."""
  name = r['name'].replace('official_', '').replace('pytorch_', '')
  parts = [p for p in name.split('_') if p not in ('fwd', 'fwdbwd', 'lpips')]
  return ' '.join(parts) + ('+ops' if r.get('ops') == 'cuda' else '')


def report_lines(results):
  """The final table (at most 40 lines) and the verdict per target."""
  rows = _rows(results)
  ceil = _ceilings(rows)
  env = results['stages'].get('env', {}).get('info', {})
  v = env.get('versions', {})
  lines = [
      f"{env.get('device_kind', '?')} ({env.get('backend', '?')}, "
      f"{env.get('device_count', '?')} dev), mode {results.get('mode')}, "
      f"jax {v.get('jax', '?')}, torch {v.get('torch', '?')}, python "
      f"{env.get('python', '?')}",
      f"official CUDA ops: {results['cuda_ops']['status']}"[:110],
      'ceilings: ' + ', '.join(
          f'{k} {val:.3g} TFLOP/s' if k != 'copy_gbs' else f'copy {val:.3g} GB/s'
          for k, val in ceil.items()),
      f"{'row':<21}{'batch':>5}{'ours img/s':>12}{'peer img/s':>12} "
      f"{'peer':<17}{'x':>6}{'compile s':>10}{'mem GiB':>8}{'TFLOP/s':>9}"
      f"{'%ceil':>6}{'err':>9}"]
  for name, label, peer_prefix, parity_key in TABLE:
    r = rows.get(name)
    if r is None:
      continue
    if 'skipped' in r or 'error' in r:
      why = (f"skipped: {r['skipped']}" if 'skipped' in r
             else f"error: {r['error']}")
      lines.append(f'{label:<21} {why}'[:110])
      continue
    peer = _fastest(rows, peer_prefix) if peer_prefix else None
    ratio = r['images_per_s'] / peer['images_per_s'] if peer else None
    mem = r.get('device_peak_bytes', r.get('program_bytes'))
    c = ceil.get(r['dtype'])
    frac = r['tflops'] / c if c and 'tflops' in r else None
    err = results['parity'].get(parity_key, {}).get('max_rel')
    fmt = lambda x, f: format(x, f) if x is not None else '-'
    lines.append(
        f"{label:<21}{r['images']:>5}{r['images_per_s']:>12.4g}"
        f"{fmt(peer and peer['images_per_s'], '>12.4g'):>12} "
        f"{(_peer_label(peer) if peer else '-')[:17]:<17}"
        f"{fmt(ratio, '.2f'):>6}{r['compile_s']:>10.1f}"
        f"{fmt(mem and mem / 2**30, '.2f'):>8}{fmt(r.get('tflops'), '.3g'):>9}"
        f"{fmt(frac and 100 * frac, '.0f'):>6}{fmt(err, '.1e'):>9}")
  unfinished = {}
  for name, stage in results['stages'].items():
    status = stage.get('status', '?')
    if status != 'ok':
      unfinished.setdefault(status.split(' (')[0], []).append(name)
  for status, names in unfinished.items():
    lines.append(f"{status}: {', '.join(names)}")
  targets = _targets(rows, ceil)
  for t in targets:
    lines.append(f"target: {t['target']}: {t['verdict']}"
                 + (f" ({t['detail']})" if t.get('detail') else ''))
  return lines[:40], targets


def _targets(rows, ceil):
  """The four targets of the issue, each met / not met / not measured."""
  out = []

  def verdict(target, value, goal, detail):
    if value is None:
      out.append(dict(target=target, verdict='not measured'))
    else:
      out.append(dict(target=target, value=value, goal=goal, detail=detail,
                      verdict='met' if value >= goal else 'not met'))

  r = rows.get('sg2_fwd_bf16')
  frac = (r['tflops'] / ceil['bf16'] if r and 'tflops' in r and 'bf16' in ceil
          else None)
  verdict('SG2 fwd bf16 >= 40% of the bf16 matmul ceiling', frac, 0.40,
          frac is not None and f'{100 * frac:.0f}%')
  ours = [rows[n] for n in ('sg2_fwdbwd_bf16', 'sg2_fwdbwd_fp32')
          if n in rows and 'images_per_s' in rows[n]]
  peer = _fastest(rows, 'official_fwdbwd_')
  ratio = (max(o['images_per_s'] for o in ours) / peer['images_per_s']
           if ours and peer else None)
  verdict('SG2 fwd+bwd >= 1.5x the official generator, fastest modes', ratio,
          1.5, ratio is not None and f'{ratio:.2f}x vs {_peer_label(peer)}')
  r, peer = rows.get('lpips_fp32'), _fastest(rows, 'official_lpips')
  ratio = (r['images_per_s'] / peer['images_per_s']
           if r and 'images_per_s' in r and peer else None)
  verdict('LPIPS-VGG value+grad >= 1.5x official (fp32)', ratio, 1.5,
          ratio is not None and f'{ratio:.2f}x')
  ours = [r for n, r in rows.items()
          if n.startswith('ilo_identity_') and 'images_per_s' in r]
  peer = rows.get('pytorch_ilo_b1')
  best = max(ours, key=lambda r: r['images_per_s']) if ours else None
  ratio = (best['images_per_s'] / peer['images_per_s']
           if best and peer and 'images_per_s' in peer else None)
  verdict('InverseJSCC >= 10x the images/s of the PyTorch ILO loop, b1',
          ratio, 10.0, ratio is not None and
          f"{ratio:.1f}x at batch {best['images']}")
  return out


# ----------------------------------------------------------------------------


def main(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n', maxsplit=1)[0])
  parser.add_argument('--tiny', action='store_true',
                      help='CPU sizes (the default on a CPU backend)')
  parser.add_argument('--full', action='store_true',
                      help='accelerator sizes even on a CPU (dry runs)')
  parser.add_argument('--budget-s', type=float, default=None,
                      help='skip stages that would end later (default 450 '
                      's on an accelerator, 600 with --tiny)')
  parser.add_argument('--out', default=None,
                      help='results JSON (default $OUT/accelerator_suite.json'
                      ' if $OUT is set, else ./accelerator_suite.json)')
  parser.add_argument('--stages', default=None,
                      help='comma-separated subset of the stages (env and '
                      'prepare always run)')
  parser.add_argument('--ops-wait-s', type=float, default=60.0,
                      help='longest wait, in all, for the CUDA ops build')
  parser.add_argument('--ops-cap-s', type=float, default=300.0,
                      help='the CUDA ops build is stopped after this')
  parser.add_argument('--no-cuda-ops', action='store_true',
                      help='do not build the official custom CUDA ops')
  parser.add_argument('--keep-work', action='store_true',
                      help='keep the stages\' logs and outputs (printed path)')
  parser.add_argument('--stage', help=argparse.SUPPRESS)
  parser.add_argument('--config', help=argparse.SUPPRESS)
  parser.add_argument('--result', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.stage:  # A JAX stage's process (the parent never imports JAX).
    from benchmarks import accelerator_stages  # pylint: disable=import-outside-toplevel
    return accelerator_stages.main(args.stage, args.config, args.result)
  if args.out is None:
    args.out = os.path.join(os.environ.get('OUT', '.'),
                            'accelerator_suite.json')
  suite = Suite(args)
  try:
    return suite.run()
  finally:
    for proc in (suite.ops_proc, suite.standby):
      if proc is not None and proc.poll() is None:
        _kill(proc)
    if args.keep_work:
      print(f'work folder kept: {suite.work}')
    else:
      shutil.rmtree(suite.work, ignore_errors=True)


if __name__ == '__main__':
  sys.exit(main())
