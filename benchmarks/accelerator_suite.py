"""The accelerator benchmark: every throughput figure of the project in one run.

One command measures, on one device, each stage below against its official
PyTorch peer on the same device, and appends each stage's figures to a JSON
file as soon as the stage ends, so that a run cut short keeps what it
measured::

  python benchmarks/accelerator_suite.py --tiny                 # CPU, ~1 min
  python benchmarks/accelerator_suite.py --budget-s 450 --out $OUT/accelerator_suite.json

Stages, in order of value (`STAGES`; sizes for an H200, ``--tiny`` sizes in
`SIZES`):

* ``env``: backend, device, versions; the measured ceilings: bf16 and fp32
  (default precision, and 'highest') matmul TFLOP/s, device-copy GB/s.
* ``prepare`` (torch, CPU): the random official StyleGAN2 (256², channel
  base 16384) both sides load.
* ``sg2_fwd``, ``sg2_fwdbwd``: our synthesis network in bf16 and fp32,
  forward, and forward+backward w.r.t. the W+ latents; peers
  ``sg2_*_peer``: NVIDIA's code, fp32 (fused and non-fused modulated
  convolutions) and fp16 with its custom CUDA ops where they build.
* ``lpips``: LPIPS-VGG value and gradient in fp32 and bf16; peer
  ``lpips_peer``: the official ``lpips`` 0.1.4.
* ``ilo_identity``, ``ilo_deepjscc``: one ILO round (8 Adam steps at 256²)
  vmapped over a batch of 1, 8 and 64 images, A = identity and A = DeepJSCC
  (Tung, 256 filters); peer ``ilo_peer``: the sequential PyTorch ILO loop of
  `benchmarks/inverse_throughput.py` at batch 1.
* ``train_deepjscc``, ``train_generative``: the trainer's own step
  (`gjscc_jax.train.step.make_train_step`) at paper scale, batch 32.

Each stage runs in a process of its own (JAX preallocates device memory;
PyTorch peers never share a process with JAX): `accelerator_peers.py` holds
the PyTorch ones. The official code's custom CUDA ops build in the
background while the first JAX stages run. Per row: images/s (median of
timed calls, p10/p90 beside it), compile time, memory (XLA's
`memory_analysis` of the program and the device's ``peak_bytes_in_use``
where it has one), achieved FLOP/s (XLA's count of the program lowered for
a GPU, i.e. direct convolutions) and its fraction of the measured ceiling of
the row's dtype, and the error against the peer.

Protocol: compile once (timed), then warm-up calls and timed calls, each
ended by ``block_until_ready`` (2 and 10 on an accelerator, 1 and 3 with
``--tiny``). Timed calls run at the default matmul precision (TF32 or bf16
passes for fp32 on a GPU); the parity outputs are computed apart, in fp32 at
``jax.default_matmul_precision('highest')`` on our side and with TF32 off on
PyTorch's, and compared in the parent as max |ours - peer| / max |peer|.
``--budget-s`` (450 s on an accelerator) skips the stages that no longer
fit, and says so; the last output is a table of at most 40 lines and one
verdict per target.
"""

import argparse
import dataclasses
import datetime
import functools
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
  sys.path.insert(0, REPO)

# ----------------------------------------------------------------------------
# Library imports: the only place this script names the project's modules.
import jax  # noqa: E402 pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # noqa: E402 pylint: disable=g-import-not-at-top
import optax  # noqa: E402 pylint: disable=g-import-not-at-top

from gjscc_jax.inverse import forward_operators  # noqa: E402 pylint: disable=g-import-not-at-top
from gjscc_jax.inverse import generator as generator_lib  # noqa: E402
from gjscc_jax.inverse import ilo  # noqa: E402
from gjscc_jax.inverse import projections  # noqa: E402
from gjscc_jax.inverse import search  # noqa: E402
from gjscc_jax.losses import lpips as lpips_lib  # noqa: E402
from gjscc_jax.losses.perceptual import PerceptualLoss  # noqa: E402
from gjscc_jax.models import stylegan2  # noqa: E402
from gjscc_jax.models.deepjscc import DeepJSCC  # noqa: E402
from gjscc_jax.models.generative import build_generative_jscc  # noqa: E402
from gjscc_jax.train import step as step_lib  # noqa: E402
from gjscc_jax.train.schemes import Scheme  # noqa: E402  (-> gjscc_jax.schemes.base)
from weights_convert.stylegan2 import official_to_variables  # noqa: E402
from benchmarks import accelerator_peers as peers  # noqa: E402
from benchmarks.matmul_peak import compiled_flops  # noqa: E402
# ----------------------------------------------------------------------------

#: GenerativeJSCC at paper scale: `experiments/configs/generative_ffhq.py`
#: (bcr 1/192, FFHQ-256 StyleGAN2 fine-tuned at a tenth of the rate).
PAPER_GENERATIVE = dict(
    latent_channels=8, encoder_arch='tung', num_filters=256, downsampling=16,
    w_dim=512, synthesis_channel_base=16384, synthesis_channel_max=512,
    conv_clamp=256, injection='concat', inject_max_resolution=None,
    w_mode='per_layer', receiver_channel_base=8192, receiver_channel_max=512,
    receiver_res_blocks=2, receiver_snr_adaptive=True, noise_mode='const',
    lambda_lpips=0.1)
#: Its ``:demo`` widths and loss (MSE alone) at --tiny's 16x16, with the
#: small encoder (the Tung network alone takes XLA:CPU ~15 s per program to
#: compile).
DEMO_GENERATIVE = dict(
    PAPER_GENERATIVE, encoder_arch='small', downsampling=4, num_filters=32,
    w_dim=128, synthesis_channel_base=1024, synthesis_channel_max=64,
    receiver_channel_base=512, receiver_channel_max=64, receiver_res_blocks=1,
    inject_max_resolution=8, lambda_lpips=0.0)

SIZES = dict(
    full=dict(resolution=256, channel_base=16384, sg2_batch=64,
              parity_batch=4, lpips_size=256, lpips_batch=32, ilo_steps=(8,),
              ilo_identity_batches=(1, 8, 64),
              ilo_deepjscc_batches=(8, 1, 64), jscc=('tung', 256, 16),
              latent_channels=8, train_batch=32, generative=PAPER_GENERATIVE,
              matmul=(('bf16', 8192), ('fp32', 8192), ('fp32_highest', 4096)),
              lpips_dtypes=('fp32', 'bf16'), copy_mib=2048, warmups=2,
              calls=10),
    tiny=dict(resolution=16, channel_base=1024, sg2_batch=4, parity_batch=2,
              lpips_size=16, lpips_batch=2, ilo_steps=(2,),
              ilo_identity_batches=(1,), ilo_deepjscc_batches=(2,),
              jscc=('small', 32, 4), latent_channels=8, train_batch=2,
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
# Measuring one JAX program.


def _abstract(tree):
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)


def direct_flops(fn, *args):
  """XLA's FLOP count of ``fn(*args)`` lowered for a GPU, without compiling.

  Lowered on the CPU backend for the 'cuda' platform, so convolutions count
  as the direct ones an accelerator runs whatever this host's route (no
  Winograd), loop bodies once. None where that lowering is unavailable.
  """
  try:
    with jax.default_device(jax.devices('cpu')[0]):
      lowered = jax.jit(fn).trace(*_abstract(args)).lower(
          lowering_platforms=('cuda',))
      cost = lowered.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost['flops'])
    return flops if flops > 0 else None
  except Exception as e:  # pylint: disable=broad-except
    print(f'direct_flops: {type(e).__name__}: {e}'[:500], file=sys.stderr)
    return None


def _memory(compiled):
  """Bytes of the compiled program, and the device's peak so far."""
  out = {}
  try:
    m = compiled.memory_analysis()
    out['program_bytes'] = int(m.argument_size_in_bytes
                               + m.output_size_in_bytes
                               + m.temp_size_in_bytes - m.alias_size_in_bytes)
    out['temp_bytes'] = int(m.temp_size_in_bytes)
  except Exception:  # pylint: disable=broad-except
    pass
  stats = jax.devices()[0].memory_stats()  # None on CPU
  if stats and 'peak_bytes_in_use' in stats:
    out['device_peak_bytes'] = int(stats['peak_bytes_in_use'])
  return out


def measure(rec, cfg, name, fn, args, *, images, dtype, flops=None,
            carry=False, precision='default', **extra):
  """Compiles ``fn`` once, times it and records one row.

  Args:
    rec: The stage's `peers.Recorder`.
    cfg: The suite's config (warm-ups and timed calls).
    name: Row name.
    fn: The function to jit; with `carry`, ``fn(state, *rest) -> (state,
      metrics)`` and the state is donated and fed back from call to call.
    args: Its arguments (arrays).
    images: Images per call.
    dtype: 'bf16' or 'fp32': the ceiling the row is set against.
    flops: FLOPs per call; by default `direct_flops`.
    carry: Whether ``fn`` is a step whose state is carried (see `fn`).
    precision: The matmul precision `fn` is lowered at (for the record).
    **extra: Recorded in the row.

  Returns:
    The output of the last timed call (with `carry`, its metrics).
  """
  start = time.perf_counter()
  jitted = jax.jit(fn, donate_argnums=(0,) if carry else ())
  compiled = jitted.lower(*args).compile()
  compile_s = time.perf_counter() - start
  box = dict(state=args[0] if carry else None, out=None)

  def call():
    if carry:
      box['state'], box['out'] = jax.block_until_ready(
          compiled(box['state'], *args[1:]))
    else:
      box['out'] = jax.block_until_ready(compiled(*args))

  timing = peers.time_calls(call, cfg['sizes']['warmups'],
                            cfg['sizes']['calls'])
  flops = direct_flops(fn, *args) if flops is None else flops
  try:
    counted = compiled_flops(compiled)
  except Exception:  # pylint: disable=broad-except  # Not on every backend.
    counted = float('nan')
  row = dict(name=name, images=images,
             images_per_s=images / timing['median_s'], timing=timing,
             compile_s=compile_s, dtype=dtype, precision=precision,
             flops_compiled=counted, **_memory(compiled), **extra)
  if not flops and flops != 0 and counted > 0:
    flops, row['flops_source'] = row['flops_compiled'], 'compiled'
  if flops:
    row['flops_per_call'] = flops
    row['tflops'] = flops / timing['median_s'] / 1e12
  rec.row(**{k: v for k, v in row.items() if v == v})  # NaN: not counted
  return box['out']


def _skip_row(rec, name, needed, deadline):
  rec.row(name=name, skipped=f'budget (needs ~{needed:.0f} s, '
          f'{max(deadline.left(), 0):.0f} s left)')


def _guarded(rec, name, thunk):
  """Runs one row's measurement; an exception (say, out of memory) becomes
  the row's recorded error and the stage goes on. None then."""
  try:
    return thunk()
  except Exception as e:  # pylint: disable=broad-except
    traceback.print_exc()
    rec.row(name=name, error=f'{type(e).__name__}: {e}'.strip()[:400])
    return None


def _parity_fits(rec, deadline, needed):
  """Whether the parity outputs (one more compile) fit; records if not."""
  if deadline.allows(needed):
    return True
  rec.info(parity=f'skipped: budget (needs ~{needed:.0f} s, '
           f'{max(deadline.left(), 0):.0f} s left)')
  return False


# ----------------------------------------------------------------------------
# Shared set-up.


def _generator(cfg, dtype=jnp.float32):
  """Our StyleGAN2 with the weights the `prepare` stage wrote."""
  s = cfg['sizes']
  module = stylegan2.Generator(
      z_dim=512, w_dim=peers.W_DIM, img_resolution=s['resolution'],
      mapping_layers=2, channel_base=s['channel_base'], channel_max=512,
      dtype=dtype)
  with np.load(os.path.join(cfg['work'], 'sg2_state.npz')) as f:
    state = {k: f[k] for k in f.files}
  return module, jax.tree.map(jnp.asarray, official_to_variables(state))


def _lpips_params():
  """`peers.random_lpips_weights` in our LPIPS parameter layout."""
  w = peers.random_lpips_weights()
  backbone = {}
  for i, layer in enumerate(lpips_lib.VGG16_LAYERS):
    backbone[layer.name] = dict(
        kernel=jnp.asarray(w[f'conv{i}_weight'].transpose(2, 3, 1, 0)),
        bias=jnp.asarray(w[f'conv{i}_bias']))
  params = dict(backbone=backbone)
  params.update({f'lin{i}': jnp.asarray(w[f'lin{i}'])
                 for i in range(len(peers.LPIPS_TAPS))})
  return params


def _init(model, resolution, batch=1):
  """Random variables of a JSCC model (an 'rbg' key compiles faster)."""
  key = jax.random.key(0, impl='rbg')
  images = jnp.zeros((batch, resolution, resolution, 3), jnp.float32)
  return jax.jit(model.init)(key, images, jnp.zeros((batch,)), key)



def _deepjscc(sizes):
  """DeepJSCC of `sizes['jscc']` = (arch, filters, downsampling)."""
  arch, filters, downsampling = sizes['jscc']
  return DeepJSCC(arch=arch, num_filters=filters, downsampling=downsampling,
                  latent_channels=sizes['latent_channels'])


def _scheme(name, model, init, reconstruct):
  """The trainer's `Scheme` (the one place naming its module)."""
  def no_optimizer(total_steps):
    raise NotImplementedError('the benchmark builds its optimiser itself')
  return Scheme(name, model, init, reconstruct, no_optimizer)


def _save(cfg, name, **arrays):
  np.savez(os.path.join(cfg['work'], f'{name}.npz'),
           **{k: np.asarray(v, np.float32) for k, v in arrays.items()})


_DTYPES = (('bf16', jnp.bfloat16), ('fp32', jnp.float32))


# ----------------------------------------------------------------------------
# JAX stages.


def stage_env(cfg, rec, deadline):
  """Versions, device, and the measured ceilings (matmul, device copy)."""
  del deadline
  from importlib import metadata  # pylint: disable=import-outside-toplevel
  dev = jax.devices()[0]
  backend = jax.default_backend()
  mode = cfg['mode'] if cfg['mode'] != 'auto' else (
      'tiny' if backend == 'cpu' else 'full')
  # The ceilings are measured at the sizes that suit the device.
  ceiling_sizes = SIZES['tiny' if backend == 'cpu' else 'full']
  cfg = dict(cfg, sizes=dict(SIZES[mode], matmul=ceiling_sizes['matmul'],
                             copy_mib=ceiling_sizes['copy_mib']))
  versions = {}
  for name in ('jax', 'jaxlib', 'flax', 'optax', 'numpy', 'torch', 'draggan',
               'lpips', 'ml_collections'):
    try:
      versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      versions[name] = 'not installed'
  rec.info(mode=mode, backend=backend, platform=dev.platform,
           device_kind=dev.device_kind, device_count=jax.device_count(),
           compute_capability=getattr(dev, 'compute_capability', None),
           python=platform.python_version(), cpu_count=os.cpu_count(),
           versions=versions)
  key = jax.random.PRNGKey(0)
  for label, n in cfg['sizes']['matmul']:
    dtype = jnp.bfloat16 if label == 'bf16' else jnp.float32
    a, b = (jax.random.normal(k, (n, n), dtype) for k in jax.random.split(key))
    precision = 'highest' if label.endswith('highest') else None
    with jax.default_matmul_precision(precision):
      measure(rec, cfg, f'matmul_{label}', lambda a, b: a @ b, (a, b),
              images=1, dtype=label, flops=2.0 * n**3, n=n,
              precision=precision or 'default')
  x = jax.random.normal(key, (cfg['sizes']['copy_mib'] << 18,), jnp.float32)
  measure(rec, cfg, 'device_copy', lambda x: x + 1, (x,), images=1,
          dtype='fp32', flops=0, bytes_moved=2 * x.nbytes)


def _sg2_stage(cfg, rec, deadline, backward):
  s = cfg['sizes']
  p = s['parity_batch']
  ws = jnp.asarray(peers.sg2_latents(s['sg2_batch'], s['resolution']))
  kind = 'fwdbwd' if backward else 'fwd'
  saved, last = {}, None

  def program(dtype):
    """(function, its arguments)."""
    module, variables = _generator(cfg, dtype)

    def synth(v, ws):
      return module.apply(v, ws, noise_mode='const', method=module.synthesize)
    if not backward:
      return synth, (variables, ws)
    loss = lambda ws, v: jnp.sum(jnp.square(synth(v, ws)))
    return (lambda v, ws: jax.value_and_grad(loss)(ws, v)), (variables, ws)

  for label, dtype in _DTYPES:
    if last is not None and not deadline.allows(1.5 * last):
      _skip_row(rec, f'sg2_{kind}_{label}', 1.5 * last, deadline)
      continue
    start = time.time()
    name = f'sg2_{kind}_{label}'
    out = _guarded(rec, name, lambda dtype=dtype, name=name: measure(
        rec, cfg, name, *program(dtype), images=s['sg2_batch'], dtype=label))
    if out is not None:
      out = out[1] if backward else out
      saved[f"{'grad_ws' if backward else 'image'}_{label}_timed"] = out[:p]
    last = time.time() - start
  _save(cfg, f'sg2_{kind}', **saved)
  if not _parity_fits(rec, deadline, last or 0):
    return
  # Parity outputs: fp32 at the highest precision, the first images.
  fn, (variables, _) = program(jnp.float32)
  with jax.default_matmul_precision('highest'):
    out = jax.jit(fn)(variables, ws[:p])
  saved['grad_ws' if backward else 'image'] = out[1] if backward else out
  _save(cfg, f'sg2_{kind}', **saved)


def stage_lpips(cfg, rec, deadline):
  """LPIPS-VGG value and gradient w.r.t. the first image."""
  s = cfg['sizes']
  params = _lpips_params()
  x, y = (jnp.asarray(a) for a in peers.lpips_images(s['lpips_batch'],
                                                      s['lpips_size']))

  def program(dtype):
    model = lpips_lib.LPIPS(net='vgg', dtype=dtype)
    return jax.value_and_grad(
        lambda x, y, p: jnp.mean(model.apply({'params': p}, x, y)))

  last = None
  for label in s['lpips_dtypes']:  # fp32 first: the peer's dtype
    if last is not None and not deadline.allows(1.5 * last):
      _skip_row(rec, f'lpips_{label}', 1.5 * last, deadline)
      continue
    start = time.time()
    name = f'lpips_{label}'
    _guarded(rec, name, lambda label=label, name=name: measure(
        rec, cfg, name, program(dict(_DTYPES)[label]), (x, y, params),
        images=s['lpips_batch'], dtype=label))
    last = time.time() - start
  if not _parity_fits(rec, deadline, last or 0):
    return
  p = s['parity_batch']
  with jax.default_matmul_precision('highest'):
    value, grad = jax.jit(program(jnp.float32))(x[:p], y[:p], params)
  _save(cfg, 'lpips', value=value, grad=grad)


def _ilo_step_flops(layered, config, terms, frozen, target):
  """FLOPs of one Adam step of round 0 for one image (`direct_flops`)."""
  def one_step(frozen, target, key):
    variables, best_image, best_value, run_key = ilo.start_search(
        layered, frozen, key)
    state = ilo.start_round(layered, config, 0, variables, best_image,
                            best_value)
    return ilo.round_step(layered, config, terms, 0, frozen, target, run_key,
                          state, jnp.int32(0))
  return direct_flops(one_step, frozen, target, jax.random.PRNGKey(0))


def _ilo_stage(cfg, rec, deadline, operator):
  s = cfg['sizes']
  res = s['resolution']
  module, variables = _generator(cfg)
  layered = generator_lib.from_stylegan2(module)
  loss = PerceptualLoss(lambda_lpips=1.0, net='vgg', check_inputs=False)
  frozen = dict(generator=variables, lpips=_lpips_params())
  reconstruct = None
  if operator == 'deepjscc':
    model = _deepjscc(s)
    frozen['deepjscc'] = _init(model, res)
    reconstruct = model.apply
  terms = forward_operators.DataTerms(operator, loss, res, res,
                                      reconstruct=reconstruct)
  config = ilo.ILOConfig(steps=tuple(s['ilo_steps']))
  batches = s[f'ilo_{operator}_batches']
  n = max(batches)
  rng = np.random.RandomState(4)  # Received images: any in [-1, 1] will do.
  received = jnp.asarray(rng.uniform(-1, 1, (n, res, res, 3)), jnp.float32)
  snr = jnp.zeros((n,), jnp.float32)
  keys = jax.random.split(jax.random.PRNGKey(3), n)
  prepare = jax.jit(terms.prepare_targets)
  targets = prepare(frozen, received, snr, keys)
  start = ilo.initial_variables(layered, variables,
                                jax.random.split(keys[0])[0])
  if operator == 'identity':  # The PyTorch loop starts where image 0 does.
    _save(cfg, 'ilo_identity_inputs', ws=start.ws, target=received[0],
          **{f'noise{i}': v for i, v in enumerate(start.noises)})
  step_flops = _ilo_step_flops(layered, config, terms, frozen,
                               jax.tree.map(lambda a: a[0], targets))

  def parity():
    """The first objective of image 0 in full fp32 (the peer's first)."""
    with jax.default_matmul_precision('highest'):
      target0 = jax.tree.map(lambda a: a[0], prepare(
          frozen, received[:1], snr[:1], keys[:1]))

      def objective0(frozen, ws, noises, target):
        image = layered.synthesize_one(frozen['generator'], ws, noises)
        t = terms(frozen, image, target, jax.random.PRNGKey(0))
        return (config.mse_weight[0] * t['mse']
                + config.lambda_lpips[0] * t['lpips']
                + config.geocross_weight * projections.geocross(ws))
      return jax.jit(objective0)(frozen, start.ws, start.noises, target0)

  last = None
  for b in batches:
    name = f'ilo_{operator}_b{b}'
    if last is not None:
      (prev_b, prev_compile, prev_call) = last
      needed = 1.3 * (prev_compile + (s['warmups'] + s['calls'] + 1)
                      * prev_call * b / prev_b)
      if not deadline.allows(needed):
        _skip_row(rec, name, needed, deadline)
        continue
    sub = jax.tree.map(lambda a, b=b: a[:b], targets)
    # XLA counts a loop's body once: one step's count x steps x images.
    flops = step_flops * config.total_steps * b if step_flops else 0
    result = _guarded(rec, name, lambda b=b, sub=sub, flops=flops, name=name:
                      measure(rec, cfg, name,
                              search.batch_inverter(layered, config, terms),
                              (frozen, sub, keys[:b]), images=b, dtype='fp32',
                              flops=flops, steps=list(config.steps)))
    if result is None:
      continue
    row = rec.data['rows'][-1]
    last = (b, row['compile_s'], row['timing']['median_s'])
    if b == 1 and operator == 'identity':  # Before any larger batch.
      saved = dict(objective0_timed=result.terms['objective'][0, 0])
      _save(cfg, 'ilo_identity', **saved)
      if _parity_fits(rec, deadline, 0.5 * row['compile_s']):
        _save(cfg, 'ilo_identity', objective0=parity(), **saved)


def _generative_optimizer(lr, generator_lr):
  """GenerativeJSCC's groups: Adam for encoder and receiver, Adam at its own
  rate for the fine-tuned synthesis network, nothing for the buffers."""
  def label(path, _):
    if path[0].key == 'buffers':
      return 'frozen'
    return 'generator' if path[1].key == 'synthesis' else 'default'
  return optax.multi_transform(
      dict(default=optax.adam(lr), generator=optax.adam(generator_lr),
           frozen=optax.set_to_zero()),
      lambda params: jax.tree_util.tree_map_with_path(label, params))


def _train_stage(cfg, rec, deadline, which):
  del deadline
  s = cfg['sizes']
  res, batch = s['resolution'], s['train_batch']
  if which == 'deepjscc':  # The deepjscc_ffhq config: MSE, Adam 1e-4.
    model = _deepjscc(s)
    loss, frozen, tx = PerceptualLoss(lambda_lpips=0.0), {}, optax.adam(1e-4)
    reconstruct = model.apply
  else:  # generative_ffhq: MSE + 0.1 LPIPS-VGG, synthesis at lr / 10.
    g = dict(s['generative'])
    lambda_lpips = g.pop('lambda_lpips')
    model = build_generative_jscc(img_resolution=res, **g)
    loss = PerceptualLoss(lambda_lpips=lambda_lpips, net='vgg')
    frozen = dict(lpips=_lpips_params()) if lambda_lpips else {}
    tx = _generative_optimizer(1e-4, 1e-5)

    def reconstruct(params, images, snr_db, key):
      variables = dict(params=params['params'],
                       buffers=jax.lax.stop_gradient(params['buffers']))
      return model.apply(variables, images, snr_db, key)
  scheme = _scheme(which, model, model.init, reconstruct)
  params = _init(model, res)  # DeepJSCC's: the program ilo_deepjscc cached.
  state = jax.jit(lambda p: step_lib.create_train_state(
      p, tx, jax.random.PRNGKey(1)))(params)
  train_step = step_lib.make_train_step(scheme, loss, tx, (-5.0, 5.0))
  images = np.random.RandomState(5).randint(0, 256, (batch, res, res, 3))
  data = dict(image=jnp.asarray(images, jnp.uint8))
  # The loss's run-time range check is a host callback, which cannot be
  # lowered for another platform; it does no arithmetic.
  unchecked = dataclasses.replace(loss, check_inputs=False)
  flops = direct_flops(step_lib.make_train_step(scheme, unchecked, tx,
                                                (-5.0, 5.0)),
                       state, data, jax.random.PRNGKey(2), frozen)
  metrics = measure(rec, cfg, f'train_{which}', train_step,
                    (state, data, jax.random.PRNGKey(2), frozen),
                    images=batch, dtype='fp32', flops=flops, carry=True,
                    parameters=int(sum(a.size for a in
                                       jax.tree.leaves(params))))
  rec.info(loss=float(metrics['loss']))


JAX_STAGES = {
    'env': stage_env,
    'sg2_fwd': functools.partial(_sg2_stage, backward=False),
    'sg2_fwdbwd': functools.partial(_sg2_stage, backward=True),
    'lpips': stage_lpips,
    'ilo_identity': functools.partial(_ilo_stage, operator='identity'),
    'ilo_deepjscc': functools.partial(_ilo_stage, operator='deepjscc'),
    'train_deepjscc': functools.partial(_train_stage, which='deepjscc'),
    'train_generative': functools.partial(_train_stage, which='generative'),
}


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
        suite='benchmarks/accelerator_suite.py', command=sys.argv,
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
    sizes = SIZES.get(self.mode)
    return dict(mode=self.mode, sizes=sizes, work=self.work,
                deadline=time.time() + self.left() - 1.0,
                cuda_ops=self.results['cuda_ops']['status'])

  def log(self, message):
    print(f'[{time.time() - self.t0:6.1f} s] {message}', flush=True)

  # -- stages

  def spawn(self, name, kind):
    """Starts a stage's process on standby: it imports its libraries (no
    device is touched) and waits for its config, so that the import of the
    next stage overlaps the current one."""
    script = (os.path.join(HERE, 'accelerator_peers.py') if kind == 'torch'
              else os.path.abspath(__file__))
    env = dict(self.env)
    if self.mode == 'tiny' and kind == 'jax' and self.backend == 'cpu':
      env['XLA_FLAGS'] = f"{env.get('XLA_FLAGS', '')} {TINY_XLA_FLAGS}".strip()
    with open(os.path.join(self.work, f'{name}.log'), 'w') as out:
      return subprocess.Popen(
          [sys.executable, script, '--stage', name, '--config',
           os.path.join(self.work, f'{name}.config.json'), '--result',
           os.path.join(self.work, f'{name}.json')], stdout=out,
          stderr=subprocess.STDOUT, env=env, start_new_session=True,
          preexec_fn=_die_with_parent)

  def skip_reason(self, name, needs_s):
    if name.startswith(NEEDS_PREPARE) and (
        self.results['stages'].get('prepare', {}).get('status') != 'ok'):
      return 'skipped: needs the prepare stage'
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
          [sys.executable, os.path.join(HERE, 'accelerator_peers.py'),
           '--stage', 'cuda_ops', '--config', cfg_path, '--result',
           os.path.join(self.work, 'cuda_ops.json')], stdout=out,
          stderr=subprocess.STDOUT, env=env, start_new_session=True,
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


def _stage_main(args):
  """Runs one JAX stage in this process."""
  cfg = peers.wait_for_config(args.config)
  rec = peers.Recorder(args.result)
  JAX_STAGES[args.stage](cfg, rec, peers.Deadline(cfg['deadline']))
  rec.info(process_cpu_s=time.process_time())
  return 0


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
  if args.stage:
    return _stage_main(args)
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
      import shutil  # pylint: disable=import-outside-toplevel
      shutil.rmtree(suite.work, ignore_errors=True)


if __name__ == '__main__':
  sys.exit(main())
