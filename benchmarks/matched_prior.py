r"""The matched-prior experiment: every scheme with a prior that fits its source.

Every image is drawn from one fixed generator G0 (the seeded random 64x64
StyleGAN2 of `data.generator.random`, the `'generator'` dataset of the
`:matched` configs), and GenerativeJSCC and InverseJSCC get G0 itself as
their prior. The stages run the user-facing entry points, in order, one at
a time, and are reused by reruns once finished:

1. `python -m experiments.train --config=generative_ffhq:matched`
   (G0 fine-tuned) and `...:matched,generator=frozen`;
2. `python -m experiments.train --config=deepjscc_ffhq:matched`, for
   `--deepjscc_steps` (choose them so that its wall time equals the
   fine-tuned GenerativeJSCC's: `timings.json` records both);
3. `python -m experiments.invert --config=inverse_ffhq:matched` on that
   DeepJSCC run, once per latent space (`z_proxy`, ILO's, and `w_plus`),
   in OUT/inverse_<space>;
4. `python -m experiments.evaluate` puts every scheme on the same test
   images and channel (OUT/eval: summary.csv/.json, <metric>_vs_snr.png,
   per-run grids and per_image.npz);
5. the table (OUT/table.md): PSNR and LPIPS (AlexNet, VGG) per scheme and
   SNR, mean +- 95% CI over the test images, and the per-image paired
   difference to DeepJSCC with its 95% CI (InverseJSCC against the
   reconstructions it started from, the other schemes against the DeepJSCC
   sweep, which draws the same channel noise for the same image); and
   OUT/grid_<snr>dB.png, the first test images under every scheme.

  python benchmarks/matched_prior.py --out=runs/matched_prior \
      --generative_steps=120 --deepjscc_steps=1400

Wall times of each stage go to OUT/timings.json. Extra `--config.ilo.*`
settings for both searches can follow `--` (use another --out).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from gjscc_jax import results as report  # pylint: disable=g-import-not-at-top
from gjscc_jax.inverse import outputs

SPACES = ("z_proxy", "w_plus")
METRICS = ("psnr", "lpips_alex", "lpips_vgg")
TRAININGS = (  # (name, --config)
    ("generative_finetune", "generative_ffhq:matched"),
    ("generative_frozen", "generative_ffhq:matched,generator=frozen"),
    ("deepjscc", "deepjscc_ffhq:matched"),
)
LABELS = {
    "deepjscc": "DeepJSCC",
    "generative_finetune": "GenerativeJSCC (fine-tuned G0)",
    "generative_frozen": "GenerativeJSCC (frozen G0)",
    "inverse_start": "DeepJSCC (InverseJSCC's start)",
    "inverse_z_proxy": "InverseJSCC z_proxy",
    "inverse_w_plus": "InverseJSCC w_plus",
}


def _timings(out):
  path = os.path.join(out, "timings.json")
  return path, (json.load(open(path)) if os.path.exists(path) else {})


def _run(out, stage, command):
  """Runs `command` from the repository root; records its wall time."""
  print(f"[{stage}] $ " + " ".join(command), flush=True)
  start = time.time()
  subprocess.run(command, check=True, cwd=REPO)
  path, timings = _timings(out)
  timings[stage] = dict(wall_s=round(time.time() - start, 1),
                        command=" ".join(command))
  with open(path, "w") as f:
    json.dump(timings, f, indent=1)


def train(args, name, config):
  workdir = os.path.join(args.out, name)
  steps = args.deepjscc_steps if name == "deepjscc" else args.generative_steps
  if not os.path.isdir(os.path.join(workdir, "checkpoints", str(steps))):
    _run(args.out, name, [
        sys.executable, "-m", "experiments.train", f"--config={config}",
        f"--workdir={workdir}", "--noeval_at_end",
        f"--config.total_steps={steps}",
        f"--config.checkpoint_every={steps}",
        f"--config.optimizer.warmup_steps={max(1, min(50, steps // 10))}"])
  return workdir


def invert(args, space, deepjscc, extra):
  output_dir = os.path.join(args.out, f"inverse_{space}")
  if not os.path.exists(os.path.join(output_dir, "summary.json")):
    _run(args.out, f"inverse_{space}", [
        sys.executable, "-m", "experiments.invert",
        "--config=inverse_ffhq:matched",
        f"--config.deepjscc_checkpoint={deepjscc}",
        f"--config.output_dir={output_dir}",
        f"--config.ilo.latent_space={space}", f"--config.tag={space}"] + extra)
  return output_dir


def evaluate(args, dirs):
  output_dir = os.path.join(args.out, "eval")
  if not os.path.exists(os.path.join(output_dir, "summary.json")):
    runs = [f"--run={LABELS[name]}={dirs[name]}" for name in
            ("deepjscc", "generative_finetune", "generative_frozen")]
    runs += [f"--run={LABELS['inverse_start']}={dirs['inverse_z_proxy']}:deepjscc"]
    runs += [f"--run={LABELS[f'inverse_{s}']}={dirs[f'inverse_{s}']}"
             for s in SPACES]
    _run(args.out, "evaluate", [
        sys.executable, "-m", "experiments.evaluate",
        f"--output_dir={output_dir}", f"--snrs={args.snrs}",
        "--realisations=1", "--lpips=alex,vgg"] + runs)
  return output_dir


def per_image(args, dirs, eval_dir):
  """{name: {snr: {metric: (N,)}}} of every scheme."""
  num = args.num_images
  values = {}
  for name in ("deepjscc", "generative_finetune", "generative_frozen"):
    arrays = _per_image_file(eval_dir, name)
    values[name] = {float(s): {m: arrays[m][k] for m in METRICS}
                    for k, s in enumerate(arrays["snrs_db"])}
  for space in SPACES:
    store = outputs.OutputStore(dirs[f"inverse_{space}"])
    for snr in _snrs(args):
      records = [store.read_record(snr, i) for i in range(num)]
      for key, name in (("inverse", f"inverse_{space}"),
                        ("deepjscc", f"inverse_start_{space}")):
        values.setdefault(name, {})[snr] = {
            m: np.array([r[key][m] for r in records]) for m in METRICS}
  values["inverse_start"] = values.pop("inverse_start_z_proxy")
  start_w = values.pop("inverse_start_w_plus")
  for snr in _snrs(args):  # Both searches start from the same transmissions.
    for m in METRICS:
      if not np.allclose(start_w[snr][m], values["inverse_start"][snr][m]):
        print(f"Note: the w_plus and z_proxy runs started from different "
              f"DeepJSCC reconstructions at {snr:g} dB ({m}).")
  return values


def _slug(text):
  import re  # pylint: disable=g-import-not-at-top
  return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def _snrs(args):
  return [float(s) for s in args.snrs.split(",")]


def _cell(values, signed=False):
  mean, ci = report.mean_ci95(values)
  digits = 2 if abs(mean) >= 1 else 4
  return f"{mean:{'+' if signed else ''}.{digits}f} ± {ci:.{digits}f}"


def table(args, values):
  """Markdown: per SNR and scheme, each metric and its paired difference."""
  head = ["SNR", "scheme"] + [report.METRICS[m][0] for m in METRICS] + [
      f"Δ {report.METRICS[m][0]} (paired)" for m in METRICS]
  lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
  for snr in _snrs(args):
    for name in ("deepjscc", "generative_finetune", "generative_frozen",
                 "inverse_start", "inverse_z_proxy", "inverse_w_plus"):
      v = values[name][snr]
      base = values["inverse_start" if name.startswith("inverse_")
                    else "deepjscc"][snr]
      cells = [_cell(v[m]) for m in METRICS]
      if name in ("deepjscc", "inverse_start"):
        deltas = [""] * len(METRICS)
      else:
        deltas = [_cell(v[m] - base[m], signed=True) for m in METRICS]
      lines.append(f"| {snr:g} dB | {LABELS[name]} | " +
                   " | ".join(cells + deltas) + " |")
  return "\n".join(lines)


def _per_image_file(eval_dir, name):
  rho = report.format_ratio(1 / 192).replace("/", "_")
  return np.load(os.path.join(eval_dir, "runs",
                              f"{_slug(LABELS[name])}_rho{rho}",
                              "per_image.npz"))


def grids(args, dirs, eval_dir):
  """OUT/grid_<snr>dB.png: the first test images under every scheme."""
  k = args.grid_images
  swept = {name: _per_image_file(eval_dir, name) for name in
           ("deepjscc", "generative_finetune", "generative_frozen")}
  originals = swept["deepjscc"]["originals"][:k]
  k = len(originals)
  paths = []
  for snr in _snrs(args):
    rows = {}
    for name, arrays in swept.items():
      at = list(arrays["snrs_db"]).index(snr)
      rows[LABELS[name]] = arrays["examples"][at][:k]
    store = outputs.OutputStore(dirs["inverse_z_proxy"])
    rows[LABELS["inverse_start"]] = np.stack(
        [store.read_image(snr, i, "received") for i in range(k)])
    for space in SPACES:
      store = outputs.OutputStore(dirs[f"inverse_{space}"])
      rows[LABELS[f"inverse_{space}"]] = np.stack(
          [store.read_image(snr, i, "restored") for i in range(k)])
    path = os.path.join(args.out, f"grid_{snr:g}dB.png")
    report.save_grid(originals, rows, path,
                     title=f"G0's test images at {snr:g} dB, rho = 1/192")
    paths.append(path)
  return paths


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  extra = []
  if "--" in argv:
    extra = argv[argv.index("--") + 1:]
    argv = argv[:argv.index("--")]
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=os.path.join(REPO, "runs",
                                                    "matched_prior"))
  parser.add_argument("--generative_steps", type=int, default=400,
                      help="Steps of both GenerativeJSCC runs.")
  parser.add_argument("--deepjscc_steps", type=int, default=2300,
                      help="DeepJSCC steps: those that take the fine-tuned "
                      "GenerativeJSCC's wall time.")
  parser.add_argument("--snrs", default="-5,0,5",
                      help="The :matched configs' SNRs.")
  parser.add_argument("--num_images", type=int, default=32,
                      help="The :matched configs' test images.")
  parser.add_argument("--grid_images", type=int, default=6)
  parser.add_argument("--stop_after", choices=(
      "generative", "train", "invert", "evaluate"), default=None,
                      help="'generative': train both GenerativeJSCC runs "
                      "only (then time DeepJSCC against them).")
  args = parser.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  dirs = {}
  for name, config in TRAININGS:
    if name == "deepjscc" and args.stop_after == "generative":
      return
    dirs[name] = train(args, name, config)
  if args.stop_after == "train":
    return
  for space in SPACES:
    dirs[f"inverse_{space}"] = invert(args, space, dirs["deepjscc"], extra)
  if args.stop_after == "invert":
    return
  eval_dir = evaluate(args, dirs)
  if args.stop_after == "evaluate":
    return
  text = table(args, per_image(args, dirs, eval_dir))
  print(text)
  with open(os.path.join(args.out, "table.md"), "w") as f:
    f.write(text + "\n")
  for path in grids(args, dirs, eval_dir):
    print("Wrote", path)
  with open(os.path.join(args.out, "args.json"), "w") as f:
    json.dump(dict(vars(args), extra=extra), f, indent=1)


if __name__ == "__main__":
  main()
