r"""InverseJSCC with a prior that fits its source: W+ search vs ILO's z proxy.

The controlled experiment: every image is drawn from one fixed generator G0
(the seeded random 64x64 StyleGAN2 of the demo, no truncation, seeded noise
maps), a demo-size DeepJSCC is trained on such images, and InverseJSCC
restores its reconstructions with G0 itself as the prior, searching either
W+ from `w_avg` (`latent_space='w_plus'`) or ILO's Gaussianised space
(`'z_proxy'`). With the right prior, InverseJSCC should beat DeepJSCC on
LPIPS. Everything runs through the command-line entry points a user runs:

1. G0 is written as a converted generator directory (OUT/g0);
2. the 'generator' dataset samples `--train_images` / `--num_images` images
   from it (OUT/tfds);
3. `python -m experiments.train --config=deepjscc_ffhq:demo` trains
   DeepJSCC on them for `--train_steps` steps (OUT/deepjscc);
4. `python -m experiments.invert --config=inverse_ffhq` runs once per
   latent space (OUT/inverse_<space>), at `--snrs`;
5. the table: PSNR and LPIPS (VGG, AlexNet) of DeepJSCC and of both
   searches, mean +- 95% CI over the test images, and the per-image
   difference InverseJSCC - DeepJSCC with its 95% CI.

  python benchmarks/ilo_matched_prior.py --out=runs/ilo_matched

Reruns reuse every finished stage. Extra `--config.ilo.*` settings for both
searches can follow `--`, e.g. `-- --config.ilo.lpips_target=generator`
(use another --out).
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from gjscc_jax import data  # pylint: disable=g-import-not-at-top
from gjscc_jax.evaluation import report
from gjscc_jax.inverse import outputs
from gjscc_jax.models import stylegan2

SPACES = ("w_plus", "z_proxy")


def _run(command):
  print("$ " + " ".join(command), flush=True)
  subprocess.run(command, check=True, cwd=REPO)


def _tuple_flag(values):
  return "(" + "".join(f"{float(v)!r}," for v in values) + ")"


def write_g0(directory):
  """G0: the demo's random generator (data.generator.random defaults)."""
  if os.path.exists(os.path.join(directory, "config.json")):
    return
  settings = data.default_data_config().generator.random.to_dict()
  module, variables = stylegan2.random_stylegan2(**settings)
  import jax  # pylint: disable=g-import-not-at-top
  stylegan2.save_stylegan2(directory, module.config,
                           jax.device_get(variables),
                           source=dict(kind="random_stylegan2", **settings))


def data_flags(args):
  return ["--config.data.name=generator", "--config.data.resolution=64",
          f"--config.data.tfds_dir={os.path.join(args.out, 'tfds')}",
          f"--config.data.generator.dir={os.path.join(args.out, 'g0')}",
          f"--config.data.generator.train_size={args.train_images}",
          f"--config.data.generator.test_size={args.num_images}",
          "--config.data.generator.truncation_psi=1.0",
          "--config.data.generator.noise_mode=random"]


def train_deepjscc(args):
  workdir = os.path.join(args.out, "deepjscc")
  if os.path.isdir(os.path.join(workdir, "checkpoints", str(
      args.train_steps))):
    return workdir
  _run([sys.executable, "-m", "experiments.train",
        "--config=deepjscc_ffhq:demo", f"--workdir={workdir}",
        "--noeval_at_end", f"--config.total_steps={args.train_steps}",
        f"--config.checkpoint_every={args.train_steps}"] + data_flags(args))
  return workdir


def invert(args, space, deepjscc, extra):
  output_dir = os.path.join(args.out, f"inverse_{space}")
  _run([sys.executable, "-m", "experiments.invert", "--config=inverse_ffhq",
        f"--config.deepjscc_checkpoint={deepjscc}",
        f"--config.generator_weights={os.path.join(args.out, 'g0')}",
        f"--config.output_dir={output_dir}",
        f"--config.num_images={args.num_images}",
        f"--config.snrs_db={_tuple_flag(args.snrs)}",
        f"--config.ilo.latent_space={space}", f"--config.tag={space}",
        f"--config.batch_size={args.batch_size}"] + data_flags(args) + extra)
  return output_dir


def _records(output_dir, snr, num_images):
  store = outputs.OutputStore(output_dir)
  return [store.read_record(snr, i) for i in range(num_images)]


def table(args, dirs):
  """Markdown rows: scheme, SNR, metric mean +- CI, and paired deltas."""
  metrics = ("psnr", "lpips_vgg", "lpips_alex")
  lines = ["| SNR | method | " + " | ".join(metrics) + " | Δ LPIPS-VGG vs "
           "DeepJSCC (paired) |", "|---" * (len(metrics) + 3) + "|"]
  for snr in args.snrs:
    base = None
    for space in SPACES:
      records = _records(dirs[space], snr, args.num_images)
      if base is None:
        base = {m: np.array([r["deepjscc"][m] for r in records])
                for m in metrics}
        cells = [_cell(base[m]) for m in metrics]
        lines.append(f"| {snr:g} dB | DeepJSCC | " + " | ".join(cells) +
                     " | |")
      ours = {m: np.array([r["inverse"][m] for r in records])
              for m in metrics}
      cells = [_cell(ours[m]) for m in metrics]
      delta = _cell(ours["lpips_vgg"] - base["lpips_vgg"], signed=True)
      lines.append(f"| {snr:g} dB | InverseJSCC `{space}` | " +
                   " | ".join(cells) + f" | {delta} |")
  return "\n".join(lines)


def _cell(values, signed=False):
  mean, ci = report.mean_ci95(values)
  digits = 2 if abs(mean) > 2 else 4
  return f"{mean:{'+' if signed else ''}.{digits}f} ± {ci:.{digits}f}"


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  extra = []
  if "--" in argv:
    extra = argv[argv.index("--") + 1:]
    argv = argv[:argv.index("--")]
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=os.path.join(REPO, "runs",
                                                    "ilo_matched"))
  parser.add_argument("--num_images", type=int, default=32)
  parser.add_argument("--train_images", type=int, default=2048)
  parser.add_argument("--train_steps", type=int, default=500)
  parser.add_argument("--snrs", default="-5,0")
  parser.add_argument("--batch_size", type=int, default=8)
  args = parser.parse_args(argv)
  args.snrs = tuple(float(s) for s in args.snrs.split(","))
  os.makedirs(args.out, exist_ok=True)
  write_g0(os.path.join(args.out, "g0"))
  deepjscc = train_deepjscc(args)
  dirs = {space: invert(args, space, deepjscc, extra) for space in SPACES}
  text = table(args, dirs)
  print(text)
  with open(os.path.join(args.out, "table.md"), "w") as f:
    f.write(text + "\n")
  with open(os.path.join(args.out, "args.json"), "w") as f:
    json.dump(dict(vars(args), extra=extra), f, indent=1)


if __name__ == "__main__":
  main()
