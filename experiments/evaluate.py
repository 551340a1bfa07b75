r"""Puts trained runs on the same PSNR / SSIM / MS-SSIM / LPIPS vs SNR plots.

  python -m experiments.evaluate --output_dir=results \
      --run=DeepJSCC=runs/deepjscc_192 --run=GenerativeJSCC=runs/generative_192 \
      --snrs=-5,-3,-1,0,1,3,5 --realisations=4

Each --run is LABEL=WORKDIR of a `python -m experiments.train` run (its latest
checkpoint, or --step). Every run is evaluated on its own config's test split
(override with --image_dir/--split/--num_images) over the same SNRs and
channel realisations. Written to --output_dir: summary.csv and summary.json
(mean and 95% confidence interval per scheme, rho, SNR and metric), one PNG
per metric vs SNR, and a grid of originals vs reconstructions per run.

--merge=SUMMARY.json adds the rows of another evaluation to the tables and
plots, e.g. an InverseJSCC run's OUTPUT_DIR/summary.json (the same row
format); --merge_schemes keeps only some of its schemes (InverseJSCC's
summary also holds the DeepJSCC reconstructions it started from):

  python -m experiments.evaluate --output_dir=results --run=DeepJSCC=runs/dj \
      --merge=results/inverse/summary.json --merge_schemes=inversejscc
"""

import json
import os

from absl import app
from absl import flags
import jax

from experiments import config_cli
from gjscc_jax.evaluation import report
from gjscc_jax import sharding
from gjscc_jax.evaluation import runner
from gjscc_jax.train import runs

_RUNS = flags.DEFINE_multi_string(
    "run", [], "LABEL=WORKDIR of a training run; repeat for several runs.")
_OUT = flags.DEFINE_string("output_dir", None, "Where to write tables and plots.")
_SNRS = flags.DEFINE_list("snrs", ["-5", "-3", "-1", "0", "1", "3", "5"],
                          "Test SNRs in dB.")
_REALISATIONS = flags.DEFINE_integer("realisations", 2,
                                     "Channel realisations per image and SNR.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", None,
                                   "Evaluate the first N test images (all if unset).")
_SPLIT = flags.DEFINE_string("split", None, "Data split (default: the run's eval split).")
_IMAGE_DIR = flags.DEFINE_string("image_dir", None,
                                 "Override the runs' data.image_dir.")
_LPIPS = flags.DEFINE_list("lpips", ["vgg", "alex"],
                           "LPIPS backbones to report (empty to skip LPIPS).")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Evaluation batch size.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_SEED = flags.DEFINE_integer("seed", 1, "Seed of the channel realisations.")
_MERGE = flags.DEFINE_multi_string(
    "merge", [], "summary.json of another evaluation (e.g. InverseJSCC's) whose "
    "rows join the tables and plots; repeat for several.")
_MERGE_SCHEMES = flags.DEFINE_list(
    "merge_schemes", [], "Keep only these schemes of the --merge rows (e.g. "
    "inversejscc); empty: all.")


def parse_run(value):
  label, sep, workdir = value.partition("=")
  if not sep or not label or not workdir:
    raise app.UsageError(f"--run={value!r} must be LABEL=WORKDIR.")
  return label, workdir


def merged_rows(paths, schemes=()):
  """The rows of the summary.json files `paths` (only `schemes`, if given)."""
  rows = []
  for path in paths:
    with open(path) as f:
      loaded = json.load(f)
    missing = [r for r in loaded if not set(report.FIELDS) <= set(r)]
    if missing:
      raise app.UsageError(
          f"--merge={path} is not a summary.json of experiments.evaluate or "
          f"experiments.invert (rows need the fields {report.FIELDS}).")
    rows += [r for r in loaded if not schemes or r["scheme"] in schemes]
  return rows


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not _RUNS.value or not _OUT.value:
    raise app.UsageError("Pass at least one --run=LABEL=WORKDIR and --output_dir.")
  labelled = [parse_run(v) for v in _RUNS.value]
  merged = merged_rows(_MERGE.value, _MERGE_SCHEMES.value)  # Checked first.
  snrs = [float(s) for s in _SNRS.value]
  mesh = sharding.make_mesh()
  lpips = runner.lpips_metrics(_LPIPS.value)
  rows = []
  for label, workdir in labelled:
    config, scheme, params = runs.load_run(workdir, _STEP.value)
    with config.unlocked():
      if _IMAGE_DIR.value:
        config.data.image_dir = _IMAGE_DIR.value
      ev = config.eval
      ev.snrs_db = snrs
      ev.realisations = _REALISATIONS.value
      ev.num_images = _NUM_IMAGES.value
      ev.batch_size = _BATCH.value
      ev.seed = _SEED.value
      if _SPLIT.value:
        ev.split = _SPLIT.value
    rows += runner.evaluate_params(
        config, scheme, params, mesh, os.path.join(_OUT.value, "runs", label),
        label=label, lpips=lpips)
  rows += merged  # After the runs: their labels come first in the legend.
  if jax.process_index() == 0:
    report.write_tables(rows, _OUT.value)
    paths = report.plot_metrics(rows, _OUT.value)
    for metric in dict.fromkeys(r["metric"] for r in rows):
      print(report.format_table(rows, metric), "\n", flush=True)
    print("Wrote", ", ".join(paths), "and summary.csv/json to", _OUT.value)


if __name__ == "__main__":
  config_cli.run(main)
