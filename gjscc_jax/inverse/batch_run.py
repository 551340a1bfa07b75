"""A resumable, multi-host InverseJSCC run over a dataset (library side).

`run(config)` does what `experiments/invert.py` promises (see there for the
command line): it builds the batch function of `pipeline` from the trained
DeepJSCC run and the StyleGAN2 prior named by the config, restores every
image of the process's share at every SNR that has no record yet, writing
each batch's outputs from a few threads as soon as it is done (while the
next batch computes), and at the end gathers the per-image metrics of all
processes for process 0 to write the summary, plots and grids.

SIGTERM or SIGINT (`gjscc_jax.preemption`): the batch in flight is finished
and written, then `Preempted` (exit status 75); a rerun does the rest. An
unreadable record, or one whose PNGs (or latents) do not decode in full (a
half-synced copy, a truncated file), is recomputed, with a warning naming
the file. One process at a time writes an output directory (per process
index; `gjscc_jax.workdir_lock`).

Fault injection (tests): with `GJSCC_FAULT_KILL_AFTER_BATCHES=n` in the
environment, the process SIGKILLs itself right after writing `n` batches,
as a pre-empted job would die; `GJSCC_FAULT_TERM_AFTER_BATCHES=n` sends it
SIGTERM after dispatching batch `n` (`gjscc_jax.faults`).
"""

import functools
import math
import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from gjscc_jax import faults
from gjscc_jax import preemption
from gjscc_jax import run_record
from gjscc_jax import sharding
from gjscc_jax import workdir_lock
from gjscc_jax.inverse import forward_operators
from gjscc_jax.inverse import generator as generator_lib
from gjscc_jax.inverse import ilo
from gjscc_jax.inverse import latent_proxy
from gjscc_jax.inverse import latents as latents_lib
from gjscc_jax.inverse import outputs
from gjscc_jax.inverse import pipeline
from gjscc_jax.inverse import report as inverse_report
from gjscc_jax.inverse import work
from gjscc_jax.losses import PerceptualLoss
from gjscc_jax.train import runs

RANDOM_PRIOR_WARNING = (
    "No generator_weights: using a small RANDOMLY INITIALISED StyleGAN2. A "
    "random prior knows nothing about images; this run only demonstrates the "
    "mechanics of InverseJSCC. Pass --config.generator_weights=DIR (from "
    "python -m weights_convert stylegan2) for real results.")


def _local_replicated(tree, mesh):
  """Puts a (possibly globally replicated) pytree on `mesh`, replicated."""
  def local(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      x = x.addressable_shards[0].data
    return np.asarray(x)
  return jax.device_put(jax.tree.map(local, tree), sharding.replicated(mesh))


def load_deepjscc(config):
  """(run config, scheme, params) of the DeepJSCC run to transmit with.

  The scheme recomputes its stages in the search's backward pass when
  `config.remat` is set (the run's parameters fit either way).
  """
  if not config.deepjscc_checkpoint:
    raise ValueError(
        "Set --config.deepjscc_checkpoint to the --workdir of a DeepJSCC run "
        "(python -m experiments.train --config=deepjscc_ffhq ...); the "
        "inverse_ffhq:demo config trains a tiny one if it is unset.")
  return runs.load_run(config.deepjscc_checkpoint, config.deepjscc_step,
                       remat=config.get("remat", False))


GENERATOR_DTYPES = ("float32", "bfloat16")


def generator_dtype(config):
  """The StyleGAN2 compute dtype named by `config.generator_dtype`."""
  name = config.get("generator_dtype", "float32")
  if name not in GENERATOR_DTYPES:
    raise ValueError(f"generator_dtype={name!r}: use one of "
                     f"{GENERATOR_DTYPES}.")
  return jnp.dtype(name)


def load_generator(config):
  """(LayeredGenerator, variables) of the StyleGAN2 prior.

  The synthesis network computes its feature maps in
  `config.generator_dtype` (styles, demodulation and the skip image stay
  float32, and so do the variables the search optimises) and recomputes
  each block in the backward pass when `config.remat` is set. With
  `config.generator_from_data`, the prior is the generator that draws the
  'generator' dataset (`config.data.generator`): the matched prior.
  """
  options = dict(dtype=generator_dtype(config),
                 remat=config.get("remat", False))
  if config.get("generator_from_data"):
    if config.data.name != "generator" or config.generator_weights:
      raise ValueError(
          "generator_from_data=True takes the prior from the 'generator' "
          f"dataset: needs data.name='generator' (got {config.data.name!r}) "
          "and no generator_weights.")
    from gjscc_jax import generated_data  # pylint: disable=import-outside-toplevel
    module, variables = generated_data.load_generator(config.data.generator)
    module = module.clone(**options)
  elif config.generator_weights:
    from gjscc_jax.models.stylegan2 import load_stylegan2  # pylint: disable=import-outside-toplevel
    module, variables = load_stylegan2(config.generator_weights, **options)
  else:
    if not config.demo:
      raise ValueError(
          "Set --config.generator_weights to a converted StyleGAN2 directory "
          "(python -m weights_convert stylegan2 SRC DST), or use the "
          "inverse_ffhq:demo config for a random demo prior.")
    logging.warning(RANDOM_PRIOR_WARNING)
    print("WARNING: " + RANDOM_PRIOR_WARNING, flush=True)
    module, variables = generator_lib.random_stylegan2(
        **config.demo_generator, **options)
  return generator_lib.from_stylegan2(module), variables


def build(config, mesh):
  """The jitted batch function, its replicated frozen inputs, and facts."""
  dj_config, scheme, dj_params = load_deepjscc(config)
  res = config.data.resolution
  if dj_config.data.resolution != res:
    raise ValueError(
        f"The DeepJSCC run works at {dj_config.data.resolution}px but "
        f"config.data.resolution={res}: set it to the run's resolution.")
  generator, gen_variables = load_generator(config)
  ilo_config = ilo.ILOConfig.from_config(config.ilo)
  op = config.operator
  search_loss = PerceptualLoss(
      lambda_lpips=1.0 if max(_as_tuple(config.ilo.lambda_lpips)) > 0 else 0.0,
      net=op.lpips_net, dtype=jnp.dtype(op.lpips_dtype), check_inputs=False,
      remat=config.get("remat", False))
  terms = forward_operators.DataTerms(
      operator=op.kind, loss=search_loss,
      generator_resolution=generator.resolution, image_resolution=res,
      lpips_resolution=op.lpips_resolution, channel_noise=op.channel_noise,
      lpips_target=ilo_config.lpips_target, reconstruct=scheme.reconstruct)
  metric_losses = tuple(
      (f"lpips_{net}", PerceptualLoss(1.0, net=net, check_inputs=False))
      for net in config.metrics.lpips_nets)
  inverse = pipeline.InverseJSCC(
      generator=generator, config=ilo_config, terms=terms,
      transmit=scheme.reconstruct, metric_losses=metric_losses,
      seed=config.seed, save_latents=config.get("save_latents", False))
  frozen = dict(
      generator=gen_variables, deepjscc=dj_params,
      lpips=search_loss.load_params() if search_loss.uses_lpips else None,
      metrics={name: loss.load_params() for name, loss in metric_losses})
  facts = dict(bcr=float(scheme.bandwidth_ratio),
               generator_resolution=generator.resolution)
  if ilo_config.latent_space == "z_proxy":
    frozen["latent_proxy"], facts["latent_proxy"] = load_latent_proxy(
        config, generator, gen_variables)
  return (pipeline.make_batch_fn(inverse, mesh, config.get("loop", "auto")),
          _local_replicated(frozen, mesh), facts)


def load_latent_proxy(config, generator, gen_variables):
  """`(proxy, provenance)`: the 'z_proxy' fit of the generator, read from
  `gaussian_fit.npz` beside the converted weights or in the output directory
  when one matches, else fitted and written to the first writable of the
  two (`latent_proxy.load_or_fit`)."""
  paths = [os.path.join(d, latent_proxy.FILE_NAME)
           for d in (config.generator_weights, config.output_dir) if d]
  proxy, info, path = latent_proxy.load_or_fit(paths, generator,
                                               gen_variables)
  logging.info("z_proxy fit %s (%s)", path, info)
  return proxy, info


def _as_tuple(value):
  return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def result_settings(config, facts):
  """What the per-image results depend on (pinned in the output dir)."""
  keep = ("seed", "deepjscc_checkpoint", "deepjscc_step", "generator_weights",
          "generator_dtype", "split", "input_dir", "demo", "save_latents")
  settings = {k: config.get(k) for k in keep}
  if config.get("generator_from_data"):
    settings["generator_from_data"] = True
  settings.update(data=config.data.to_dict(), operator=config.operator.to_dict(),
                  ilo=config.ilo.to_dict(), lpips_nets=list(
                      config.metrics.lpips_nets), **facts)
  if config.demo:
    settings.update(demo_generator=config.demo_generator.to_dict(),
                    demo_deepjscc_steps=config.demo_deepjscc_steps)
  for name in ("num_workers", "read_threads", "prefetch_buffer_size"):
    settings["data"].pop(name, None)
  return settings


def _record(item, name, out, k):
  """The JSON record of row `k` of a batch output."""
  best = float(out["best"][k])
  best = None if math.isnan(best) else best  # NaN for best_by='last'.
  rec = dict(image_index=item.index, name=name, snr_db=item.snr_db,
             process_index=jax.process_index(), best=best,
             best_step=int(out["best_step"][k]))
  for key, value in out.items():
    prefix, _, metric = key.partition("/")
    if prefix in ("inverse", "deepjscc"):
      rec.setdefault(prefix, {})[metric] = float(value[k])
    elif prefix == "terms":
      rec.setdefault("history", {})[metric] = [
          float(v) for v in np.asarray(value[k])]
  return rec


def _latents(out, k, latent_file):
  """Image `k`'s latents file arrays, or None when they are not saved."""
  arrays = {key.partition("/")[2]: value[k] for key, value in out.items()
            if key.startswith("latents/")}
  return latent_file(arrays) if arrays else None


def _finished_images(source, chunk, mask, out, latent_file=None):
  """`(snr_db, index, images, record, latents)` of the valid rows of a batch
  output (`latents` None unless they are saved)."""
  out = jax.device_get(out)  # Waits for this batch (the only host sync).
  return [(item.snr_db, item.index,
           dict(restored=out["restored"][k], received=out["received"][k]),
           _record(item, source.load(item.index)[1], out, k),
           _latents(out, k, latent_file))
          for k, (item, valid) in enumerate(zip(chunk, mask)) if valid]


def run(config):
  """Runs (or resumes) the batch inversion of `config`.

  Multi-process runs must call `jax.distributed.initialize()` (e.g. with
  `sharding.maybe_initialize_distributed()`) before anything else touches
  JAX devices; `experiments/invert.py` does.

  Returns:
    The summary rows (on every process).
  """
  if not config.output_dir:
    raise ValueError("Set --config.output_dir (results and resumable state).")
  workdir_lock.check_kind(config.output_dir, run_record.INVERSEJSCC,
                          "--config.output_dir")
  with workdir_lock.DirectoryLock(config.output_dir, "InverseJSCC run",
                                  jax.process_index()):
    return _run(config)


def _run(config):
  """`run` once the output directory is locked."""
  mesh = sharding.make_mesh(devices=jax.local_devices())
  local_devices = jax.local_device_count()
  if config.batch_size % local_devices:
    raise ValueError(
        f"batch_size={config.batch_size} must be a multiple of this "
        f"process's {local_devices} devices.")
  # Inputs in the order a user fixes them: checkpoint, weights, then data.
  batch_fn, frozen, facts = build(config, mesh)
  source = work.ImageSource(config.data, config.split, config.input_dir)
  num_images = len(source) if config.num_images is None else config.num_images
  if not 0 < num_images <= len(source):
    raise ValueError(f"num_images={num_images} must lie in [1, {len(source)}].")
  latent_file = None
  if config.get("save_latents", False):
    latent_file = functools.partial(
        latents_lib.file_arrays, ilo.ILOConfig.from_config(config.ilo),
        jax.device_get(frozen.get("latent_proxy")),
        image_resolution=config.data.resolution)
  store = outputs.OutputStore(config.output_dir)
  store.check_run_config(result_settings(config, facts))

  mine = work.items_for(work.process_images(
      num_images, jax.process_index(), jax.process_count()), config.snrs_db)
  done = {it: store.finished_record(it.snr_db, it.index) for it in mine}
  todo = [it for it in mine if done[it] is None]
  logging.info("Process %d: %d of its %d image-SNR pairs to do (%d done).",
               jax.process_index(), len(todo), len(mine), len(mine) - len(todo))
  if jax.process_index() == 0:
    print(f"{len(mine) - len(todo)} of {len(mine)} image-SNR pairs already "
          f"done; {len(todo)} to go on process 0 of {jax.process_count()}.",
          flush=True)
  bar = inverse_report.progress_bar(len(todo))
  written = []

  def on_batch(num_images):
    bar.update(num_images)
    written.append(num_images)
    faults.maybe_kill(faults.KILL_AFTER_BATCHES, len(written))

  writer = outputs.BackgroundWriter(store, on_batch=on_batch)
  pending = None
  t0 = time.perf_counter()
  batch_sharding = sharding.batch_sharding(mesh)
  with preemption.PreemptionGuard() as guard:
    for n, (chunk, mask) in enumerate(work.batches(todo, config.batch_size)):
      if guard.requested:
        break  # Only the batch in flight is finished and written.
      inputs = jax.device_put(
          (np.stack([source.load(it.index)[0] for it in chunk]),
           np.array([it.snr_db for it in chunk], np.float32),
           np.array([it.index for it in chunk], np.int32)), batch_sharding)
      out = batch_fn(frozen, *inputs)  # Asynchronous.
      faults.maybe_kill(faults.TERM_AFTER_BATCHES, n + 1)
      if pending is not None:  # Written while the devices compute `out`.
        writer.submit(_finished_images(source, *pending, latent_file))
      pending = (chunk, mask, out)
    if pending is not None:
      writer.submit(_finished_images(source, *pending, latent_file))
    writer.close()
  bar.close()
  if guard.requested:
    raise preemption.Preempted(
        f"Stopped by {guard.signal_name} on process {jax.process_index()} after "
        f"writing {sum(written)} more image-SNR pairs to "
        f"{config.output_dir}; rerun the same command to finish.")
  logging.info("Process %d finished %d pairs in %.1fs.", jax.process_index(),
               len(todo), time.perf_counter() - t0)

  records = [done[it] or store.read_record(it.snr_db, it.index) for it in mine]
  rows, curves = inverse_report.summarize(records, bcr=facts["bcr"],
                                         tag=config.get("tag", ""))
  if jax.process_index() == 0:
    inverse_report.write_report(rows, curves, store, source, mine,
                                config.metrics.num_grid_images)
  return rows
