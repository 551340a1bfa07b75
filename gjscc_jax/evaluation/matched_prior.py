"""The matched-prior experiment's stages: train, count, evaluate, compare.

Every image is drawn from one fixed generator G0 (the `'generator'`
dataset), and GenerativeJSCC gets G0 itself as its prior. The entry point
(`python -m experiments.matched_prior`) builds the configs; this module
runs each stage in process and reuses a stage that already finished:

* `train_run`: `train.loop.train` in a workdir, skipped once the workdir
  holds the final checkpoint (an interrupted run resumes);
* `flops_per_step`: XLA's FLOP count of one training step
  (`train.cost.step_flops`), cached in a JSON file;
* `evaluate_run`: the SNR sweep of a run on the test images
  (`runner.evaluate_params`, every reconstruction kept in
  `per_image.npz` for the spectra), skipped once written. Every scheme
  draws the same channel noise for the same image and SNR (the sweep's
  keys depend on the image's batch, the SNR and the realisation only);
* `invert_run`: InverseJSCC (`inverse.batch_run.run`, resumable per
  image) and its records as `per_image.npz` arrays. Its channel draws
  are the search's own, not the sweep's (the comparison stays paired
  over images);
* `injected_map_spectra`: the Nyquist share of GenerativeJSCC's injected
  maps at each resolution against the data's at that scale;
* `comparison_table`: per SNR, two schemes' means with 95% intervals and
  their per-image paired difference;
* `write_section`, `gather_sections`: each (rho, loss)'s table and summary
  beside its runs, and all of them gathered into one table.md and
  summary.json.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from gjscc_jax import data as data_lib
from gjscc_jax import generated_data
from gjscc_jax import pixels
from gjscc_jax import sharding
from gjscc_jax import results as report
from gjscc_jax.evaluation import runner
from gjscc_jax.evaluation import spectrum
from gjscc_jax.inverse import batch_run
from gjscc_jax.inverse import outputs as inverse_outputs
from gjscc_jax.inverse import work as inverse_work
from gjscc_jax.train import cost
from gjscc_jax.train import loop
from gjscc_jax.train import runs

#: Metrics of the tables, in order (the headline perceptual metric,
#: LPIPS-VGG, is held out of every training loss).
METRICS = ("psnr", "ssim", "lpips_vgg", "lpips_alex")
_DONE = "matched_prior_done.json"


def _read_json(path, default=None):
  if not os.path.exists(path):
    return default
  with open(path) as f:
    return json.load(f)


def _write_json(path, value):
  _write_text(path, json.dumps(value, indent=1, sort_keys=True))


def train_run(config, workdir, log=print):
  """Trains `config` in `workdir` unless it finished; returns its record.

  Returns:
    `{'steps', 'wall_s', 'steps_per_s'}`: the steps and the wall time of
    the training (of the last, resumed part if it was interrupted), from
    `workdir/matched_prior_done.json`.
  """
  path = os.path.join(workdir, _DONE)
  done = _read_json(path)
  if done is not None and done["steps"] == config.total_steps:
    return done
  log(f"[train] {workdir}: {config.scheme}, {config.total_steps} steps")
  start = time.time()
  loop.train(config, workdir, eval_at_end=False)
  wall = time.time() - start
  rates = [r["steps_per_s"] for r in _metric_records(workdir)
           if "steps_per_s" in r]
  done = dict(steps=int(config.total_steps), wall_s=round(wall, 1),
              steps_per_s=float(np.median(rates)) if rates else None)
  _write_json(path, done)
  return done


def _metric_records(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def flops_per_step(config, cache_path, name, log=print):
  """XLA FLOPs of one training step of `config`, cached under `name`."""
  cache = _read_json(cache_path, {})
  if name not in cache:
    log(f"[flops] compiling the training step of {name}")
    cache[name] = cost.step_flops(config)
    _write_json(cache_path, cache)
  return cache[name]


def evaluate_run(workdir, output_dir, eval_config, label, log=print):
  """Sweeps the run in `workdir`; returns `output_dir/per_image.npz`'s arrays."""
  path = os.path.join(output_dir, "per_image.npz")
  if not os.path.exists(path):
    log(f"[evaluate] {workdir} -> {output_dir}")
    config, scheme, params = runs.load_run(workdir)
    os.makedirs(output_dir, exist_ok=True)
    runner.evaluate_params(config, scheme, params, sharding.make_mesh(),
                           output_dir, label=label, eval_config=eval_config)
  return dict(np.load(path))


def invert_run(config, log=print):
  """InverseJSCC of `config` (an `inverse_ffhq` config) and its arrays.

  Runs (or resumes) `inverse.batch_run.run(config)` unless
  `config.output_dir/per_image.npz` exists, then writes that file from the
  per-image records and restored PNGs.

  Returns:
    `evaluate_run`'s arrays: `snrs_db` `(S,)` ascending, `indices` `(N,)`
    (test images 0..N-1, as the sweep's), each metric `(S, N)` (the
    restored image's: `record['inverse'][metric]`), `originals` uint8
    `(N, H, W, 3)` and `examples` uint8 `(S, N, H, W, 3)`.
  """
  path = os.path.join(config.output_dir, "per_image.npz")
  if not os.path.exists(path):
    log(f"[invert] {config.deepjscc_checkpoint} -> {config.output_dir}")
    batch_run.run(config)
    store = inverse_outputs.OutputStore(config.output_dir)
    source = inverse_work.ImageSource(config.data, config.split)
    snrs = sorted(float(s) for s in config.snrs_db)
    n = int(config.num_images)
    records = [[store.read_record(s, i) for i in range(n)] for s in snrs]
    arrays = {m: np.array([[r["inverse"][m] for r in row] for row in records])
              for m in METRICS if m in records[0][0]["inverse"]}
    os.makedirs(config.output_dir, exist_ok=True)
    np.savez(path, snrs_db=np.asarray(snrs, np.float64),
             indices=np.arange(n, dtype=np.int32),
             originals=np.stack([source.load(i)[0] for i in range(n)]),
             examples=np.stack([np.stack([store.read_image(s, i, "restored")
                                          for i in range(n)]) for s in snrs]),
             **arrays)
  return dict(np.load(path))


def injected_map_spectra(workdir, snr_db, num_images, batch_size=32, seed=0):
  """Nyquist shares of a GenerativeJSCC run's injected maps and of the data.

  The run's test images are transmitted at `snr_db`; for every injected
  resolution `r` the maps of all layers at `r` are pooled.

  Returns:
    `{r: (maps_share, data_share)}`: `spectrum.nyquist_fraction` of the
    maps and of the test images box-filtered to `r x r`.
  """
  config, scheme, params = runs.load_run(workdir)
  model = scheme.model
  generated_data.ensure_prepared(config.data)
  batches = data_lib.eval_batches(config.data, "test", batch_size,
                                  num_images=num_images)

  apply = jax.jit(lambda p, x, s, k: model.apply(
      {"params": p["params"], "buffers": p["buffers"]}, x, s, k,
      method=model.decoder_inputs)[1])
  power, data = {}, []
  for b, batch in enumerate(batches):
    mask = np.asarray(batch["mask"], bool)
    images = pixels.from_uint8(jnp.asarray(batch["image"]))
    snr = jnp.full(images.shape[:1], snr_db, jnp.float32)
    maps = apply(params, images, snr,
                 jax.random.fold_in(jax.random.PRNGKey(seed), b))
    for m in maps:
      if m is not None:
        p = spectrum.ac_power(np.asarray(m, np.float32)[mask])
        power[m.shape[1]] = power.get(m.shape[1], 0) + p
    data.append(np.asarray(images)[mask])
  data = np.concatenate(data)
  return {r: (spectrum.nyquist_fraction(power=p),
              spectrum.nyquist_fraction(spectrum.downsample(data, r)))
          for r, p in sorted(power.items())}


def injection_scales(workdir):
  """`{layer: gain * inject_scale_layer}` of a GenerativeJSCC run ({} if none)."""
  config, scheme, params = runs.load_run(workdir)
  gain = float(config.model.get("injection_scale_gain", 1.0))
  synthesis = params["params"].get("synthesis", {})
  return {int(k.rsplit("_", 1)[1]): gain * float(v)
          for k, v in synthesis.items() if k.startswith("inject_scale_")}


def lattice_energy(arrays, period, snr_index=None):
  """Lattice share of a run's reconstructions over the originals' (a ratio).

  Args:
    arrays: a run's `per_image.npz` arrays (reconstructions kept for every
      test image: `eval.num_examples` >= the test images).
    period: lattice period in pixels (`spectrum.lattice_fraction`).
    snr_index: the SNR's row in `arrays['snrs_db']`; None pools all SNRs.

  Returns:
    `lattice_fraction(reconstructions) / lattice_fraction(originals)`.
  """
  examples = arrays["examples"]
  if snr_index is not None:
    examples = examples[snr_index:snr_index + 1]
  recon = examples.reshape((-1,) + examples.shape[2:]).astype(np.float64)
  data = spectrum.lattice_fraction(arrays["originals"].astype(np.float64),
                                   period)
  return spectrum.lattice_fraction(recon, period) / data


def _cell(values, signed=False):
  mean, ci = report.mean_ci95(values)
  digits = 2 if abs(mean) >= 1 else 4
  return f"{mean:{'+' if signed else ''}.{digits}f} ± {ci:.{digits}f}"


def comparison_rows(base, other):
  """Per SNR and metric: both means and the paired difference `other - base`.

  Args:
    base, other: two runs' `per_image.npz` arrays on the same test images
      (same `indices` and `snrs_db`).

  Returns:
    A list of dicts `{snr_db, metric, base, base_ci, other, other_ci,
    diff, diff_ci}` (means and 95% half-widths over images).

  Raises:
    ValueError: if the runs were swept on different images or SNRs.
  """
  if (not np.array_equal(base["indices"], other["indices"]) or
      not np.array_equal(base["snrs_db"], other["snrs_db"])):
    raise ValueError("The two runs were evaluated on different test images "
                     "or SNRs; evaluate both with the same eval settings.")
  rows = []
  for s, snr in enumerate(base["snrs_db"]):
    for m in METRICS:
      if m not in base or m not in other:
        continue
      b, o = base[m][s], other[m][s]
      (bm, bc), (om, oc), (dm, dc) = (report.mean_ci95(v) for v in (b, o, o - b))
      rows.append(dict(snr_db=float(snr), metric=m, base=bm, base_ci=bc,
                       other=om, other_ci=oc, diff=dm, diff_ci=dc))
  return rows


def comparison_table(base, other, base_label, other_label):
  """Markdown: per SNR, each metric of both runs and the paired difference."""
  names = [report.METRICS[m][0] if m in report.METRICS else m
           for m in METRICS if m in base and m in other]
  head = ["SNR", "metric", base_label, other_label,
          f"Δ ({other_label} − {base_label}, paired)"]
  lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
  metrics = [m for m in METRICS if m in base and m in other]
  for s, snr in enumerate(base["snrs_db"]):
    for m, name in zip(metrics, names):
      b, o = base[m][s], other[m][s]
      lines.append(f"| {snr:g} dB | {name} | {_cell(b)} | {_cell(o)} | "
                   f"{_cell(o - b, signed=True)} |")
  return "\n".join(lines)


def write_section(base, table, summary):
  """Writes one (rho, loss)'s `base/table.md` (markdown) and `summary.json`."""
  _write_text(os.path.join(base, "table.md"), table.rstrip("\n") + "\n")
  _write_text(os.path.join(base, "summary.json"), json.dumps(summary, indent=1))


def _write_text(path, text):
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def gather_sections(out):
  """`out/table.md` and `out/summary.json` from every section under `out`.

  Sections are `out/rho<p>_<q>/<loss>/{table.md,summary.json}`
  (`write_section`), so commands for different ratios or losses, one after
  the other or at once, add up instead of overwriting each other. Order:
  rho from largest to smallest, then loss by name.

  Returns:
    The number of sections gathered.
  """
  sections = []
  for rho_dir in os.listdir(out):
    p, sep, q = rho_dir[3:].partition("_")
    if not (rho_dir.startswith("rho") and sep and p.isdigit() and q.isdigit()):
      continue
    for loss in os.listdir(os.path.join(out, rho_dir)):
      base = os.path.join(out, rho_dir, loss)
      if os.path.exists(os.path.join(base, "table.md")):
        sections.append((-int(p) / int(q), loss, base))
  tables, summary = [], []
  for _, _, base in sorted(sections):
    with open(os.path.join(base, "table.md")) as f:
      tables.append(f.read().rstrip("\n"))
    summary += _read_json(os.path.join(base, "summary.json"), [])
  _write_text(os.path.join(out, "table.md"), "\n\n".join(tables) + "\n")
  _write_text(os.path.join(out, "summary.json"), json.dumps(summary, indent=1))
  return len(sections)
