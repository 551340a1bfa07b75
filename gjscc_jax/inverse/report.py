"""Summaries, plots and progress of an InverseJSCC batch run.

The summary uses the project's report format (`gjscc_jax.results`):
rows `(scheme, label, bcr, snr_db, metric, mean, ci95, n)` with the mean
over images and its 95% Student-t confidence half-width, for the restored
images (scheme 'inversejscc') and the DeepJSCC reconstructions they started
from (scheme 'deepjscc'), so both appear as curves on the same plots.
"""

import os
import sys

import jax
import numpy as np

from gjscc_jax import sharding
from gjscc_jax import results as report
from gjscc_jax.inverse import outputs

SCHEMES = (("inverse", "inversejscc", "InverseJSCC"),
           ("deepjscc", "deepjscc", "DeepJSCC"))
_HISTORY = "history"


def progress_bar(total: int):
  """A tqdm bar over images with images/s and ETA (process 0 only)."""
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  return tqdm(total=total, desc="invert", unit="img", dynamic_ncols=True,
              file=sys.stderr, mininterval=1.0, smoothing=0.1,
              disable=jax.process_index() != 0)


def record_columns(records) -> dict[str, np.ndarray]:
  """Per-image records -> float columns (metrics and objective history)."""
  if not records:
    return {}
  columns = {"snr_db": [r["snr_db"] for r in records],
             "image_index": [r["image_index"] for r in records]}
  for prefix, _, _ in SCHEMES:
    for metric in records[0][prefix]:
      columns[f"{prefix}/{metric}"] = [r[prefix][metric] for r in records]
  steps = len(records[0]["history"]["objective"])
  history = np.array([r["history"]["objective"] for r in records])
  for t in range(steps):
    columns[f"{_HISTORY}/{t:05d}"] = history[:, t]
  return {k: np.asarray(v, np.float64) for k, v in columns.items()}


def summarize(records, *, bcr: float, tag: str = ""):
  """Summary rows and mean objective curves over the images of all processes.

  Every process must call it (it gathers over processes). A `tag` is added
  to the labels ('InverseJSCC (rho 1/192)'), so that the rows of several
  runs can share one table and one plot.

  Returns:
    `(rows, curves)`: report rows, and `{snr_db: (total_steps,)}` mean
    search objective per step.
  """
  columns = sharding.gather_rows(record_columns(records))
  if not columns:
    return [], {}
  rows, curves = [], {}
  history = sorted(k for k in columns if k.startswith(_HISTORY + "/"))
  for snr in sorted(set(columns["snr_db"].tolist())):
    at = columns["snr_db"] == snr
    for prefix, scheme, label in SCHEMES:
      metrics = sorted(k.partition("/")[2] for k in columns
                       if k.startswith(prefix + "/"))
      for metric in metrics:
        mean, ci = report.mean_ci95(columns[f"{prefix}/{metric}"][at])
        rows.append(dict(scheme=scheme, label=f"{label} ({tag})" if tag
                         else label, bcr=bcr, snr_db=snr,
                         metric=metric, mean=mean, ci95=ci, n=int(at.sum())))
    curves[snr] = np.stack([columns[k][at] for k in history], 1).mean(0)
  return rows, curves


def plot_convergence(curves, path):
  """Mean search objective vs step, one line per SNR (log scale)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for snr, curve in sorted(curves.items()):
    ax.plot(np.arange(len(curve)), curve, label=f"{snr:g} dB")
  ax.set_yscale("log")
  ax.set_xlabel("ILO step (all rounds)")
  ax.set_ylabel("mean objective")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def write_report(rows, curves, store, source, items, num_grid_images=8):
  """Tables, metric-vs-SNR plots, the convergence plot and image grids.

  Args:
    rows: From `summarize`.
    curves: From `summarize`.
    store: The run's `OutputStore`.
    source: The `ImageSource` (originals for the grids).
    items: This process's items; the grids show its first images.
    num_grid_images: Images per grid.
  """
  out = store.directory
  report.write_tables(rows, out)
  report.plot_metrics(rows, out)
  if curves:
    plot_convergence(curves, os.path.join(out, "convergence.png"))
  for snr in sorted({it.snr_db for it in items}):
    shown = [it.index for it in items if it.snr_db == snr][:num_grid_images]
    if not shown:
      continue
    originals = np.stack([source.load(i)[0] for i in shown])
    grid = {label: np.stack([store.read_image(snr, i, kind) for i in shown])
            for kind, label in (("received", "DeepJSCC"),
                                ("restored", "InverseJSCC"))}
    report.save_grid(originals, grid, os.path.join(
        out, f"grid_{outputs.snr_dirname(snr)}.png"), title=f"SNR {snr:g} dB")
  for metric in ("psnr", "lpips_alex", "lpips_vgg"):
    if any(r["metric"] == metric for r in rows):
      print(report.format_table(rows, metric), flush=True)

