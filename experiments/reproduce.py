r"""One command for the paper's figures: every scheme at every bandwidth ratio.

  python -m experiments.reproduce --data=celebahq \
      --image_dir=/data/CelebAMask-HQ/CelebA-HQ-img --weights=weights/ffhq256 \
      --output_dir=results/paper
  python -m experiments.reproduce --scale=demo --output_dir=runs/reproduce_demo
  python -m experiments.reproduce ... --dry_run     # print the commands only

Runs, one after the other (`experiments/matrix.py`): for each rho
the DeepJSCC and GenerativeJSCC trainings (`experiments.train`), InverseJSCC
on the DeepJSCC run (`experiments.invert`) and the separation baseline per
codec (`experiments.separation`), all on the same dataset and test split;
then `experiments.evaluate` over everything, on the same test images and
channel, into OUTPUT_DIR/figures: <metric>_vs_snr_by_rho.png (PSNR, SSIM,
LPIPS vs SNR, a panel per rho, every scheme), <metric>_vs_rho.png and
summary.csv.

Perception-distortion: --lambdas=0,0.01,0.1,1 trains DeepJSCC and
GenerativeJSCC once per LPIPS weight lambda of their loss (a run directory
each, <scheme>_<rho>_lambda<lambda>); the evaluation then also draws
<metric>_vs_psnr.png (LPIPS, DISTS, FID against PSNR, a panel per SNR, a
curve per scheme and rho through its lambdas).

Resumable: each finished step is recorded in OUTPUT_DIR/reproduce.json (its
command line, wall and CPU seconds) and skipped by a rerun of the same
command; an interrupted step resumes inside its own tool (training from its
checkpoint, inversion from its finished images). --scale=paper uses the
configs' paper settings (see docs/paper-settings.md); --scale=demo the
`:demo` configs on the embedded sample images at 64x64 on CPU (no
download, randomly initialised generators).
"""

import dataclasses
import os
import time

from absl import app
from absl import flags

from experiments import config_cli
from gjscc_jax import data as data_lib
from experiments import matrix as matrix_lib

_OUT = flags.DEFINE_string("output_dir", None, "Root of every run's directory.")
_SCALE = flags.DEFINE_enum("scale", "paper", list(matrix_lib.SCALES),
                           "paper: the paper's settings; demo: CPU-sized.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False,
                             "Print the commands (and which are done) only.")
_RHOS = flags.DEFINE_list("rhos", None, "Bandwidth ratios (default: paper "
                          "1/768,1/384,1/192; demo 1/192,1/48).")
_SNRS = flags.DEFINE_list("snrs_db", None, "Test SNRs in dB (default: paper "
                          "-5,-3,-1,0,1,3,5; demo -5,0,5,10,15).")
_DATA = flags.DEFINE_enum("data", None, data_lib.DATASET_NAMES,
                          "Dataset of training and test images (default: "
                          "paper celebahq, demo sample).")
_IMAGE_DIR = flags.DEFINE_string("image_dir", None, "Its image folder.")
_TFDS_DIR = flags.DEFINE_string("tfds_dir", None,
                                "Prepared datasets' directory.")
_RESOLUTION = flags.DEFINE_integer("resolution", None, "Image side (default: "
                                   "paper 256, demo 64).")
_WEIGHTS = flags.DEFINE_string(
    "weights", None, "Converted StyleGAN2 directory (GenerativeJSCC decoder, "
    "InverseJSCC prior); required at paper scale.")
_NUM_IMAGES = flags.DEFINE_integer(
    "num_images", None, "Test images, the first N of the test split "
    "(default: paper all, demo 16).")
_SCHEMES = flags.DEFINE_list("schemes", list(matrix_lib.DEFAULT_SCHEMES),
                             "Schemes to run (also: digital, the codecs over "
                             "5G LDPC + QAM).")
_CODECS = flags.DEFINE_list("codecs", None, "Separation codecs (default "
                            "heif,jpeg2000).")
_LPIPS = flags.DEFINE_list("lpips", None, "LPIPS backbones (default: paper "
                           "vgg,alex; demo alex).")
_REALISATIONS = flags.DEFINE_integer("realisations", None,
                                     "Channel realisations per test image.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", None,
                                    "Steps of every training run.")
_DEEPJSCC_FLAGS = flags.DEFINE_multi_string(
    "deepjscc_flag", [], "A flag added to every DeepJSCC experiments.train "
    "command, e.g. --deepjscc_flag=--config.batch_size=64.")
_GENERATIVE_FLAGS = flags.DEFINE_multi_string(
    "generative_flag", [], "A flag added to every GenerativeJSCC "
    "experiments.train command.")
_INVERT_FLAGS = flags.DEFINE_multi_string(
    "invert_flag", [], "A flag added to every experiments.invert command.")
_SEPARATION_FLAGS = flags.DEFINE_multi_string(
    "separation_flag", [], "A flag added to every experiments.separation "
    "command.")
_EVALUATE_FLAGS = flags.DEFINE_multi_string(
    "evaluate_flag", [], "A flag added to the experiments.evaluate command.")
_LAMBDAS = flags.DEFINE_list(
    "lambdas", None, "Perception-distortion sweep: train DeepJSCC and "
    "GenerativeJSCC once per LPIPS weight of the loss (MSE + lambda * LPIPS), "
    "e.g. 0,0.01,0.1,1; the evaluation then draws <metric>_vs_psnr.png.")
_INCEPTION = flags.DEFINE_string(
    "inception_weights", None, "Directory of `python -m weights_convert "
    "inception`: the evaluation then also reports DISTS, FID and KID "
    "(docs/perception-metrics.md).")


def _perception_flags(matrix):
  """`experiments.evaluate` flags for DISTS/FID/KID when the FID Inception
  weights are given (and present)."""
  if not _INCEPTION.value:
    return []
  from gjscc_jax.perception import inception_weights  # pylint: disable=import-outside-toplevel
  try:
    inception_weights.weights_file(_INCEPTION.value)
  except FileNotFoundError as e:
    raise app.UsageError(f"--inception_weights: {e}") from None
  lpips = [f"lpips_{n}" for n in matrix.resolved().lpips if n]
  metrics = ",".join(["psnr", "ssim", *lpips, "dists", "fid", "kid"])
  return [f"--metrics={metrics}",
          f"--inception_weights={os.path.abspath(_INCEPTION.value)}"]

def _lambdas():
  if _LAMBDAS.value is None:
    return None
  try:
    return [float(v) for v in _LAMBDAS.value]
  except ValueError:
    raise app.UsageError(f"--lambdas={','.join(_LAMBDAS.value)}: give "
                         "numbers, e.g. --lambdas=0,0.01,0.1,1.") from None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not _OUT.value:
    raise app.UsageError("Pass --output_dir.")
  matrix = matrix_lib.Matrix(
      output_dir=_OUT.value, scale=_SCALE.value, rhos=_RHOS.value,
      snrs=None if _SNRS.value is None else [float(s) for s in _SNRS.value],
      data=_DATA.value, image_dir=_IMAGE_DIR.value, tfds_dir=_TFDS_DIR.value,
      resolution=_RESOLUTION.value, weights=_WEIGHTS.value,
      num_images=_NUM_IMAGES.value, schemes=_SCHEMES.value,
      codecs=_CODECS.value, lpips=_LPIPS.value,
      realisations=_REALISATIONS.value, train_steps=_TRAIN_STEPS.value,
      deepjscc_flags=_DEEPJSCC_FLAGS.value,
      generative_flags=_GENERATIVE_FLAGS.value,
      invert_flags=_INVERT_FLAGS.value,
      separation_flags=_SEPARATION_FLAGS.value,
      evaluate_flags=_EVALUATE_FLAGS.value, lambdas=_lambdas())
  matrix = dataclasses.replace(matrix, evaluate_flags=(
      *matrix.evaluate_flags, *_perception_flags(matrix)))
  steps = matrix_lib.plan(matrix)
  state = os.path.join(_OUT.value, "reproduce.json")
  if _DRY_RUN.value:
    todo = {s.name for s in matrix_lib.pending(steps, state)}
    for step in steps:
      mark = "" if step.name in todo else "# done: "
      print(f"{mark}{step.command()}")
    return
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  start = time.perf_counter()
  matrix_lib.run(steps, state, cwd=root,
                 log=lambda line: print(line, flush=True))
  print(f"All {len(steps)} steps done ({time.perf_counter() - start:.0f} s "
        f"this time); figures in {os.path.join(_OUT.value, 'figures')}.",
        flush=True)


if __name__ == "__main__":
  config_cli.run(main)
