r"""Figures of docs/digital-baseline.md: PSNR vs SNR and BLER vs SNR.

  nice -n 10 python -m benchmarks.digital_baseline_figure \
      --ldpc=runs/ldpc_1_48 --capacity=runs/cap_1_48 \
      --deepjscc=benchmarks/results/reproduce_demo_2026-12-04/summary.csv \
      --output_dir=benchmarks/results/digital_baseline_2026-12-07

`--ldpc` and `--capacity` are `experiments.separation` output directories
(`--link=ldpc` and the ideal code) on the same images, codec and rho;
`--deepjscc` a summary file with DeepJSCC rows at that rho (optional).
Draws

* psnr_vs_snr.png: DeepJSCC, the codec at AWGN capacity, at the
  finite-blocklength normal approximation (`digital.fbl`, block error
  probability `--fbl_eps`, a loss counted as the fallback's PSNR), every
  MCS's curve (thin) and the LDPC + QAM envelope;
* bler_vs_snr.png: per MCS, the link's block error rate on random payloads
  of its transport block size over `k` channel uses (`--blocks` per point)
  beside the normal approximation's error probability for that size.
"""

import csv
import json
import os

from absl import app
from absl import flags
import numpy as np

from gjscc_jax import channel as channel_lib
from gjscc_jax.digital import fbl
from gjscc_jax.digital import link
from gjscc_jax.digital import mcs as mcs_lib
from gjscc_jax.separation import codecs
from gjscc_jax.separation import search as search_lib

_LDPC = flags.DEFINE_string("ldpc", None, "--link=ldpc output directory.")
_CAPACITY = flags.DEFINE_string("capacity", None, "Capacity output directory.")
_DEEPJSCC = flags.DEFINE_string("deepjscc", None, "summary.csv with DeepJSCC.")
_OUT = flags.DEFINE_string("output_dir", None, "Where the figures go.")
_EPS = flags.DEFINE_float("fbl_eps", 1e-2, "FBL curve: block error rate.")
_BLOCKS = flags.DEFINE_integer("blocks", 64, "BLER: blocks per point.")
_TITLE = flags.DEFINE_string("title", "", "Figure title suffix.")


def _rows(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def _curve(rows, label=None, metric="psnr", bcr=None):
  out = [(float(r["snr_db"]), float(r["mean"]), float(r["ci95"]))
         for r in rows if r["metric"] == metric
         and (label is None or r["label"] == label)
         and (bcr is None or abs(float(r["bcr"]) - bcr) < 1e-9)]
  return np.array(sorted(out)).reshape(-1, 3)


def _images(settings):
  from gjscc_jax import data as data_lib  # pylint: disable=import-outside-toplevel
  config = data_lib.default_data_config()
  for key, value in settings["data"].items():
    if key in config and not hasattr(config[key], "keys"):
      config[key] = value
  out = []
  for batch in data_lib.eval_batches(config, settings["split"], 16,
                                     settings["num_images"]):
    out += [np.asarray(x) for x, keep in zip(batch["image"], batch["mask"])
            if keep]
  return out


def _psnr(x, y):
  mse = np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2)
  return 100.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _fbl_curve(settings, snrs, eps):
  """Per SNR, mean PSNR of the codec at the normal approximation's rate."""
  codec = codecs.get_codec(settings["codec"], settings["headers"])
  images = _images(settings)
  k = float(channel_lib.parse_ratio(settings["bcr"])) * np.prod(
      images[0].shape)
  gray = np.full(images[0].shape, 128, np.uint8)
  means = []
  for snr in snrs:
    budget = int(np.floor(fbl.max_bits(int(k), snr, eps)))
    values = []
    for image in images:
      search = search_lib.QualitySearch(codec, image)
      q = search.best_fitting(max(budget, 0))
      lost = _psnr(gray, image)
      values.append(lost if q == search_lib.NOT_SENT else
                    (1 - eps) * _psnr(search.decoded(q), image) + eps * lost)
    means.append(np.mean(values))
  return np.array(means), k


def _bler_curves(mcss, k, snrs, blocks):
  rng = np.random.default_rng(0)
  out = {}
  for m in mcss:
    plan = link.transport_plan(m, k)
    if plan is None:
      continue
    threshold = 10 * np.log10(2 ** (plan.payload / int(k)) - 1)
    grid = [s for s in snrs if threshold - 3 <= s <= threshold + 6]
    measured = []
    for snr in grid:
      payload = rng.integers(0, 2, (blocks, plan.payload))
      keys = link.noise_keys(1, range(blocks), [snr] * blocks)
      _, ok = link.simulate(plan, payload, np.full(blocks, snr), keys)
      measured.append(1.0 - float(np.mean(ok)))
    out[m.name] = dict(
        label=m.describe(), payload=plan.payload, snr_db=grid,
        bler=measured,
        fbl=[float(fbl.error_probability(plan.payload, int(k), s))
             for s in grid])
  return out


def main(argv):
  del argv
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_LDPC.value, "run_config.json")) as f:
    settings = json.load(f)
  bcr = float(channel_lib.parse_ratio(settings["bcr"]))
  envelope = _rows(os.path.join(_LDPC.value, "summary.csv"))
  per_mcs = _rows(os.path.join(_LDPC.value, "mcs", "summary.csv"))
  capacity = _rows(os.path.join(_CAPACITY.value, "summary.csv"))
  snrs = sorted({float(r["snr_db"]) for r in envelope})
  fbl_psnr, k = _fbl_curve(settings, snrs, _EPS.value)

  fig, ax = plt.subplots(figsize=(6.5, 4.5))
  env_label = envelope[0]["label"]
  for label in dict.fromkeys(r["label"] for r in per_mcs):
    if label == env_label:
      continue
    c = _curve(per_mcs, label)
    ax.plot(c[:, 0], c[:, 1], color="0.75", lw=0.8)
  ax.plot([], [], color="0.75", lw=0.8, label="LDPC + QAM, one MCS each")
  if _DEEPJSCC.value:
    c = _curve(_rows(_DEEPJSCC.value), "DeepJSCC", bcr=bcr)
    if c.size:
      ax.errorbar(c[:, 0], c[:, 1], c[:, 2], marker="o", ms=3, capsize=2,
                  label="DeepJSCC (demo training)")
  c = _curve(capacity)
  ax.errorbar(c[:, 0], c[:, 1], c[:, 2], marker="s", ms=3, capsize=2,
              label=f"{capacity[0]['label']}")
  ax.plot(snrs, fbl_psnr, "k--", marker="^", ms=3,
          label=f"normal approximation (eps={_EPS.value:g})")
  c = _curve(envelope)
  ax.errorbar(c[:, 0], c[:, 1], c[:, 2], color="C3", marker="D", ms=3,
              capsize=2, label=f"{env_label} (envelope)")
  ax.set_xlabel("SNR (dB)")
  ax.set_ylabel("PSNR (dB)")
  ax.set_title(f"rho={settings['bcr']}, k={k:g} channel uses, "
               f"{settings['num_images']} images{_TITLE.value}", fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(_OUT.value, "psnr_vs_snr.png"), dpi=120)
  plt.close(fig)

  mcss = mcs_lib.parse_all(settings["link"]["mcs"])
  grid = list(np.arange(-10.0, 26.0, 1.0))
  bler = _bler_curves(mcss, k, grid, _BLOCKS.value)
  fig, ax = plt.subplots(figsize=(6.5, 4.5))
  for i, (name, c) in enumerate(bler.items()):
    colour = plt.cm.viridis(i / max(1, len(bler) - 1))
    ax.semilogy(c["snr_db"], np.maximum(c["bler"], 0.5 / _BLOCKS.value),
                marker="o", ms=3, color=colour,
                label=f"{c['label']} (A={c['payload']})")
    ax.semilogy(c["snr_db"], np.maximum(c["fbl"], 1e-4), "--", color=colour,
                lw=0.8)
  ax.set_ylim(0.5 / _BLOCKS.value / 2, 1.2)
  ax.set_xlabel("SNR (dB)")
  ax.set_ylabel("block error rate")
  ax.set_title(f"5G LDPC + QAM over AWGN, k={k:g} symbols; dashed: normal "
               "approximation", fontsize=9)
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=6, ncol=2)
  fig.tight_layout()
  fig.savefig(os.path.join(_OUT.value, "bler_vs_snr.png"), dpi=120)
  plt.close(fig)
  with open(os.path.join(_OUT.value, "figure_data.json"), "w") as f:
    json.dump(dict(snrs_db=snrs, fbl_psnr=list(map(float, fbl_psnr)),
                   fbl_eps=_EPS.value, k=k, bler=bler), f, indent=1)
  print("Wrote", _OUT.value)


if __name__ == "__main__":
  app.run(main)
