"""`experiments.reproduce`: the paper's matrix as resumable commands."""

import json
import os
import shlex
import subprocess
import sys

import pytest

from experiments import matrix as matrix_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _names(steps):
  return [s.name for s in steps]


def test_paper_plan_runs_every_scheme_at_every_rho_on_one_test_split():
  steps = matrix_lib.plan(matrix_lib.Matrix(
      output_dir="results/paper", data="celebahq",
      image_dir="/data/celebahq", weights="weights/ffhq256"))
  rhos = ("1_768", "1_384", "1_192")
  assert _names(steps) == ["prepare"] + [
      f"{kind}_{r}" for r in rhos for kind in (
          "deepjscc", "generative", "inverse", "separation_heif",
          "separation_jpeg2000")] + ["evaluate"]
  by_name = {s.name: s for s in steps}
  inverse = by_name["inverse_1_192"].argv
  assert ("--config.deepjscc_checkpoint=" + by_name["deepjscc_1_192"].output
          in inverse)
  assert "--config.generator_weights=weights/ffhq256" in inverse
  assert "--config=generative_ffhq:rho=1/768,weights=weights/ffhq256" in (
      by_name["generative_1_768"].argv)
  # Every step reads the same dataset at the same resolution.
  for step in steps[1:-1]:
    assert any(a in step.argv for a in ("--config.data.name=celebahq",
                                        "--data=celebahq")), step.name
  evaluate = by_name["evaluate"].argv
  runs = [a for a in evaluate if a.startswith("--run=")]
  assert len(runs) == 3 * 5
  assert "--run=HEIF (capacity)=results/paper/separation_heif_1_384" in runs
  assert {"--data.name=celebahq", "--data.split=test",
          "--snrs_db=-5,-3,-1,0,1,3,5"} <= set(evaluate)


@pytest.mark.parametrize("kwargs,message", [
    (dict(rhos=("1/100",)), "Nearest reachable ratios"),
    (dict(schemes=("inverse",), weights="w"), "add deepjscc"),
    (dict(image_dir="/data/x"), "--weights=DIR"),
    (dict(weights="w"), "needs --image_dir"),
    (dict(scale="huge"), "choose one of paper, demo"),
])
def test_plans_that_cannot_run_name_the_fix(kwargs, message):
  with pytest.raises(ValueError, match=message):
    matrix_lib.plan(matrix_lib.Matrix(output_dir="out", **kwargs))


def test_run_resumes_after_a_failed_step_and_reruns_changed_commands(
    tmp_path):
  log = tmp_path / "log.txt"
  fail = tmp_path / "fail"
  fail.write_text("")

  def step(name, code):
    return matrix_lib.Step(name, [sys.executable, "-c", code], str(tmp_path))

  append = lambda text: (f"open({str(log)!r}, 'a').write({text!r})")
  steps = [step("a", append("a")),
           step("b", f"import os, sys; {append('b')}; "
                f"sys.exit(os.path.exists({str(fail)!r}))"),
           step("c", append("c"))]
  state = str(tmp_path / "reproduce.json")
  with pytest.raises(RuntimeError, match="Step b failed with exit status 1"):
    matrix_lib.run(steps, state, log=lambda _: None)
  assert log.read_text() == "ab"
  assert _names(matrix_lib.pending(steps, state)) == ["b", "c"]
  fail.unlink()
  matrix_lib.run(steps, state, log=lambda _: None)
  assert log.read_text() == "abbc"
  assert matrix_lib.pending(steps, state) == []
  recorded = json.load(open(state))
  assert recorded["a"]["argv"] == steps[0].argv[1:]
  assert recorded["a"]["wall_s"] >= 0 and recorded["a"]["cpu_s"] >= 0
  # A step whose command changed is run again; the others are not.
  steps[2] = step("c", append("C"))
  matrix_lib.run(steps, state, log=lambda _: None)
  assert log.read_text() == "abbcC"


def _reproduce(*flags, env=None):
  return subprocess.run(
      [sys.executable, "-m", "experiments.reproduce", *flags], cwd=REPO,
      env=env, capture_output=True, text=True, timeout=900)


def test_demo_matrix_runs_end_to_end_and_resumes(tmp_path):
  """Two rho, one training step, two test images, two SNRs, tiny models."""
  out = tmp_path / "demo"
  flags = [
      "--scale=demo", f"--output_dir={out}", f"--tfds_dir={tmp_path}/tfds",
      "--resolution=32", "--num_images=2", "--snrs=0,10", "--train_steps=1",
      "--codecs=jpeg2000", "--lpips=", "--realisations=1",
      "--deepjscc_flag=--config.model.arch=small",
      "--deepjscc_flag=--config.model.num_filters=8",
      "--deepjscc_flag=--config.batch_size=8",
      "--invert_flag=--config.ilo.steps=(2,)",
      "--invert_flag=--config.ilo.lambda_lpips=0.0",
      "--invert_flag=--config.demo_generator.resolution=32",
      "--invert_flag=--config.demo_generator.channel_base=256",
      "--invert_flag=--config.demo_generator.channel_max=16",
      "--invert_flag=--config.demo_generator.z_dim=16",
      "--invert_flag=--config.demo_generator.w_dim=16",
      "--evaluate_flag=--batch_size=8"]
  dry = _reproduce(*flags, "--dry_run")
  assert dry.returncode == 0, dry.stderr[-3000:]
  lines = dry.stdout.strip().splitlines()
  assert len(lines) == 2 * 4 + 1  # deepjscc, generative, inverse, jpeg2000
  generative = [shlex.split(l) for l in lines if "generative_ffhq" in l]
  assert [c[3] for c in generative] == [
      "--config=generative_ffhq:rho=1/192,demo",
      "--config=generative_ffhq:rho=1/48,demo"]
  # GenerativeJSCC training is tested in test_generative_train.py; here its
  # compilation would dominate the test's time.
  flags.append("--schemes=deepjscc,inverse,separation")
  # Compile fast: the test checks the commands and their outputs, not numbers.
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  done = _reproduce(*flags, env=env)
  assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
  rows = json.load(open(out / "figures" / "summary.json"))
  assert {(r["label"], r["bcr"]) for r in rows} == {
      (label, rho) for label in ("DeepJSCC", "InverseJSCC",
                                 "JPEG 2000 (capacity)")
      for rho in (1 / 192, 1 / 48)}
  assert {r["n"] for r in rows} == {2}
  assert {r["snr_db"] for r in rows} == {0.0, 10.0}
  for name in ("psnr_vs_snr_by_rho.png", "psnr_vs_rho.png",
               "evaluation.json"):
    assert (out / "figures" / name).exists(), name
  recorded = json.load(open(out / "reproduce.json"))
  assert sorted(recorded) == sorted(
      [f"{k}_{r}" for k in ("deepjscc", "inverse", "separation_jpeg2000")
       for r in ("1_192", "1_48")] + ["evaluate"])
  # A rerun finds everything done and runs nothing.
  again = _reproduce(*flags)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count("done, skipped") == 7
  dry = _reproduce(*flags, "--dry_run")
  assert all(l.startswith("# done: ") for l in dry.stdout.strip().splitlines())
