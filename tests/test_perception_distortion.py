"""Perception-distortion: `reproduce --lambdas` plans and its curves."""

import os
import shlex
import subprocess
import sys

import numpy as np
import pytest

from experiments import matrix as matrix_lib
from gjscc_jax import results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAMBDAS = (0.0, 0.01, 0.1, 1.0)


def _flag(argv, name):
  values = [a.split("=", 1)[1] for a in argv if a.startswith(name + "=")]
  assert len(values) == 1, (name, argv)
  return values[0]


def test_dry_run_plans_one_training_per_scheme_lambda_and_rho(tmp_path):
  out = tmp_path / "pd"
  dry = subprocess.run(
      [sys.executable, "-m", "experiments.reproduce", "--scale=demo",
       f"--output_dir={out}", "--schemes=deepjscc,generative,inverse",
       "--lambdas=0,0.01,0.1,1", "--rhos=1/192,1/48", "--dry_run"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert dry.returncode == 0, dry.stderr[-3000:]
  lines = [shlex.split(l) for l in dry.stdout.strip().splitlines()]
  train = [l for l in lines if l[2] == "experiments.train"]
  assert len(train) == 2 * 4 * 2
  seen = set()
  for argv in train:
    config = _flag(argv, "--config")
    scheme = config.split("_ffhq:")[0]
    rho = config.split("rho=")[1].split(",")[0]
    lam = float(_flag(argv, "--config.loss.lambda_lpips"))
    # Its own run directory, named by scheme, rho and lambda.
    assert _flag(argv, "--output_dir") == str(
        out / f"{scheme}_{matrix_lib.rho_name(rho)}_lambda{lam:g}")
    seen.add((scheme, lam, rho))
  assert seen == {(s, l, r) for s in ("deepjscc", "generative")
                  for l in LAMBDAS for r in ("1/192", "1/48")}
  # InverseJSCC restores the first lambda's DeepJSCC run, once per rho.
  inverse = [l for l in lines if l[2] == "experiments.invert"]
  assert [_flag(l, "--config.deepjscc_checkpoint") for l in inverse] == [
      str(out / "deepjscc_1_192_lambda0"), str(out / "deepjscc_1_48_lambda0")]
  # The evaluation gets every run under its own label.
  evaluate = lines[-1]
  assert evaluate[2] == "experiments.evaluate"
  runs = [a for a in evaluate if a.startswith("--run=")]
  assert len(runs) == 2 * 4 * 2 + 2
  assert f"--run=GenerativeJSCC (λ 0.01)={out}/generative_1_48_lambda0.01" in (
      runs)


@pytest.mark.parametrize("lambdas,message", [
    ((0.0, -1.0), "distinct LPIPS weights >= 0"),
    ((0.1, 0.1), "distinct LPIPS weights >= 0"),
])
def test_bad_lambdas_name_the_fix(lambdas, message):
  with pytest.raises(ValueError, match=message):
    matrix_lib.plan(matrix_lib.Matrix(output_dir="o", scale="demo",
                                      lambdas=lambdas))
  with pytest.raises(ValueError, match="add deepjscc or generative"):
    matrix_lib.plan(matrix_lib.Matrix(output_dir="o", scale="demo",
                                      schemes=("separation",),
                                      lambdas=(0.0, 1.0)))


def _rows():
  """Two schemes x four lambdas x two SNRs, plus a scheme without lambda."""
  rng = np.random.default_rng(0)
  rows, expected = [], {}
  for scheme, label in (("deepjscc", "DeepJSCC"),
                        ("generative", "GenerativeJSCC")):
    for snr in (0.0, 10.0):
      # Shuffled lambdas: the curve must still run in increasing lambda.
      for lam in rng.permutation(LAMBDAS):
        psnr, lpips = rng.uniform(15, 30), rng.uniform(0.05, 0.6)
        expected.setdefault((label, snr), []).append((lam, psnr, lpips))
        for metric, mean in (("psnr", psnr), ("lpips_alex", lpips),
                             ("ssim", 0.5)):
          rows.append(dict(scheme=scheme, label=f"{label} (λ {lam:g})",
                           bcr=1 / 48, snr_db=snr, metric=metric, mean=mean,
                           ci95=0.1, n=16, lambda_lpips=float(lam)))
  for snr in (0.0, 10.0):
    for metric in ("psnr", "lpips_alex"):
      rows.append(dict(scheme="separation", label="JPEG2000 (capacity)",
                       bcr=1 / 48, snr_db=snr, metric=metric, mean=1.0,
                       ci95=0.0, n=16))
  return rows, expected


def test_plot_draws_a_curve_per_scheme_through_its_lambdas(tmp_path):
  rows, expected = _rows()
  fig, axes = results.perception_distortion_axes(rows, "lpips_alex")
  assert len(axes) == 2
  for ax, snr in zip(axes, (0.0, 10.0)):
    assert ax.get_title() == f"SNR = {snr:g} dB"
    curves = {c.get_label(): c.lines[0].get_xydata() for c in ax.containers}
    assert set(curves) == {"DeepJSCC", "GenerativeJSCC"}
    for label, xy in curves.items():
      want = sorted(expected[(label, snr)])
      np.testing.assert_allclose(xy, [(p, l) for _, p, l in want])
    assert sorted(t.get_text() for t in ax.texts) == sorted(
        f"λ={l:g}" for l in LAMBDAS for _ in range(2))
  assert results.perception_distortion_axes(rows, "dists") == (None, None)
  paths = results.plot_perception_distortion(rows, str(tmp_path))
  assert paths == [str(tmp_path / "lpips_alex_vs_psnr.png")]
  assert os.path.getsize(paths[0]) > 1000
  # One lambda per scheme is no curve.
  one = [r for r in rows if r.get("lambda_lpips") in (None, 0.0)]
  assert results.plot_perception_distortion(one, str(tmp_path / "x")) == []
