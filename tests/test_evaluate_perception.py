"""DISTS, FID and KID in evaluation sweeps: per-image DISTS rows, FID/KID
once per SNR over all images with bootstrap intervals, and the CLI's
messages (random FID Inception weights; the values themselves are proven
against the oracles in test_dists / test_fid_inception / test_fid_kid)."""

import jax
import numpy as np
import pytest

from gjscc_jax import sharding
from gjscc_jax.evaluation import perception as perception_lib
from gjscc_jax import results as report
from gjscc_jax.evaluation import sweep as sweep_lib
from gjscc_jax.losses import dists as dists_lib
from gjscc_jax.perception import distribution
from gjscc_jax.perception import inception as inception_lib
from gjscc_jax.perception import inception_weights
from gjscc_jax.schemes import base


def _noisy_scheme(sigma):
  def reconstruct(params, images, snr_db, key):
    del params
    scale = sigma * 10 ** (-snr_db[:, None, None, None] / 20)
    return images + scale * jax.random.normal(key, images.shape)
  return base.Scheme("noisy", None, None, reconstruct, None,
                     bandwidth_ratio=1.0)


def _batches(images, batch_size):
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    pad = batch_size - len(chunk)
    yield dict(
        image=np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:],
                                              np.uint8)]),
        index=np.concatenate([np.arange(start, start + len(chunk)),
                              -np.ones(pad, int)]).astype(np.int32),
        mask=np.arange(batch_size) < len(chunk))


@pytest.fixture(scope="module")
def random_inception_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("inception")
  rng = np.random.default_rng(0)
  flat = {}
  for name, shape in inception_weights.param_shapes().items():
    if name.endswith("kernel"):
      fan_in = np.prod(shape[:3])
      flat[name] = rng.normal(size=shape) * np.sqrt(2 / fan_in)
    else:
      flat[name] = np.ones(shape) if name.endswith(("scale", "var")) else (
          np.zeros(shape))
  inception_weights.save_inception_params(str(directory), flat)
  return str(directory)


def test_sweep_reports_dists_per_image_and_fid_kid_per_snr(
    random_inception_dir):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
  images[6] = images[1]  # In another batch: its features must match.
  perception = perception_lib.Perception(
      ("dists", "fid", "kid"), inception_weights=random_inception_dir,
      num_bootstrap=20)
  params = perception.load_params()
  result = sweep_lib.sweep(_noisy_scheme(0.3), {}, _batches(images, 4),
                           [0.0, 20.0], key=jax.random.PRNGKey(0),
                           realisations=2,
                           mesh=sharding.make_mesh(devices=jax.devices()[:1]),
                           num_examples=1, perception=perception,
                           perception_params=params)
  dists = result.values[0.0]["dists"]
  assert dists.shape == (8, 2) and np.all(dists > 0)
  # More noise, larger DISTS, on every image.
  assert np.all(dists.mean(1) > result.values[20.0]["dists"].mean(1))
  # Rows follow the images: image 6 repeats image 1 (another batch).
  feats = result.original_features
  assert feats.shape == (8, inception_lib.FEATURES)
  np.testing.assert_allclose(feats[6], feats[1], rtol=1e-5, atol=1e-6)
  assert np.abs(feats[2] - feats[1]).max() > 1e-3
  assert result.features[0.0].shape == (8, inception_lib.FEATURES)
  rows = perception.rows(result.features, result.original_features,
                         scheme="noisy", label="N", bcr=1.0)
  by = {(r["metric"], r["snr_db"]): r for r in rows}
  assert set(by) == {(m, s) for m in ("fid", "kid") for s in (0.0, 20.0)}
  for snr in (0.0, 20.0):
    fid = by[("fid", snr)]
    assert fid["mean"] == pytest.approx(distribution.fid(
        result.features[snr], result.original_features))
    assert fid["ci_low"] <= fid["ci_high"] and fid["n"] == 8
    assert fid["ci95"] == pytest.approx((fid["ci_high"] - fid["ci_low"]) / 2)
    assert "bootstrap" in fid["interval"]
    assert "kid_subset_std" in by[("kid", snr)]
  assert by[("fid", 0.0)]["mean"] > by[("fid", 20.0)]["mean"]
  summary = report.summarize(result, scheme="noisy", label="N", bcr=1.0)
  assert {r["metric"] for r in summary} >= {"psnr", "dists"}


def test_metrics_flag_and_missing_weights_say_the_fix(tmp_path):
  nets, names = perception_lib.parse_metrics(
      "psnr,ssim,lpips_vgg,dists,fid,kid".split(","))
  assert nets == ("vgg",) and names == ("dists", "fid", "kid")
  with pytest.raises(ValueError, match="choose from"):
    perception_lib.parse_metrics(["fld"])
  with pytest.raises(FileNotFoundError,
                     match="weights_convert inception .* --inception_weights"):
    perception_lib.Perception(("fid",))
  with pytest.raises(FileNotFoundError, match="download"):
    perception_lib.Perception(("kid",), inception_weights=str(tmp_path))
  assert perception_lib.Perception(("dists",)).distribution == ()
  assert dists_lib.CHANNELS[0] == 3


def test_reproduce_adds_perception_metrics_when_weights_are_given(
    random_inception_dir, tmp_path):
  import os  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  base_cmd = [sys.executable, "-m", "experiments.reproduce", "--scale=demo",
              f"--output_dir={tmp_path}", "--dry_run"]
  done = subprocess.run(base_cmd + [f"--inception_weights="
                                    f"{random_inception_dir}"],
                        cwd=repo, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  (evaluate,) = [l for l in done.stdout.splitlines()
                 if "experiments.evaluate" in l]
  assert ",dists,fid,kid" in evaluate
  assert f"--inception_weights={random_inception_dir}" in evaluate
  missing = subprocess.run(base_cmd + [f"--inception_weights={tmp_path}"],
                           cwd=repo, capture_output=True, text=True,
                           timeout=120)
  assert missing.returncode != 0
  assert "python -m weights_convert inception" in missing.stderr
