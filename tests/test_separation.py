"""The separation baseline: codecs over an ideal channel code (CPU, offline).

Proofs of the baseline's contract: the bit budget is never exceeded; the
payload counts what a receiver needs (and decodes from it where the library
can); quality and metrics rise with the SNR on natural images; at very low
SNR every image is lost and the metrics are the fallback's; the slow-Rayleigh
outage rate and the ergodic capacity match their closed forms.
"""

import csv
import fractions
import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from scipy import integrate
import skimage.data

from gjscc_jax import metrics as metrics_lib
from gjscc_jax import pixels
from gjscc_jax import preemption
from gjscc_jax import separation
from gjscc_jax import results as report
from gjscc_jax.separation import capacity
from gjscc_jax.separation import codecs
from gjscc_jax.separation import isobmff
from gjscc_jax.separation import search as search_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def _photos(height, width, count=4):
  """Natural-image crops from scikit-image's photos, uint8 (H, W, 3)."""
  out = []
  for name in _PHOTOS[:count]:
    photo = getattr(skimage.data, name)()
    top, left = photo.shape[0] // 3, photo.shape[1] // 3
    out.append(np.ascontiguousarray(photo[top:top + height,
                                          left:left + width]))
  return out


# --- Codecs and what they count ----------------------------------------------


@pytest.mark.parametrize("name", codecs.CODECS)
def test_payload_is_what_the_receiver_needs(name):
  codec = separation.get_codec(name)
  image = _photos(48, 40, 1)[0]
  low, high = codec.encode(image, 0), codec.encode(image, codec.num_qualities - 1)
  assert codec.encode(image, 5) == codec.encode(image, 5)  # deterministic
  for bitstream in (low, high):
    assert bitstream.bits == 8 * len(bitstream.payload) <= 8 * len(bitstream.file)
    decoded = codec.decode(bitstream, image.shape)
    assert decoded.dtype == np.uint8 and decoded.shape == image.shape
  assert high.bits > low.bits
  if name == "jpeg":  # decoded from the stripped stream: same pixels
    import imagecodecs
    assert low.payload[:2] == b"\xff\xd8" and b"JFIF" not in low.payload
    np.testing.assert_array_equal(codec.decode(low, image.shape),
                                  imagecodecs.jpeg8_decode(low.file))
  if name == "jpeg2000":
    import imagecodecs
    assert b"OpenJPEG" in low.file and b"OpenJPEG" not in low.payload
    np.testing.assert_array_equal(codec.decode(low, image.shape),
                                  imagecodecs.jpeg2k_decode(low.file))
  if name == "webp":
    assert low.payload == low.file[20:]
  if name == "heif":
    starts = low.payload.split(b"\0\0\0\1")[1:]
    assert [(nal[0] >> 1) & 63 for nal in starts][:3] == [32, 33, 34]
  if name in ("heif", "avif"):
    # The container is the same for every image and quality of one size:
    # nothing in it is image information a receiver could not rebuild.
    other = _photos(48, 40, 2)[1]
    overheads = {len(b.file) - len(b.payload) for b in
                 (low, high, codec.encode(other, 10), codec.encode(other, 60))}
    assert len(overheads) == 1 and 200 < overheads.pop() < 400


@pytest.mark.parametrize("name", codecs.CODECS)
def test_shared_headers_are_the_same_for_every_image(name):
  stream = separation.get_codec(name)
  shared = separation.get_codec(name, headers="shared")
  images = _photos(48, 40, 3)
  known = set()
  for image in images:
    for index in (0, stream.num_qualities // 2):
      whole, cut = stream.encode(image, index), shared.encode(image, index)
      assert cut.shared + cut.payload == whole.payload
      assert cut.bits == whole.bits - 8 * len(cut.shared)
      known.add((index, cut.shared))
      # The receiver puts its copy back in front and decodes that.
      np.testing.assert_array_equal(shared.decode(cut, image.shape),
                                    stream.decode(whole, image.shape))
  assert len(known) == 2  # one shared header per quality, whatever the image
  sizes = {len(header) for _, header in known}
  if name == "webp":
    assert sizes == {0}
  else:  # parameter sets, J2K main header, JPEG tables, AV1 sequence header
    assert min(sizes) >= 13


def test_isobmff_reads_the_hevc_parameter_sets_and_slices():
  bitstream = separation.get_codec("heif").encode(_photos(32, 32, 1)[0], 40)
  nal_units, length_size = isobmff.hvcc_nal_units(
      isobmff.property_box(bitstream.file, "hvcC"))
  slices = isobmff.split_length_prefixed(
      isobmff.primary_item_data(bitstream.file), length_size)
  assert [(n[0] >> 1) & 63 for n in nal_units] == [32, 33, 34]
  assert all((n[0] >> 1) & 63 < 32 for n in slices)
  assert len(bitstream.payload) == sum(4 + len(n) for n in nal_units + slices)


def test_missing_codec_package_names_it(monkeypatch):
  real_import = codecs.importlib.import_module

  def fake_import(name):
    if name == "pillow_heif":
      raise ImportError("No module named 'pillow_heif'")
    return real_import(name)

  monkeypatch.setattr(codecs.importlib, "import_module", fake_import)
  with pytest.raises(ImportError, match="pip install pillow-heif"):
    separation.get_codec("heif")
  with pytest.raises(ValueError, match="jpeg2000"):
    separation.get_codec("bpg")


# --- The budget --------------------------------------------------------------


@pytest.mark.parametrize("name", codecs.CODECS)
def test_bit_budget_is_never_exceeded(name):
  codec = separation.get_codec(name)
  snrs = [-5.0, 0.0, 5.0, 10.0, 20.0]
  channels = [("awgn", "slow", None), ("rayleigh", "fast", None),
              ("rayleigh", "slow", 0.1)]
  for height, width in ((32, 32), (48, 40), (64, 64)):
    image = _photos(height, width, 1)[0]
    shared = search_lib.QualitySearch(
        separation.get_codec(name, headers="shared"), image)
    search = search_lib.QualitySearch(codec, image)
    exact = search_lib.QualitySearch(codec, image, exhaustive=True)
    for bcr in ("1/48", "1/6"):
      k = capacity.channel_uses(image.shape, bcr)
      assert k == height * width * 3 * float(fractions.Fraction(bcr))
      for channel, fading, outage in channels:
        plan = separation.plan_image(search, k, snrs, channel=channel,
                                     fading=fading, outage=outage)
        budgets = [capacity.bit_budget(k, s, channel, fading, outage)
                   for s in snrs]
        np.testing.assert_array_equal(plan.budget, budgets)
        assert np.all(plan.bits <= plan.budget)
        for q, bits in zip(plan.quality, plan.bits):
          if q == separation.FALLBACK:
            assert bits == 0
          else:  # a fresh encode of the chosen quality: the same payload
            assert codec.encode(image, int(q)).bits == bits
        cut = separation.plan_image(shared, k, snrs, channel=channel,
                                    fading=fading, outage=outage)
        assert np.all(cut.bits <= cut.budget)
        assert np.all(cut.quality >= plan.quality)
        best = exact.best_fitting_many(budgets)
        assert np.all(best >= plan.quality)
        for q, budget in zip(best, budgets):  # exhaustive: nothing better fits
          assert all(exact.bits(i) > budget
                     for i in range(q + 1, codec.num_qualities))


def test_search_encodes_each_quality_once_across_snrs():
  codec = separation.get_codec("jpeg")
  search = search_lib.QualitySearch(codec, _photos(32, 32, 1)[0])
  budgets = [capacity.bit_budget(256, s) for s in range(-5, 16)]
  chosen = search.best_fitting_many(budgets)
  assert np.all(np.diff(chosen) >= 0)
  # 21 budgets cost fewer encodes than 21 independent binary searches.
  assert search.encodes <= 2 * math.ceil(math.log2(codec.num_qualities + 1))


# --- Sweeps on natural images --------------------------------------------------


@pytest.mark.parametrize("name", ["heif", "jpeg2000"])
def test_quality_and_metrics_rise_with_snr(name):
  snrs = [-5, -2, 0, 2, 5, 10, 15, 20]
  result = separation.evaluate_images(name, _photos(64, 64), "1/12", snrs,
                                      lpips_nets=("alex",))
  quality = np.stack([result.quality[float(s)] for s in snrs])
  assert np.all(np.diff(quality, axis=0) >= 0)
  assert quality[0].max() < quality[-1].min()
  for metric, sign in (("psnr", 1), ("ssim", 1), ("lpips_alex", -1)):
    means = [np.mean(result.values[float(s)][metric]) for s in snrs]
    assert np.all(sign * np.diff(means) >= 0), (metric, means)
    assert sign * (means[-1] - means[0]) > 0, (metric, means)
  loss = [row["mean"] for row in result.rows if row["metric"] == "loss_rate"]
  assert np.all(np.diff(loss) <= 0) and loss[-1] == 0


def test_very_low_snr_loses_every_image_and_shows_the_fallback():
  images = _photos(32, 32, 3)
  mean = np.mean(images, axis=0).round().astype(np.uint8)
  for fallback, shown in (("gray", np.full((32, 32, 3), 128, np.uint8)),
                          (mean, mean)):
    result = separation.evaluate_images(
        "webp", images, "1/48", [-30.0], lpips_nets=("alex",),
        fallback=fallback)
    rows = {r["metric"]: r for r in result.rows}
    assert rows["loss_rate"]["mean"] == 1.0 and rows["bits_used"]["mean"] == 0
    x = pixels.from_uint8(np.stack([shown] * len(images)))
    y = pixels.from_uint8(np.stack(images))
    np.testing.assert_allclose(result.values[-30.0]["psnr"],
                               metrics_lib.psnr(x, y), rtol=1e-5)
    np.testing.assert_allclose(result.values[-30.0]["ssim"],
                               metrics_lib.ssim(x, y), rtol=1e-4, atol=1e-6)
    assert np.all(result.examples[-30.0] == shown)
    assert set(rows) == {"psnr", "ssim", "lpips_alex", "loss_rate",
                         "bits_used"}
    assert all(r["scheme"] == "separation" and r["label"] == "WebP (capacity)"
               and r["bcr"] == 1 / 48 for r in result.rows)


def test_no_examples_kept_gives_the_same_rows_and_no_grid(tmp_path):
  """`--num_examples=0` used to crash on `np.stack([])`."""
  images = _photos(32, 32, 2)
  kwargs = dict(lpips_nets=(), snrs_db=[0.0, 10.0])
  none = separation.evaluate_images("webp", images, "1/12", num_examples=0,
                                    **kwargs)
  two = separation.evaluate_images("webp", images, "1/12", num_examples=2,
                                   **kwargs)
  assert none.rows == two.rows
  assert none.originals.shape == (0, 32, 32, 3)
  assert all(e.shape == (0, 32, 32, 3) for e in none.examples.values())
  assert two.originals.shape == (2, 32, 32, 3)
  separation.write_outputs(none, str(tmp_path), {"bcr": "1/12"})
  assert (tmp_path / "summary.csv").exists()
  assert not (tmp_path / "grid_separation.png").exists()


def test_slow_fading_is_reproducible_and_beats_a_fixed_outage():
  images = _photos(32, 32, 2)
  kwargs = dict(channel="rayleigh", fading="slow", realisations=8,
                lpips_nets=(), seed=3)
  best = separation.evaluate_images("jpeg", images, "1/6", [5.0, 15.0],
                                    **kwargs)
  again = separation.evaluate_images("jpeg", images, "1/6", [5.0, 15.0],
                                     **kwargs)
  for snr in (5.0, 15.0):
    np.testing.assert_array_equal(best.values[snr]["psnr"],
                                  again.values[snr]["psnr"])
    assert best.lost[snr].shape == (2, 8)
  # The per-image rate choice maximises the expected PSNR, so it is at least
  # as good in expectation as any fixed outage probability of the grid.
  codec = separation.get_codec("jpeg")
  for image in images:
    search = search_lib.QualitySearch(codec, image)
    k = capacity.channel_uses(image.shape, "1/6")
    fallback_psnr = float(metrics_lib.psnr(
        pixels.from_uint8(np.full((1,) + image.shape, 128, np.uint8)),
        pixels.from_uint8(image[None]))[0])

    def expected(plan, s):
      q = plan.quality[s]
      if q == separation.FALLBACK:
        return fallback_psnr
      p = capacity.outage_probability(plan.bits[s], k, [5.0, 15.0][s])
      decoded = float(metrics_lib.psnr(pixels.from_uint8(search.decoded(q)[None]),
                                       pixels.from_uint8(image[None]))[0])
      return (1 - p) * decoded + p * fallback_psnr

    chosen = separation.plan_image(search, k, [5.0, 15.0], channel="rayleigh")
    for eps in capacity.OUTAGE_GRID[::3]:
      fixed = separation.plan_image(search, k, [5.0, 15.0], channel="rayleigh",
                                    outage=eps)
      for s in range(2):
        assert expected(chosen, s) >= expected(fixed, s) - 1e-3


# --- Channel maths -------------------------------------------------------------


@pytest.mark.parametrize("bits_per_use,snr_db", [(0.5, 0.0), (2.0, 5.0),
                                                 (1.0, -5.0), (4.0, 15.0)])
def test_slow_rayleigh_outage_matches_closed_form(bits_per_use, snr_db):
  k, trials = 64.0, 20000
  bits = bits_per_use * k
  gains = np.concatenate([capacity.fading_power(7, index, snr_db, 200)
                          for index in range(trials // 200)])
  lost = capacity.in_outage(bits, k, snr_db, gains)
  p = 1 - math.exp(-(2 ** (bits / k) - 1) / 10 ** (snr_db / 10))
  assert capacity.outage_probability(bits, k, snr_db) == pytest.approx(p)
  # Binomial bound: 4.5 standard deviations (the draws are seeded, fixed).
  assert abs(lost.mean() - p) <= 4.5 * math.sqrt(p * (1 - p) / trials) + 1e-9
  rate = capacity.rate_for_outage(k, snr_db, p)
  assert rate <= bits < rate + 1 + 1e-6


def test_fading_draws_are_seeded_per_image_snr_and_realisation():
  first = capacity.fading_power(1, 5, 3.0, 4)
  np.testing.assert_array_equal(first, capacity.fading_power(1, 5, 3.0, 4))
  np.testing.assert_array_equal(first, capacity.fading_power(1, 5, 3.0, 9)[:4])
  assert not np.allclose(first, capacity.fading_power(1, 6, 3.0, 4))
  assert not np.allclose(first, capacity.fading_power(1, 5, 4.0, 4))
  assert not np.allclose(first, capacity.fading_power(2, 5, 3.0, 4))


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 5.0, 15.0])
def test_ergodic_capacity_matches_monte_carlo(snr_db):
  rng = np.random.default_rng(0)
  h2 = np.abs(rng.standard_normal(400000) + 1j * rng.standard_normal(400000)
              ) ** 2 / 2
  samples = np.log2(1 + h2 * 10 ** (snr_db / 10))
  closed = capacity.ergodic_capacity(snr_db)
  assert abs(closed - samples.mean()) < 4.5 * samples.std() / math.sqrt(
      samples.size)
  assert closed < capacity.awgn_capacity(snr_db)  # Jensen
  snr = 10 ** (snr_db / 10)
  quadrature, _ = integrate.quad(lambda g: np.exp(-g) * np.log2(1 + g * snr),
                                 0, np.inf)
  assert closed == pytest.approx(quadrature, rel=1e-7)
  assert capacity.ergodic_capacity(-40.0) == pytest.approx(
      1e-4 / math.log(2), rel=1e-3)


def test_awgn_budget():
  assert capacity.bit_budget(64, 0.0) == 64
  assert capacity.bit_budget(64.5, 10 * math.log10(3)) == 129
  with pytest.raises(ValueError, match="outage"):
    capacity.bit_budget(64, 0.0, "rayleigh", "slow")


# --- The entry point ------------------------------------------------------------


def test_run_settings_hold_the_whole_data_config_as_json():
  """run_config.json records nested data fields (the generator dataset's)."""
  from gjscc_jax import data as data_lib
  from gjscc_jax.evaluation import comparison
  config = data_lib.default_data_config()
  config.name, config.resolution = "generator", 32
  config.generator.random.seed = 7
  settings = json.loads(json.dumps(separation.run_settings(
      "jpeg", config, "test", 3, "1/12", [0.0, 5.0], lpips_nets=())))
  assert settings["data"]["generator"]["random"]["seed"] == 7
  assert "read_threads" not in settings["data"]
  # A comparison rebuilds the same test images from it.
  rebuilt = comparison._data_config(settings["data"])
  assert rebuilt.generator.to_dict() == config.generator.to_dict()
  assert comparison.TestSet(rebuilt, "test", 3).identity() == (
      comparison.TestSet(config, "test", 3).identity())


def test_entry_point_writes_the_summary(tmp_path):
  out = tmp_path / "out"
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get(
      "PYTHONPATH", ""))
  command = [sys.executable, "-m", "experiments.separation", "--codec=jpeg2000",
             "--data=sample", "--resolution=32", f"--tfds_dir={tmp_path}",
             "--num_images=3", "--bcr=1/12", "--snrs=-5,10",
             "--channel=rayleigh", "--realisations=3", "--lpips=",
             f"--output_dir={out}"]
  done = subprocess.run(command, cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  with open(out / "summary.csv") as f:
    rows = list(csv.DictReader(f))
  assert tuple(rows[0]) == report.FIELDS
  assert {r["metric"] for r in rows} == {"psnr", "ssim", "loss_rate",
                                         "bits_used"}
  assert {r["label"] for r in rows} == {"JPEG 2000 (outage, best rate)"}
  # Three images, their three fading draws averaged per image first.
  assert {r["n"] for r in rows if r["metric"] == "psnr"} == {"3"}
  for name in ("grid_separation.png", "psnr_vs_snr.png", "per_image.npz",
               "summary.json"):
    assert (out / name).exists()
  per_image = np.load(out / "per_image.npz")
  assert per_image["lost"].shape == (2, 3, 3)
  assert np.all(per_image["bits"] <= per_image["budget"])


def test_a_stop_signal_abandons_the_search_with_one_line_and_status_75():
  # experiments.separation runs its codec search under this guard: SIGTERM
  # used to end it with 143 and no word.
  def stop_after_first_image(_):
    os.kill(os.getpid(), signal.SIGTERM)

  before = signal.getsignal(signal.SIGTERM)
  with pytest.raises(preemption.Preempted) as stop:
    with preemption.abandon_on_signal(
        "the separation baseline's codec search",
        "nothing was written to OUT; rerun the same command."):
      separation.evaluate_images("webp", _photos(16, 16, 2), "1/12", [0.0],
                                 lpips_nets=(), progress=stop_after_first_image)
  assert stop.value.code == 75
  assert str(stop.value) == (
      "Stopped by SIGTERM during the separation baseline's codec search: "
      "nothing was written to OUT; rerun the same command.")
  # The handlers are restored afterwards.
  assert signal.getsignal(signal.SIGTERM) == before
