"""A user's mistake on the command line: one line with the cause and the fix,
exit status 1, no Python traceback (unless asked for), inputs checked in the
order a user fixes them (checkpoint, weights, then data)."""

import os
import subprocess
import sys

import pytest

from tests._helpers import untrained_deepjscc_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _start(module, *flags, env_extra=None):
  env = dict(os.environ, **(env_extra or {}))
  if not module.startswith(("gjscc_jax.", "weights_convert")):
    module = f"experiments.{module}"
  return subprocess.Popen(
      [sys.executable, "-m", module, *flags], cwd=REPO,
      env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  """Every case started at once (each is a fresh Python), then collected."""
  root = tmp_path_factory.mktemp("cli_errors")
  tfds = str(root / "tfds")  # Empty: no dataset is prepared in it.
  run = str(root / "deepjscc")
  untrained_deepjscc_run(run, tfds, resolution=16)
  unreadable = root / "unreadable"
  unreadable.mkdir()
  for name in ("a.png", "b.jpg"):
    (unreadable / name).write_bytes(b"not an image")
  invert = ["--config=inverse_ffhq", f"--config.data.tfds_dir={tfds}",
            f"--config.output_dir={root / 'out'}"]
  cases = {
      "bcr": _start("train", "--config=deepjscc_ffhq:bcr=1/100",
                    f"--workdir={root / 'bcr'}"),
      "bcr_verbose": _start("train", "--config=deepjscc_ffhq:bcr=1/100",
                            f"--workdir={root / 'bcr'}",
                            env_extra={"GJSCC_VERBOSE": "1"}),
      "dataset": _start("train", "--config=deepjscc_ffhq",
                        f"--config.data.tfds_dir={tfds}",
                        f"--workdir={root / 'dataset'}"),
      "checkpoint": _start("invert", *invert,
                           f"--config.deepjscc_checkpoint={root / 'none'}"),
      "weights": _start("invert", *invert, f"--config.deepjscc_checkpoint={run}",
                        "--config.data.resolution=16",
                        f"--config.generator_weights={root / 'none'}"),
      "evaluate_run": _start("evaluate", f"--run=X={root}",
                             f"--output_dir={root / 'curves'}"),
      "reproduce_weights": _start("reproduce", "--data=celebahq",
                                  "--image_dir=/data/celebahq",
                                  f"--output_dir={root / 'paper'}"),
      "log_every": _start("train", "--config=deepjscc_ffhq:demo",
                          "--config.log_every=0",
                          f"--workdir={root / 'log_every'}"),
      "evaluate_step": _start("evaluate", f"--run=X={run}", "--step=999",
                              f"--output_dir={root / 'curves_step'}"),
      "separation_into_run": _start("separation", f"--output_dir={run}",
                                    "--resolution=16", "--num_images=2"),
      "prepare_unreadable": _start(
          "gjscc_jax.data.prepare", "--name=image_folder",
          f"--image_dir={unreadable}", "--resolution=8",
          "--test_fraction=0.5", f"--tfds_dir={root / 'tfds_prepare'}"),
      "prepare_missing": _start("gjscc_jax.data.prepare", "--name=ffhq",
                                f"--tfds_dir={root / 'tfds_prepare'}"),
      "weights_dir": _start("weights_convert", "stylegan2", str(unreadable),
                            str(root / "converted")),
  }
  outputs = {name: proc.communicate(timeout=300) for name, proc in cases.items()}
  return {name: (cases[name].returncode, *out) for name, out in outputs.items()}


@pytest.mark.parametrize("case,cause,fix", [
    ("bcr", "rho=1/100 needs C=15.36 latent channels", "Nearest reachable"),
    ("dataset", "'ffhq' dataset is not prepared", "--config.data.image_dir="),
    ("checkpoint", "is not a training run directory",
     "python -m experiments.train"),
    ("weights", "is not a converted StyleGAN2 generator",
     "python -m weights_convert stylegan2"),
    ("evaluate_run", "is neither a training run (config.json), nor an "
     "InverseJSCC or separation output", "rerun the command that writes it"),
    ("reproduce_weights", "need a converted StyleGAN2", "--weights=DIR"),
    # Issue 27: these ended in tracebacks or errors naming no fix.
    ("log_every", "config.log_every=0: it must be an integer >= 1",
     "--config.log_every=N"),
    ("evaluate_step", "no checkpoint of step 999", "the steps saved are: 0"),
    ("separation_into_run", "holds a training run",
     "pass another --output_dir for the separation output"),
    ("prepare_unreadable", "could be read: ", "Replace them with readable"),
    ("prepare_missing", "'ffhq' dataset is not prepared and --image_dir is "
     "not set", "python -m gjscc_jax.data.prepare --name=ffhq"),
    ("weights_dir", "is a directory", "pass the weights file itself"),
])
def test_error_is_one_line_with_cause_and_fix(results, case, cause, fix):
  returncode, stdout, stderr = results[case]
  assert returncode == 1, stderr[-3000:]
  assert "Traceback" not in stdout + stderr
  errors = [line for line in stderr.splitlines() if line.startswith("Error: ")]
  assert len(errors) == 1, stderr[-3000:]
  assert cause in errors[0] and fix in errors[0]


def test_checkpoint_is_checked_before_the_data(results):
  # The default inverse_ffhq data (FFHQ) is not prepared either; the
  # checkpoint and weights errors come first.
  for case in ("checkpoint", "weights"):
    assert "dataset" not in results[case][2].split("Error: ")[-1]


def test_verbose_shows_the_traceback(results):
  returncode, _, stderr = results["bcr_verbose"]
  assert returncode == 1
  assert "Traceback" in stderr and "rho=1/100" in stderr


def test_unreadable_images_are_each_named(results):
  error = [line for line in results["prepare_unreadable"][2].splitlines()
           if line.startswith("Error: ")][0]
  listed = error.split("could be read: ")[1].split(". Replace")[0]
  # A 50% test fraction of two files: one file per split; the first split
  # prepared names its file.
  assert listed in ("a.png", "b.jpg")
  assert "No examples were yielded" not in results["prepare_unreadable"][2]
  # The library's messages name the training command's flags; prepare's
  # names its own.
  assert "--config.data." not in results["prepare_missing"][2]
  assert "data_config." not in results["prepare_missing"][2]

