"""The codec + 5G LDPC + QAM link end to end on the embedded sample images.

PSNR rises with the SNR, every image is lost below the cliff, and no image
is received at a rate above what the channel can carry (AWGN capacity, or
the realised capacity of its slow-fading draw); the equalised symbols carry
the per-symbol effective SNR the demapper is told.
"""

import math

import numpy as np
import pytest

from gjscc_jax import data as data_lib
from gjscc_jax import digital
from gjscc_jax import separation
from gjscc_jax.digital import link
from gjscc_jax.evaluation import comparison
from gjscc_jax.separation import capacity


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
  config = data_lib.default_data_config()
  config.name = "sample"
  config.resolution = 64
  config.tfds_dir = str(tmp_path_factory.mktemp("tfds"))

  def images(split, count):
    out = []
    for batch in data_lib.eval_batches(config, split, count, count):
      out += [(int(i), np.asarray(x)) for x, i, keep in zip(
          batch["image"], batch["index"], batch["mask"]) if keep]
    return out

  return config, images("test", 3), images("train", 2)


def test_equalised_symbols_have_the_effective_noise_variance():
  rng = np.random.default_rng(0)
  x = ((rng.integers(0, 2, (4, 4000)) * 2 - 1) * (1 + 1j) / math.sqrt(2)
       ).astype(np.complex64)
  keys = link.noise_keys(0, range(4), [3.0] * 4)
  out = {}
  for eq in ("zf", "mmse"):
    z, n0 = link.through_channel(keys, x, np.full(4, 3.0), "rayleigh",
                                 "fast", equalization=eq)
    out[eq] = np.asarray(z)
    normalised = np.abs(np.asarray(z) - x) ** 2 / np.asarray(n0)
    assert abs(normalised.mean() - 1.0) < 0.05  # E|n'|^2 / (s^2/|h|^2) = 1
  np.testing.assert_allclose(out["zf"], out["mmse"], rtol=1e-3, atol=1e-3)


def test_link_on_the_sample_psnr_rises_loses_below_the_cliff_never_beats_capacity(
    sample):
  config, test, held = sample
  del config
  snrs = [-5.0, 5.0, 15.0]
  result = digital.evaluate_images(
      "webp", [im for _, im in test], "1/12", snrs,
      indices=[i for i, _ in test], held_out=[im for _, im in held],
      held_out_indices=[i for i, _ in held], mcs=("1:9", "1:15"),
      lpips_nets=())
  env = {r["snr_db"]: r["mean"] for r in result.envelope.rows
         if r["metric"] == "psnr"}
  loss = {r["snr_db"]: r["mean"] for r in result.envelope.rows
          if r["metric"] == "loss_rate"}
  assert env[-5.0] <= env[5.0] <= env[15.0] and env[15.0] > env[-5.0] + 3
  assert loss[-5.0] == 1.0 and loss[15.0] == 0.0
  k = result.envelope.k
  for res in result.per_mcs.values():
    for snr in snrs:
      received = ~res.lost[snr][:, 0]
      budget = res.budget[snr][received]
      assert np.all(budget <= k * math.log2(1 + 10 ** (snr / 10)))
  # The envelope's MCS was chosen per SNR on the held-out images.
  assert set(result.chosen) == set(snrs) and result.selection


def test_slow_fading_never_decodes_above_the_realised_capacity(sample):
  _, test, _ = sample
  snrs = [5.0, 15.0]
  result = digital.evaluate_images(
      "webp", [im for _, im in test], "1/12", snrs,
      indices=[i for i, _ in test], mcs=("1:15",), channel="rayleigh",
      fading="slow", realisations=3, lpips_nets=())
  res = result.per_mcs["1:15"]
  k = res.k
  for snr in snrs:
    for n, index in enumerate(res.indices):
      gains = capacity.fading_power(0, index, snr, 3)
      realised = k * np.log2(1 + gains * 10 ** (snr / 10))
      for r in range(3):
        if not res.lost[snr][n, r]:
          assert res.budget[snr][n] <= realised[r]
  assert res.lost[5.0].mean() >= res.lost[15.0].mean()
  assert 0 < res.lost[15.0].mean() < 1  # some fades lose it, most do not


def test_outputs_are_a_separation_run_for_evaluate(sample, tmp_path):
  config, test, _ = sample
  result = digital.evaluate_images(
      "webp", [im for _, im in test], "1/12", [10.0],
      indices=[i for i, _ in test], mcs=("1:15",), lpips_nets=())
  settings = separation.run_settings(
      "webp", config, "test", len(test), "1/12", [10.0], lpips_nets=())
  settings["link"] = dict(kind="ldpc", mcs=["1:15"])
  separation.write_outputs(result.envelope, str(tmp_path), settings)
  digital.write_outputs(result, str(tmp_path))
  run = comparison.parse_run(f"LDPC={tmp_path}")
  assert run.kind == "separation_output"
  assert (tmp_path / "mcs" / "summary.csv").exists()
  assert (tmp_path / "digital.json").exists()


def test_reproduce_plans_the_ldpc_baseline_as_a_separation_step():
  from experiments import matrix as matrix_lib  # pylint: disable=import-outside-toplevel
  steps = matrix_lib.plan(matrix_lib.Matrix(
      output_dir="results/demo", scale="demo",
      schemes=("deepjscc", "separation", "digital"), codecs=("heif",)))
  by_name = {s.name: s for s in steps}
  ldpc = by_name["ldpc_heif_1_192"].argv
  assert "--link=ldpc" in ldpc and "--codec=heif" in ldpc
  assert "--link=ldpc" not in by_name["separation_heif_1_192"].argv
  runs = [a for a in by_name["evaluate"].argv if a.startswith("--run=")]
  assert "--run=HEIF + 5G LDPC=results/demo/ldpc_heif_1_192" in runs
  default = matrix_lib.plan(matrix_lib.Matrix(output_dir="r", scale="demo"))
  assert not any(s.name.startswith("ldpc_") for s in default)
