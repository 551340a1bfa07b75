"""Tables, plots and image grids of SNR sweeps.

Rows of the summary are (scheme, label, bcr, snr_db, metric, mean, ci95, n):
the mean over test images and channel realisations with the half-width of
its 95% confidence interval from Student's t distribution.
"""

import csv
import json
import math
import os

import numpy as np
from scipy import stats

#: How each metric is shown, and whether higher is better.
METRICS = {
    "psnr": ("PSNR (dB)", True),
    "ssim": ("SSIM", True),
    "ms_ssim": ("MS-SSIM", True),
    "lpips_vgg": ("LPIPS (VGG)", False),
    "lpips_alex": ("LPIPS (AlexNet)", False),
}
FIELDS = ("scheme", "label", "bcr", "snr_db", "metric", "mean", "ci95", "n")


def mean_ci95(values):
  """Mean and 95% confidence half-width (Student t) of a sample."""
  values = np.asarray(values, np.float64)
  n = values.size
  mean = float(values.mean())
  if n < 2:
    return mean, float("nan")
  sem = values.std(ddof=1) / math.sqrt(n)
  return mean, float(stats.t.ppf(0.975, n - 1) * sem)


def summarize(result, *, scheme, label, bcr):
  """Summary rows (dicts with FIELDS) of one `SweepResult`."""
  rows = []
  for snr, per_metric in sorted(result.values.items()):
    for metric, values in per_metric.items():
      mean, ci = mean_ci95(values)
      rows.append(dict(scheme=scheme, label=label, bcr=bcr, snr_db=snr,
                       metric=metric, mean=mean, ci95=ci, n=int(values.size)))
  return rows


def write_tables(rows, output_dir, stem="summary"):
  """Writes `stem.csv` and `stem.json`; returns their paths."""
  os.makedirs(output_dir, exist_ok=True)
  csv_path = os.path.join(output_dir, stem + ".csv")
  with open(csv_path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows)
  json_path = os.path.join(output_dir, stem + ".json")
  with open(json_path, "w") as f:
    json.dump(rows, f, indent=1)
  return csv_path, json_path


def format_table(rows, metric="psnr"):
  """A plain-text table: one line per label, one column per SNR."""
  rows = [r for r in rows if r["metric"] == metric]
  snrs = sorted({r["snr_db"] for r in rows})
  labels = list(dict.fromkeys(r["label"] for r in rows))
  name = METRICS.get(metric, (metric, True))[0]
  lines = [f"{name:<28}" + "".join(f"{s:>9g}dB" for s in snrs)]
  for label in labels:
    by_snr = {r["snr_db"]: r["mean"] for r in rows if r["label"] == label}
    lines.append(f"{label:<28}" + "".join(
        f"{by_snr.get(s, float('nan')):>11.4g}" for s in snrs))
  return "\n".join(lines)


def plot_metrics(rows, output_dir):
  """One PNG per metric: mean vs SNR with 95% CI bars, a line per label."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  os.makedirs(output_dir, exist_ok=True)
  paths = []
  for metric in dict.fromkeys(r["metric"] for r in rows):
    title, higher_better = METRICS.get(metric, (metric, True))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label in dict.fromkeys(r["label"] for r in rows):
      pts = sorted((r["snr_db"], r["mean"], r["ci95"]) for r in rows
                   if r["label"] == label and r["metric"] == metric)
      if not pts:
        continue
      x, y, e = map(np.asarray, zip(*pts))
      ax.errorbar(x, y, yerr=np.nan_to_num(e), marker="o", capsize=3, label=label)
    ax.set_xlabel("test SNR (dB)")
    ax.set_ylabel(title + ("" if higher_better else " (lower is better)"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(output_dir, f"{metric}_vs_snr.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)
  return paths


def save_grid(originals, reconstructions, path, title=""):
  """A PNG grid: originals in the first row, one row per SNR below.

  Args:
    originals: uint8 (k, H, W, 3).
    reconstructions: {row label: uint8 (k, H, W, 3)}.
    path: Output PNG path.
    title: Optional figure title.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = [("original", originals)] + list(reconstructions.items())
  k = len(originals)
  if k == 0:
    return None
  fig, axes = plt.subplots(len(rows), k, figsize=(1.6 * k, 1.7 * len(rows)),
                           squeeze=False)
  for i, (name, images) in enumerate(rows):
    for j in range(k):
      ax = axes[i][j]
      ax.imshow(images[j])
      ax.set_xticks([])
      ax.set_yticks([])
      if j == 0:
        ax.set_ylabel(name, fontsize=8)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
