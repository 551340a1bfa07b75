r"""The matched-prior experiment: DeepJSCC against GenerativeJSCC on G0's images.

Every image is drawn from one fixed generator G0 (the seeded random
StyleGAN2 of the `'generator'` dataset, at --resolution), and
GenerativeJSCC decodes with G0 itself (frozen: `generator=frozen`; the
receiver, the map scales and the slices that read the maps train). For
every bandwidth ratio (--rhos) and loss (--losses: 'lpips' is MSE +
--lpips_lambda * LPIPS-AlexNet, 'mse' is MSE alone) both schemes are
trained on the SAME loss for --steps steps, and DeepJSCC once more for the
steps that cost as many FLOPs as GenerativeJSCC's (XLA's count of one
training step, `gjscc_jax.train.cost`). All runs are swept on the same
--num_images test images, SNRs and channel noise; LPIPS-VGG, held out of
every loss, is the headline perceptual metric.

  python -m experiments.matched_prior --output_dir=runs/matched_prior \
      --resolution=32 --steps=2000 --rhos=1/192,1/768 --losses=lpips,mse

Rerunning the same command reuses every finished stage (a training run
resumes from its last checkpoint). Written to --output_dir: one workdir per run
(rho<p>_<q>/<loss>/<scheme>_<steps>/), their sweeps (.../eval/<run>/),
flops.json, each (rho, loss)'s table.md and summary.json beside its runs,
and, gathered from all of them, table.md, summary.json and
grid_<rho>_<loss>_<snr>dB.png.
"""

import json
import os

from absl import app
from absl import flags
import numpy as np

from experiments import config_cli
from experiments.configs import deepjscc_ffhq
from experiments.configs import generative_ffhq
from experiments.configs import inverse_ffhq
from gjscc_jax.evaluation import matched_prior as mp
from gjscc_jax import results as report
from gjscc_jax.train import runs

_OUT = flags.DEFINE_string("output_dir", "runs/matched_prior",
                           "Output directory.")
_RES = flags.DEFINE_integer("resolution", 32, "Image side (G0's resolution).")
_STEPS = flags.DEFINE_integer("steps", 2000, "Training steps of each scheme.")
_RHOS = flags.DEFINE_list("rhos", ["1/192", "1/768"], "Bandwidth ratios.")
_LOSSES = flags.DEFINE_list(
    "losses", ["lpips", "mse"], "'lpips' (MSE + lambda LPIPS-AlexNet) and/or "
    "'mse', in order.")
_LAMBDA = flags.DEFINE_float("lpips_lambda", 0.1, "lambda of the 'lpips' loss.")
_SNRS = flags.DEFINE_list("snrs_db", ["-5", "0", "5"], "Test SNRs in dB.")
_IMAGES = flags.DEFINE_integer("num_images", 128, "Test images.")
_EQUAL_FLOPS = flags.DEFINE_bool(
    "equal_flops", True, "Also train DeepJSCC for GenerativeJSCC's FLOPs.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Training batch.")
_INVERSE = flags.DEFINE_bool(
    "inverse", True, "Also InverseJSCC: the equal-steps DeepJSCC run's "
    "reconstructions restored by an ILO search over G0, per image, on the "
    "same loss (MSE + lambda LPIPS-AlexNet, or MSE).")
_GEN_ONLY = flags.DEFINE_bool(
    "generative_only", False, "Train and report GenerativeJSCC alone (for "
    "measuring its options with --override; no comparison).")
_OVERRIDES = flags.DEFINE_multi_string(
    "override", [], "SCHEME:KEY=VALUE (SCHEME 'deepjscc', 'generative', "
    "'inverse' or 'all'): a config field of the runs, e.g. for a smaller "
    "model ('all' reaches the inverse config's data.* fields only). VALUE "
    "is read as JSON when it parses, else as a string.")

LABELS = {"deepjscc": "DeepJSCC", "generative": "GenerativeJSCC (frozen G0)",
          "inverse": "InverseJSCC (ILO over G0)"}


def _value(raw):
  try:
    return json.loads(raw)
  except json.JSONDecodeError:
    return raw


def _overrides(scheme):
  out = {}
  for item in _OVERRIDES.value:
    who, _, setting = item.partition(":")
    key, sep, raw = setting.partition("=")
    if who not in ("all", "deepjscc", "generative", "inverse") or not sep:
      raise ValueError(f"--override={item!r} must be SCHEME:KEY=VALUE with "
                       "SCHEME deepjscc, generative, inverse or all.")
    if who == scheme or (who == "all" and (
        scheme != "inverse" or key.startswith("data."))):
      value = _value(raw)
      out[key] = tuple(value) if isinstance(value, list) else value
  return out


def make_config(scheme, rho, loss, steps):
  """The training config of one run (module docstring)."""
  if scheme == "deepjscc":
    config = deepjscc_ffhq.get_config(f"matched,rho={rho}")
  else:
    config = generative_ffhq.get_config(f"matched,rho={rho},generator=frozen")
  res, n = _RES.value, _IMAGES.value
  settings = {
      "data.resolution": res, "data.generator.random.resolution": res,
      "data.generator.test_size": n, "eval.num_images": n,
      "eval.num_examples": n, "eval.snrs_db": tuple(float(s) for s in _SNRS.value),
      "eval.lpips_nets": ("alex", "vgg"), "eval.realisations": 1,
      "batch_size": _BATCH.value, "total_steps": steps,
      "checkpoint_every": min(250, steps), "log_every": min(25, steps),
      "optimizer.warmup_steps": max(1, min(50, steps // 10)),
      "loss.lambda_lpips": _LAMBDA.value if loss == "lpips" else 0.0,
      "loss.lpips_net": "alex", **_overrides(scheme)}
  return runs.override(config, settings)


def make_inverse_config(rho, loss, deep_workdir, output_dir):
  """InverseJSCC's config: `inverse_ffhq:matched` from `deep_workdir`.

  The search minimises the section's loss (MSE + lambda LPIPS-AlexNet, or
  MSE) plus ILO's geocross term, on the same test images and SNRs.
  """
  config = inverse_ffhq.get_config("matched")
  res, n = _RES.value, _IMAGES.value
  return runs.override(config, {
      "data.resolution": res, "data.generator.random.resolution": res,
      "data.generator.test_size": n, "num_images": n,
      "snrs_db": tuple(float(s) for s in _SNRS.value),
      "deepjscc_checkpoint": deep_workdir, "output_dir": output_dir,
      "metrics.lpips_nets": ("vgg", "alex"), "operator.lpips_net": "alex",
      "ilo.mse_weight": 1.0,
      "ilo.lambda_lpips": _LAMBDA.value if loss == "lpips" else 0.0,
      "tag": f"matched rho {rho}", **_overrides("inverse")})


def _rho_name(rho):
  return "rho" + rho.replace("/", "_")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  for loss in _LOSSES.value:
    if loss not in ("lpips", "mse"):
      raise ValueError(f"--losses: {loss!r} is not 'lpips' or 'mse'.")
  out = os.path.abspath(_OUT.value)
  os.makedirs(out, exist_ok=True)
  flops_path = os.path.join(out, "flops.json")
  steps = _STEPS.value
  tables = []
  for rho in _RHOS.value:
    for loss in _LOSSES.value:
      base = os.path.join(out, _rho_name(rho), loss)
      configs = {s: make_config(s, rho, loss, steps)
                 for s in ("deepjscc", "generative")}
      flops = {s: mp.flops_per_step(c, flops_path, f"{s}_{_rho_name(rho)}_{loss}")
               for s, c in configs.items()}
      plan = [("deepjscc", steps, configs["deepjscc"]),
              ("generative", steps, configs["generative"])]
      if _GEN_ONLY.value:
        plan = plan[1:]
      elif _EQUAL_FLOPS.value:
        eq = int(round(steps * flops["generative"] / flops["deepjscc"]))
        if eq != steps:  # Else equal steps are equal FLOPs.
          plan.append(("deepjscc", eq, make_config("deepjscc", rho, loss, eq)))
      results = {}
      for scheme, n, config in plan:
        name = f"{scheme}_{n}"
        workdir = os.path.join(base, name)
        record = mp.train_run(config, workdir)
        arrays = mp.evaluate_run(workdir, os.path.join(base, "eval", name),
                                 config.eval, f"{LABELS[scheme]} {n}")
        results[name] = (scheme, n, record, arrays)
      if _INVERSE.value and not _GEN_ONLY.value:
        config = make_inverse_config(
            rho, loss, os.path.join(base, f"deepjscc_{steps}"),
            os.path.join(base, f"inverse_from_deepjscc_{steps}"))
        arrays = mp.invert_run(config)
        results["inverse"] = ("inverse", sum(config.ilo.steps), {}, arrays)
      summary = []
      tables.append(_report(out, rho, loss, flops, results, summary))
      mp.write_section(base, tables[-1], summary)
      mp.gather_sections(out)
  print("\n\n".join(tables))


def _report(out, rho, loss, flops, results, summary):
  """Markdown of one (rho, loss): cost, equal steps, InverseJSCC, equal
  FLOPs, spectra; grids of every run."""
  steps = _STEPS.value
  gen = results[f"generative_{steps}"]
  deep = results.get(f"deepjscc_{steps}")
  loss_name = (f"MSE + {_LAMBDA.value:g}·LPIPS-Alex" if loss == "lpips"
               else "MSE")
  lines = [f"### ρ = {rho}, loss {loss_name}, {_RES.value}×{_RES.value}, "
           f"{_IMAGES.value} test images", "",
           "| run | steps | GFLOPs/step (XLA) | total PFLOPs | s/step (CPU, "
           "shared) | lattice energy ×data, period 8 / 4 |",
           "|---|---|---|---|---|---|"]
  for name, (scheme, n, record, arrays) in results.items():
    f = flops.get(scheme)  # None: InverseJSCC (n: search steps per image).
    rate = record.get("steps_per_s")
    lat = [mp.lattice_energy(arrays, p) for p in (8, 4)
           if _RES.value % p == 0]
    cost = (f"{f / 1e9:.2f} | {n * f / 1e15:.3f}" if f else
            "per-image search | —")
    lines.append(f"| {LABELS[scheme]} | {n} | {cost} | "
                 f"{f'{1 / rate:.3f}' if rate else '—'}"
                 f" | {' / '.join(f'{v:.2f}' for v in lat)} |")
    summary.append(dict(rho=rho, loss=loss, run=name, scheme=scheme, steps=n,
                        flops_per_step=f, steps_per_s=rate,
                        lattice_8=lat[0] if lat else None,
                        lattice_4=lat[1] if len(lat) > 1 else None,
                        metrics=_means(arrays)))
  gen_dir = os.path.join(out, _rho_name(rho), loss, f"generative_{steps}")
  spectra = mp.injected_map_spectra(gen_dir, float(_SNRS.value[0]),
                                    _IMAGES.value)
  lines += ["", "Injected maps' Nyquist share (GenerativeJSCC, "
            f"{_SNRS.value[0]} dB) against the data box-filtered to that "
            "size: " + ", ".join(f"{r}×{r}: {m:.3f} (data {d:.3f})"
                                  for r, (m, d) in spectra.items()), ""]
  summary.append(dict(rho=rho, loss=loss, injected_map_nyquist={
      str(r): dict(maps=m, data=d) for r, (m, d) in spectra.items()}))
  scales = mp.injection_scales(gen_dir)
  if scales:
    lines += ["Injection scales |gain · inject_scale_l| after training: " +
              ", ".join(f"{abs(v):.3f}" for v in scales.values()), ""]
    summary.append(dict(rho=rho, loss=loss, injection_scales=scales))
  if deep is None:
    lines += ["GenerativeJSCC alone:", "", mp.comparison_table(
        gen[3], gen[3], "GenerativeJSCC", "GenerativeJSCC")]
    return "\n".join(lines)
  lines += [f"Equal steps ({steps} each):", "",
            mp.comparison_table(deep[3], gen[3], "DeepJSCC", "GenerativeJSCC")]
  inv = results.get("inverse")
  if inv is not None:
    lines += ["", f"InverseJSCC ({inv[1]} search steps per image, from the "
              f"DeepJSCC {steps} run's receptions) against DeepJSCC:", "",
              mp.comparison_table(deep[3], inv[3], "DeepJSCC", "InverseJSCC"),
              "", "GenerativeJSCC against InverseJSCC:", "",
              mp.comparison_table(inv[3], gen[3], "InverseJSCC",
                                  "GenerativeJSCC")]
  eq = [v for k, v in results.items() if k.startswith("deepjscc_") and
        v[1] != steps]
  if eq:
    lines += ["", f"Equal FLOPs (DeepJSCC {eq[0][1]} steps, GenerativeJSCC "
              f"{steps}):", "",
              mp.comparison_table(eq[0][3], gen[3], "DeepJSCC",
                                  "GenerativeJSCC")]
  arrays = gen[3]
  k = min(6, len(arrays["originals"]))
  for s, snr in enumerate(arrays["snrs_db"]):
    rows = {f"{LABELS[v[0]]} {v[1]}": v[3]["examples"][s][:k]
            for v in results.values()}
    report.save_grid(arrays["originals"][:k], rows, os.path.join(
        out, f"grid_{_rho_name(rho)}_{loss}_{snr:g}dB.png"),
                     title=f"G0's test images at {snr:g} dB, ρ = {rho}, "
                     f"{loss_name}")
  return "\n".join(lines)


def _means(arrays):
  return {f"{m}@{s:g}dB": float(np.mean(arrays[m][i]))
          for m in mp.METRICS if m in arrays
          for i, s in enumerate(arrays["snrs_db"])}


if __name__ == "__main__":
  config_cli.run(main)
