"""Evaluation a researcher can trust: intervals over images, one test set and
channel for every scheme, runs of every kind on one figure, the rho axis."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from experiments.configs import inverse_ffhq
from gjscc_jax import channel as channel_lib
from gjscc_jax import separation
from gjscc_jax import sharding
from gjscc_jax.evaluation import comparison
from gjscc_jax import results as report
from gjscc_jax.evaluation import runner
from gjscc_jax.evaluation import sweep as sweep_lib
from gjscc_jax.inverse import batch_run
from gjscc_jax.schemes import base
from tests._helpers import untrained_deepjscc_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RES, NUM_IMAGES, SNRS = 16, 4, (0.0, 20.0)


# --- Confidence intervals over images ----------------------------------------


def test_interval_is_student_t_over_per_image_means():
  rng = np.random.default_rng(0)
  num_images, realisations = 12, 5
  # A strong per-image effect and a weak per-realisation one, as PSNRs are.
  values = (25 + 3 * rng.standard_normal((num_images, 1))
            + 0.3 * rng.standard_normal((num_images, realisations)))
  rows = report.summarize({0.0: {"psnr": values}}, scheme="s", label="S",
                          bcr=1 / 192)
  (row,) = rows
  per_image = values.mean(axis=1)
  low, high = stats.t.interval(0.95, num_images - 1, loc=per_image.mean(),
                               scale=stats.sem(per_image))
  assert row["n"] == num_images
  assert row["mean"] == pytest.approx(per_image.mean(), rel=1e-12)
  assert row["ci95"] == pytest.approx((high - low) / 2, rel=1e-9)
  # Pooling the 60 values as independent samples would claim an interval
  # about sqrt(R) times too narrow.
  pooled = values.ravel()
  naive = stats.t.ppf(0.975, pooled.size - 1) * stats.sem(pooled)
  assert row["ci95"] > 1.8 * naive
  # One value per image: the same as a plain Student t interval.
  mean, ci = report.mean_ci95(per_image)
  assert ci == pytest.approx((high - low) / 2, rel=1e-9)
  assert np.isnan(report.mean_ci95([1.0])[1])


def _noisy_scheme(sigma):
  """A scheme that sends the image through x + sigma * n, n ~ N(0, 1)."""

  def reconstruct(params, images, snr_db, key):
    del params, snr_db
    return images + sigma * jax.random.normal(key, images.shape)

  return base.Scheme("noisy", None, None, reconstruct, None,
                     bandwidth_ratio=1.0)


def _batches(images, batch_size):
  """Global batches of `images` as `eval_batches` yields them, padded."""
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    pad = batch_size - len(chunk)
    yield dict(
        image=np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:],
                                              np.uint8)]),
        index=np.concatenate([np.arange(start, start + len(chunk)),
                              -np.ones(pad, int)]).astype(np.int32),
        mask=np.arange(batch_size) < len(chunk))


def test_sweep_keeps_each_images_realisations_together():
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (11, 16, 16, 3), dtype=np.uint8)
  result = sweep_lib.sweep(_noisy_scheme(0.1), {}, _batches(images, 8),
                           [0.0], key=jax.random.PRNGKey(0), realisations=3,
                           mesh=sharding.make_mesh(), num_examples=2)
  psnr = result.values[0.0]["psnr"]
  assert psnr.shape == (11, 3)
  np.testing.assert_array_equal(result.indices, np.arange(11))
  # Realisations differ (fresh noise), and each row is its own image's:
  # the PSNR of x + 0.1 n is about 10 log10(4 / 0.01) = 26 dB before
  # clipping, so it is image-dependent only through clipping at the range.
  assert np.all(np.std(psnr, axis=1) > 0)
  direct = []
  for i, image in enumerate(images):
    x = (image.astype(np.float64) / 127.5 - 1.0)
    row = []
    for r in range(3):
      b, j = divmod(i, 8)
      key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(
          jax.random.PRNGKey(0), b), 0), r)
      noise = np.asarray(jax.random.normal(key, (8, 16, 16, 3)))[j]
      y = np.clip(x + 0.1 * noise, -1, 1)
      row.append(10 * np.log10(4 / np.mean((y - x) ** 2)))
    direct.append(row)
  np.testing.assert_allclose(psnr, direct, rtol=1e-4)
  (row,) = [r for r in report.summarize(result, scheme="noisy", label="N",
                                        bcr=1.0) if r["metric"] == "psnr"]
  assert row["n"] == 11


def test_per_image_file_pairs_images_across_schemes(tmp_path):
  # Two schemes swept with the same key over the same images: the file
  # holds each image's realisation mean, so differences pair image by image.
  rng = np.random.default_rng(2)
  images = rng.integers(0, 256, (11, 16, 16, 3), dtype=np.uint8)
  results = {}
  for sigma in (0.05, 0.2):
    result = sweep_lib.sweep(_noisy_scheme(sigma), {}, _batches(images, 8),
                             [0.0, 10.0], key=jax.random.PRNGKey(0),
                             realisations=2, mesh=sharding.make_mesh(),
                             num_examples=1)
    out = tmp_path / str(sigma)
    os.makedirs(out)
    arrays = np.load(runner.write_per_image(result, str(out)))
    np.testing.assert_array_equal(arrays["snrs_db"], [0.0, 10.0])
    np.testing.assert_array_equal(arrays["indices"], np.arange(11))
    np.testing.assert_array_equal(arrays["originals"], images[:1])
    np.testing.assert_array_equal(arrays["examples"][1],
                                  result.examples[10.0])
    for k, snr in enumerate((0.0, 10.0)):
      np.testing.assert_allclose(arrays["psnr"][k],
                                 result.values[snr]["psnr"].mean(axis=1))
    results[sigma] = arrays
  # Noise 4x larger costs 20 log10(4) = 12 dB on every image (same draws;
  # clipping only shrinks the error of the noisier one a little).
  delta = results[0.05]["psnr"] - results[0.2]["psnr"]
  assert np.all(delta > 10.5) and np.all(delta < 12.1), delta


# --- Comparisons: training runs, InverseJSCC and separation outputs ----------


def _inverse_config(tfds_dir, deepjscc, output_dir):
  config = inverse_ffhq.get_config("demo")
  overrides = {
      "data.resolution": RES, "num_images": NUM_IMAGES, "snrs_db": SNRS,
      "batch_size": 8, "ilo.steps": (2,), "ilo.lambda_lpips": 0.0,
      "metrics.lpips_nets": (), "demo_generator.resolution": RES,
      "demo_generator.z_dim": 16, "demo_generator.w_dim": 16,
      "demo_generator.channel_base": 256, "demo_generator.channel_max": 16,
      "data.tfds_dir": tfds_dir, "deepjscc_checkpoint": deepjscc,
      "output_dir": output_dir}
  for key, value in overrides.items():
    *path, name = key.split(".")
    node = config
    for part in path:
      node = node[part]
    node[name] = value
  return config


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
  """Two untrained DeepJSCC runs (rho 1/12 and 1/6) and an InverseJSCC
  output of the first, on 16x16 sample images."""
  root = tmp_path_factory.mktemp("evaluate")
  tfds_dir = str(root / "tfds")
  first, second = str(root / "deepjscc_12"), str(root / "deepjscc_6")
  untrained_deepjscc_run(first, tfds_dir, RES)
  untrained_deepjscc_run(second, tfds_dir, RES, latent_channels=16)
  inverse = str(root / "inverse")
  batch_run.run(_inverse_config(tfds_dir, first, inverse))
  return root, tfds_dir, first, second, inverse


def test_evaluate_puts_deepjscc_separation_and_inversejscc_on_one_figure(
    setting, tmp_path):
  _, _, first, second, inverse = setting
  out = tmp_path / "out"
  command = [
      sys.executable, "-m", "experiments.evaluate", f"--output_dir={out}",
      f"--run=DeepJSCC={first}", f"--run=DeepJSCC={second}",
      f"--run=InverseJSCC={inverse}",
      "--run=JPEG 2000 (capacity)=separation:jpeg2000:headers=shared",
      f"--data.num_examples={NUM_IMAGES}", "--snrs=0,20", "--realisations=2",
      "--lpips=", "--batch_size=8", "--rho_snrs=20"]
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                        timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  rows = json.load(open(out / "summary.json"))
  psnr = {(r["label"], report.format_ratio(r["bcr"]), r["snr_db"]): r
          for r in rows if r["metric"] == "psnr"}
  assert set(psnr) == {(label, rho, snr)
                       for label in ("DeepJSCC", "JPEG 2000 (capacity)")
                       for rho in ("1/12", "1/6") for snr in SNRS} | {
                           ("InverseJSCC", "1/12", snr) for snr in SNRS}
  # Every scheme on the same images: n is the number of test images.
  assert {r["n"] for r in rows} == {NUM_IMAGES}
  # The InverseJSCC rows are read from its summary, not recomputed.
  theirs = {(r["snr_db"], r["metric"]): r
            for r in json.load(open(os.path.join(inverse, "summary.json")))
            if r["scheme"] == "inversejscc"}
  for row in rows:
    if row["label"] == "InverseJSCC":
      mine = theirs[(row["snr_db"], row["metric"])]
      assert (row["mean"], row["ci95"]) == (mine["mean"], mine["ci95"])
  assert {r["channel"] for r in rows} == {"awgn"}
  assert {r["metric"] for r in rows if r["scheme"] == "separation"} == {
      "psnr", "ssim", "loss_rate", "bits_used"}
  for name in ("psnr_vs_snr.png", "psnr_vs_snr_by_rho.png",
               "psnr_vs_rho.png", "summary.csv", "evaluation.json"):
    assert os.path.getsize(out / name) > 0, name
  record = json.load(open(out / "evaluation.json"))
  assert record["test_set"]["num_images"] == NUM_IMAGES
  assert [r["kind"] for r in record["runs"]] == [
      "training", "training", "inversejscc", "separation"]
  assert record["runs"][3]["bcr"] == ["1/12", "1/6"]


def _settings(**kwargs):
  return comparison.Settings(**{**dict(
      snrs_db=SNRS, realisations=2, batch_size=8, lpips_nets=(),
      num_examples=2), **kwargs})


def test_channel_mismatch_is_tested_and_recorded(setting, tmp_path):
  _, _, first, _, inverse = setting
  runs = [comparison.parse_run(f"DeepJSCC={first}")]
  rows = {}
  for kind in ("awgn", "rayleigh"):
    test_set, channel = comparison.reference(
        runs, channel_overrides={"kind": kind}, num_images=NUM_IMAGES)
    rows[kind], record = comparison.collect(
        runs, test_set, channel, _settings(), str(tmp_path / kind))
  assert {r["channel"] for r in rows["rayleigh"]} == {"rayleigh-slow-mmse"}
  assert {r["trained_channel"] for r in rows["rayleigh"]} == {"awgn"}
  assert record["channel"]["kind"] == "rayleigh"
  by = lambda rs: {(r["snr_db"], r["metric"]): r["mean"] for r in rs}
  assert by(rows["awgn"]) != by(rows["rayleigh"])
  # Results read from a directory cannot be re-tested on another channel.
  runs = [comparison.parse_run(f"DeepJSCC={first}"),
          comparison.parse_run(f"InverseJSCC={inverse}")]
  test_set, channel = comparison.reference(
      runs, channel_overrides={"kind": "rayleigh"}, num_images=NUM_IMAGES)
  with pytest.raises(ValueError, match="channel: 'awgn' -> 'rayleigh"):
    comparison.collect(runs, test_set, channel, _settings(),
                       str(tmp_path / "refused"))
  rows, record = comparison.collect(runs, test_set, channel, _settings(),
                                    str(tmp_path / "allowed"),
                                    allow_mismatch=True)
  assert {r["channel"] for r in rows if r["label"] == "InverseJSCC"} == {
      "awgn"}
  assert record["runs"][1]["mismatch"]


def test_every_run_uses_the_shared_test_set(setting, tmp_path):
  _, tfds_dir, first, second, inverse = setting
  # A separation output on other images is refused; on the same, read.
  data = comparison.TestSet(comparison._data_config(
      {"name": "sample", "resolution": RES, "tfds_dir": tfds_dir})).data
  for count, name in ((NUM_IMAGES + 1, "other"), (NUM_IMAGES, "same")):
    result = separation.evaluate("jpeg", data, "test", count, "1/12", SNRS,
                                 lpips_nets=())
    separation.write_outputs(result, str(tmp_path / name),
                             separation.run_settings(
                                 "jpeg", data, "test", count, "1/12", SNRS,
                                 lpips_nets=()))
  runs = [comparison.parse_run(f"DeepJSCC={second}"),
          comparison.parse_run(f"JPEG={tmp_path / 'other'}")]
  assert runs[1].kind == "separation_output"
  test_set, channel = comparison.reference(runs, num_images=NUM_IMAGES)
  with pytest.raises(ValueError, match="num_images: 5 -> 4"):
    comparison.collect(runs, test_set, channel, _settings(),
                       str(tmp_path / "a"))
  runs[1] = comparison.parse_run(f"JPEG={tmp_path / 'same'}")
  rows, _ = comparison.collect(runs, test_set, channel, _settings(),
                               str(tmp_path / "b"))
  assert {r["n"] for r in rows} == {NUM_IMAGES}
  # The first run's test set wins unless overridden: the InverseJSCC output
  # (4 images) sets it for the DeepJSCC run evaluated after it.
  runs = [comparison.parse_run(f"InverseJSCC={inverse}"),
          comparison.parse_run(f"DeepJSCC input={inverse}:deepjscc"),
          comparison.parse_run(f"DeepJSCC={first}")]
  test_set, _ = comparison.reference(runs)
  assert test_set.identity()["num_images"] == NUM_IMAGES
  assert test_set.data.resolution == RES
  with pytest.raises(ValueError, match="Two runs are labelled"):
    comparison.collect([runs[2], comparison.parse_run(f"DeepJSCC={first}")],
                       test_set, channel_lib.Channel(), _settings(),
                       str(tmp_path / "c"))


def _same_run(a, b):
  keep = lambda run: {k: v for k, v in vars(run).items() if k != "source"}
  assert repr(keep(a)) == repr(keep(b))


def test_run_kinds_are_read_from_run_json_and_old_directories_still_load(
    setting, tmp_path, monkeypatch):
  """Every kind of output directory writes `run.json`; a directory without
  it (written before it existed) is read as before; a new kind is one
  entry of `comparison.READERS`."""
  import shutil
  from gjscc_jax import run_record
  root, tfds_dir, first, _, inverse = setting
  # InverseJSCC: batch_run wrote run.json; a copy without it reads the same.
  written = run_record.read(inverse)
  assert (written["kind"], written["version"]) == ("inversejscc", 1)
  assert written["produced_by"]["module"] == "gjscc_jax.inverse.outputs"
  old = str(tmp_path / "inverse_old")
  shutil.copytree(inverse, old)
  os.remove(os.path.join(old, run_record.RUN_FILE))
  assert run_record.kind_of(old)[0] == "inversejscc"
  _same_run(comparison.parse_run(f"I={inverse}:deepjscc"),
            comparison.parse_run(f"I={old}:deepjscc"))
  # Training: the helper's directory predates run.json (config.json only).
  assert run_record.read(first) is None
  legacy = comparison.parse_run(f"D={first}")
  new = str(tmp_path / "training_new")
  shutil.copytree(first, new)
  run_record.write(new, run_record.TRAINING, "gjscc_jax.train.loop")
  _same_run(legacy, comparison.parse_run(f"D={new}"))
  assert legacy.kind == "training"
  # Separation: write_outputs writes run.json.
  data = comparison._data_config(dict(name="sample", resolution=RES,
                                      tfds_dir=tfds_dir))
  result = separation.evaluate("jpeg", data, "test", 2, "1/6", SNRS,
                               lpips_nets=(), num_examples=0)
  sep = str(tmp_path / "separation")
  separation.write_outputs(result, sep, separation.run_settings(
      "jpeg", data, "test", 2, "1/6", SNRS, lpips_nets=()))
  assert (run_record.read(sep)["kind"], run_record.read(sep)["link"]) == (
      "separation", "capacity")
  read = comparison.parse_run(f"S={sep}")
  os.remove(os.path.join(sep, run_record.RUN_FILE))
  _same_run(read, comparison.parse_run(f"S={sep}"))
  assert read.kind == "separation_output" and read.test_set.num_images == 2
  # A new kind: its producer writes run.json, its reader is one entry.
  toy = str(tmp_path / "toy")
  run_record.write(toy, "toy", __name__, link="ldpc")
  with pytest.raises(ValueError, match="'toy' directory.*training"):
    comparison.parse_run(f"T={toy}")
  monkeypatch.setitem(comparison.READERS, "toy", lambda label, source, *_: (
      comparison.Run(label, "toy", source, run_record.read(source))))
  assert comparison.parse_run(f"T={toy}").config["link"] == "ldpc"


def test_run_specs_that_name_nothing_fail_with_the_fix(tmp_path):
  with pytest.raises(ValueError, match="LABEL=SOURCE"):
    comparison.parse_run("runs/deepjscc")
  with pytest.raises(ValueError, match="unknown codec 'bpg'"):
    comparison.parse_run("BPG=separation:bpg")
  with pytest.raises(ValueError, match="KEY=VALUE"):
    comparison.parse_run("HEIF=separation:heif:quality=3")
  with pytest.raises(FileNotFoundError, match="neither a training run"):
    comparison.parse_run(f"X={tmp_path}")
  spec = comparison.parse_run("H=separation:heif:bcr=1/192,bcr=0.02083333333")
  assert spec.config["bcr"] == ["1/192", "1/48"]
  with pytest.raises(ValueError, match="no bandwidth ratio"):
    comparison.collect([comparison.parse_run("H=separation:heif")],
                       comparison.TestSet(comparison._data_config({})),
                       channel_lib.Channel(), _settings(), str(tmp_path))


def test_rho_figures_have_a_panel_per_ratio_and_per_snr(tmp_path):
  rows = [dict(scheme="s", label=label, bcr=rho, snr_db=snr, metric="psnr",
               mean=20 + 100 * rho + snr / 10, ci95=0.5, n=4)
          for label in ("A", "B") for rho in (1 / 192, 1 / 48)
          for snr in (0.0, 10.0)]
  (by_rho,) = report.plot_by_rho(rows, str(tmp_path))
  (vs_rho,) = report.plot_vs_rho(rows, str(tmp_path), [0.0, 10.0, 99.0])
  assert os.path.basename(by_rho) == "psnr_vs_snr_by_rho.png"
  assert os.path.basename(vs_rho) == "psnr_vs_rho.png"
  from PIL import Image
  # Two panels side by side: wider than tall.
  for path in (by_rho, vs_rho):
    width, height = Image.open(path).size
    assert width > 1.6 * height, path
  one_rho = [r for r in rows if r["bcr"] == 1 / 48]
  assert report.plot_vs_rho(one_rho, str(tmp_path / "one"), [0.0]) == []
  assert report.format_ratio(1 / 768) == "1/768"
  table = report.format_table(rows)
  assert "A, ρ=1/192" in table and "B, ρ=1/48" in table


def test_generator_test_sets_differ_by_their_generator():
  """Two 'generator' test sets are the same images only with the same G0
  and sampling; the number of training images does not matter."""
  from gjscc_jax import data  # pylint: disable=import-outside-toplevel

  def identity(**generator):
    config = data.default_data_config()
    config.name = "generator"
    for key, value in generator.items():
      *path, leaf = key.split(".")
      node = config.generator
      for name in path:
        node = node[name]
      node[leaf] = value
    return comparison.TestSet(config, "test", num_images=4).identity()

  assert identity() == identity(train_size=7)
  for change in ({"random.seed": 1}, {"sample_seed": 3},
                 {"truncation_psi": 0.7}, {"noise_mode": "const"}):
    assert identity(**change) != identity(), change


def test_runs_trained_at_different_resolutions_need_the_resolution(
    setting, tmp_path):
  # `--run=A=RUN64 --run=B=RUN32` swept B at A's resolution, silently, and
  # the reverse order swept A at B's: results depended on the flags' order.
  _, tfds_dir, first, _, _ = setting
  other = str(tmp_path / "deepjscc_32px")
  untrained_deepjscc_run(other, tfds_dir, 2 * RES)
  for order in ((first, other), (other, first)):
    runs = [comparison.parse_run(f"{label}={path}")
            for label, path in zip("AB", order)]
    with pytest.raises(ValueError) as error:
      comparison.reference(runs)
    message = str(error.value)
    assert f"A ({order[0]})" in message and f"B ({order[1]})" in message
    assert f"{RES}px" in message and f"{2 * RES}px" in message
    assert "--data.resolution=N" in message
    test_set, _ = comparison.reference(
        runs, data_overrides={"resolution": RES})
    assert test_set.data.resolution == RES
