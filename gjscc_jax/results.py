"""Tables, plots and image grids of SNR sweeps.

Rows of the summary are (scheme, label, bcr, snr_db, metric, mean, ci95, n),
optionally with more columns (e.g. the test `channel`): the mean over test
images and the half-width of its 95% confidence interval from Student's t
distribution over the `n` test images. With several channel realisations
per image, each image's realisations are averaged first (they are not
independent samples: they share the image), and the interval is taken over
the per-image means (`mean_ci95`).
"""

import csv
import fractions
import json
import math
import os

import numpy as np
from scipy import stats

from gjscc_jax import channel as channel_lib

#: How each metric is shown, and whether higher is better.
METRICS = {
    "psnr": ("PSNR (dB)", True),
    "ssim": ("SSIM", True),
    "ms_ssim": ("MS-SSIM", True),
    "lpips_vgg": ("LPIPS (VGG)", False),
    "lpips_alex": ("LPIPS (AlexNet)", False),
    "dists": ("DISTS", False),
    "fid": ("FID", False),
    "kid": ("KID", False),
    "loss_rate": ("image loss rate", False),
    "bits_used": ("payload bits per image", True),
}
FIELDS = ("scheme", "label", "bcr", "snr_db", "metric", "mean", "ci95", "n")


def per_image(values):
  """Per-image values: `(N,)` as is, `(N, R)` averaged over realisations.

  Args:
    values: float array `(N,)` (one value per image) or `(N, R)` (per image
      and channel realisation).

  Returns:
    float64 `(N,)`.
  """
  values = np.asarray(values, np.float64)
  if values.ndim == 1:
    return values
  if values.ndim == 2:
    return values.mean(axis=1)
  raise ValueError(f"Expected per-image values (N,) or (N, R); got shape "
                   f"{values.shape}.")


def mean_ci95(values):
  """Mean and 95% confidence half-width (Student t) over test images.

  With `x_i` the value of image `i` (the mean of its `R` realisations when
  `values` is `(N, R)`), returns `mean(x)` and
  `t_{0.975, N-1} * std(x, ddof=1) / sqrt(N)`; the half-width is NaN for
  `N < 2`. Realisations of one image are averaged before the interval is
  formed: they share the image, so pooling them as `N * R` independent
  samples would understate the interval.

  Args:
    values: float array `(N,)` or `(N, R)`.

  Returns:
    `(mean, half_width)` as floats.
  """
  values = per_image(values)
  n = values.size
  mean = float(values.mean())
  if n < 2:
    return mean, float("nan")
  sem = values.std(ddof=1) / math.sqrt(n)
  return mean, float(stats.t.ppf(0.975, n - 1) * sem)


def summarize(values, *, scheme, label, bcr, **columns):
  """Summary rows (dicts with FIELDS, then `columns`) of per-image values.

  Args:
    values: `{snr_db: {metric: (N,) or (N, R)}}`, or a result with such a
      `.values` (`sweep.SweepResult`).
    scheme, label, bcr: the rows' scheme name, label and bandwidth ratio.
    **columns: more columns, the same in every row (e.g. `channel='awgn'`).

  Returns:
    One row per SNR (ascending) and metric; `n` is the number of images.
  """
  if not isinstance(values, dict):
    values = values.values  # A SweepResult.
  rows = []
  for snr, per_metric in sorted(values.items()):
    for metric, v in per_metric.items():
      mean, ci = mean_ci95(v)
      rows.append(dict(scheme=scheme, label=label, bcr=float(bcr),
                       snr_db=float(snr), metric=metric, mean=mean, ci95=ci,
                       n=int(np.shape(v)[0]), **columns))
  return rows


def format_ratio(bcr):
  """`1/192` for the bandwidth ratio 0.005208..., `3/10` for 0.3."""
  return str(channel_lib.parse_ratio(float(bcr)).limit_denominator(100_000))


def fieldnames(rows):
  """FIELDS, then any other columns of `rows` in order of appearance."""
  extra = dict.fromkeys(k for r in rows for k in r if k not in FIELDS)
  return FIELDS + tuple(extra)


def write_tables(rows, output_dir, stem="summary"):
  """Writes `stem.csv` and `stem.json`; returns their paths."""
  os.makedirs(output_dir, exist_ok=True)
  csv_path = os.path.join(output_dir, stem + ".csv")
  with open(csv_path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fieldnames(rows))
    writer.writeheader()
    writer.writerows(rows)
  json_path = os.path.join(output_dir, stem + ".json")
  with open(json_path, "w") as f:
    json.dump(rows, f, indent=1)
  return csv_path, json_path


def read_rows(path):
  """The rows of a `summary.json` (or of the directory holding one)."""
  if os.path.isdir(path):
    path = os.path.join(path, "summary.json")
  with open(path) as f:
    rows = json.load(f)
  if not isinstance(rows, list) or any(
      not isinstance(r, dict) or set(FIELDS) - set(r) for r in rows):
    raise ValueError(f"{path} is not a summary of this project: expected a "
                     f"list of rows with the fields {', '.join(FIELDS)}.")
  return rows


def curve_label(row, rows):
  """A row's line label: its label, with its rho when `rows` mix several."""
  if len({r["bcr"] for r in rows}) > 1:
    return f"{row['label']}, ρ={format_ratio(row['bcr'])}"
  return row["label"]


def format_table(rows, metric="psnr"):
  """A plain-text table: one line per curve, one column per SNR."""
  rows = [r for r in rows if r["metric"] == metric]
  snrs = sorted({r["snr_db"] for r in rows})
  curves = list(dict.fromkeys(curve_label(r, rows) for r in rows))
  width = max([28] + [len(c) + 2 for c in curves])
  name = METRICS.get(metric, (metric, True))[0]
  lines = [f"{name:<{width}}" + "".join(f"{s:>9g}dB" for s in snrs)]
  for curve in curves:
    by_snr = {r["snr_db"]: r["mean"] for r in rows
              if curve_label(r, rows) == curve}
    lines.append(f"{curve:<{width}}" + "".join(
        f"{by_snr.get(s, float('nan')):>11.4g}" for s in snrs))
  return "\n".join(lines)


def _pyplot():
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def _metrics(rows, metrics=None):
  present = list(dict.fromkeys(r["metric"] for r in rows))
  return present if metrics is None else [m for m in metrics if m in present]


def _ylabel(metric):
  title, higher_better = METRICS.get(metric, (metric, True))
  return title + ("" if higher_better else " (lower is better)")


def _colours(labels):
  """One colour per label, the same in every panel and figure."""
  cycle = _pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
  return {label: cycle[i % len(cycle)] for i, label in enumerate(labels)}


def _errorbar(ax, rows, x_field, **kwargs):
  pts = sorted((r[x_field], r["mean"], r["ci95"]) for r in rows)
  if not pts:
    return
  x, y, e = map(np.asarray, zip(*pts))
  ax.errorbar(x, y, yerr=np.nan_to_num(e), marker="o", capsize=3,
              markersize=4, **kwargs)


def plot_metrics(rows, output_dir):
  """One PNG per metric, `<metric>_vs_snr.png`: mean vs SNR with 95% CI
  bars, a line per label (per label and rho when the rows mix several)."""
  plt = _pyplot()
  os.makedirs(output_dir, exist_ok=True)
  paths = []
  for metric in _metrics(rows):
    at = [r for r in rows if r["metric"] == metric]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for curve in dict.fromkeys(curve_label(r, rows) for r in at):
      _errorbar(ax, [r for r in at if curve_label(r, rows) == curve],
                "snr_db", label=curve)
    ax.set_xlabel("test SNR (dB)")
    ax.set_ylabel(_ylabel(metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(output_dir, f"{metric}_vs_snr.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)
  return paths


def plot_by_rho(rows, output_dir, metrics=None):
  """One PNG per metric, `<metric>_vs_snr_by_rho.png`: a panel per
  bandwidth ratio (ascending), metric vs SNR with 95% CI bars, a line per
  label in the same colour in every panel, a shared y axis.

  Args:
    rows: summary rows (their `bcr` field picks the panel).
    output_dir: where the PNGs go.
    metrics: the metrics to plot (default: every metric of the rows).

  Returns:
    The paths written.
  """
  plt = _pyplot()
  os.makedirs(output_dir, exist_ok=True)
  colours = _colours(dict.fromkeys(r["label"] for r in rows))
  paths = []
  for metric in _metrics(rows, metrics):
    at = [r for r in rows if r["metric"] == metric]
    rhos = sorted({r["bcr"] for r in at})
    fig, axes = plt.subplots(1, len(rhos), figsize=(4.2 * len(rhos), 3.8),
                             sharey=True, squeeze=False)
    for ax, rho in zip(axes[0], rhos):
      for label in dict.fromkeys(r["label"] for r in at):
        _errorbar(ax, [r for r in at if r["label"] == label
                       and r["bcr"] == rho], "snr_db", label=label,
                  color=colours[label])
      ax.set_title(f"ρ = {format_ratio(rho)}", fontsize=10)
      ax.set_xlabel("test SNR (dB)")
      ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(_ylabel(metric))
    _legend(fig, axes[0])
    path = os.path.join(output_dir, f"{metric}_vs_snr_by_rho.png")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    paths.append(path)
  return paths


def plot_vs_rho(rows, output_dir, snrs_db, metrics=None):
  """One PNG per metric, `<metric>_vs_rho.png`: a panel per SNR of
  `snrs_db`, metric vs bandwidth ratio (log axis) with 95% CI bars, a line
  per label.

  Args:
    rows: summary rows.
    output_dir: where the PNGs go.
    snrs_db: the SNRs to show (those without rows are skipped).
    metrics: the metrics to plot (default: every metric of the rows).

  Returns:
    The paths written (none when the rows hold fewer than two ratios).
  """
  plt = _pyplot()
  snrs = [float(s) for s in snrs_db if any(r["snr_db"] == float(s)
                                             for r in rows)]
  rhos = sorted({r["bcr"] for r in rows})
  if len(rhos) < 2 or not snrs:
    return []
  os.makedirs(output_dir, exist_ok=True)
  colours = _colours(dict.fromkeys(r["label"] for r in rows))
  paths = []
  for metric in _metrics(rows, metrics):
    at = [r for r in rows if r["metric"] == metric]
    fig, axes = plt.subplots(1, len(snrs), figsize=(4.2 * len(snrs), 3.8),
                             sharey=True, squeeze=False)
    for ax, snr in zip(axes[0], snrs):
      for label in dict.fromkeys(r["label"] for r in at):
        _errorbar(ax, [r for r in at if r["label"] == label
                       and r["snr_db"] == snr], "bcr", label=label,
                  color=colours[label])
      ax.set_xscale("log")
      ax.set_xticks(rhos)
      ax.set_xticklabels([format_ratio(r) for r in rhos], fontsize=8)
      ax.minorticks_off()
      ax.set_title(f"SNR = {snr:g} dB", fontsize=10)
      ax.set_xlabel("bandwidth ratio ρ")
      ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(_ylabel(metric))
    _legend(fig, axes[0])
    path = os.path.join(output_dir, f"{metric}_vs_rho.png")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    paths.append(path)
  return paths


#: Perception metrics drawn against PSNR by `plot_perception_distortion`.
PERCEPTION_METRICS = ("lpips_vgg", "lpips_alex", "dists", "fid")


def _lambda_curves(rows):
  """`{curve: {lambda: row}}` of rows with a `lambda_lpips`: a curve per
  scheme (per scheme and rho when the rows mix several ratios)."""
  many_rhos = len({r["bcr"] for r in rows}) > 1
  names, curves = {}, {}
  for r in rows:
    if r.get("lambda_lpips") in (None, ""):
      continue
    # The curve's name: its first label without the ' (λ ...)' suffix.
    name = names.setdefault(r["scheme"], (r.get("label") or r["scheme"])
                            .split(" (λ")[0])
    if many_rhos:
      name += f", ρ={format_ratio(r['bcr'])}"
    curves.setdefault(name, {})[float(r["lambda_lpips"])] = r
  return curves


def perception_distortion_axes(rows, metric, snrs_db=None):
  """Draws `metric` against PSNR, a panel per SNR, a curve per scheme
  through its LPIPS weights lambda (the perception-distortion trade-off).

  Each point is one training run (one `lambda_lpips`) at one test SNR:
  x = its mean PSNR, y = its mean `metric`, with 95% CI bars on both; the
  points of a curve are joined in increasing lambda and annotated with it.
  Rows without `lambda_lpips` (read or computed schemes) are left out.

  Args:
    rows: summary rows (`experiments.evaluate`'s), with a `lambda_lpips`
      column on training runs.
    metric: the y metric ('lpips_alex', 'dists', 'fid', ...).
    snrs_db: the SNRs to draw (default: every SNR of the rows).

  Returns:
    `(fig, axes)`: the matplotlib figure and its (n_snr,) axes, or
    `(None, None)` when no curve has two lambdas at any SNR or no PSNR rows.
  """
  plt = _pyplot()
  rows = [r for r in rows if r["metric"] in ("psnr", metric)]
  snrs = sorted({float(r["snr_db"]) for r in rows} if snrs_db is None
                else {float(s) for s in snrs_db})
  panels = []
  for snr in snrs:
    at = [r for r in rows if float(r["snr_db"]) == snr]
    psnr = _lambda_curves([r for r in at if r["metric"] == "psnr"])
    value = _lambda_curves([r for r in at if r["metric"] == metric])
    curves = {}
    for name, by_lambda in value.items():
      lambdas = sorted(set(by_lambda) & set(psnr.get(name, {})))
      if len(lambdas) >= 2:
        curves[name] = [(l, psnr[name][l], by_lambda[l]) for l in lambdas]
    if curves:
      panels.append((snr, curves))
  if not panels:
    return None, None
  colours = _colours(dict.fromkeys(n for _, c in panels for n in c))
  fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.9),
                           sharey=True, squeeze=False)
  for ax, (snr, curves) in zip(axes[0], panels):
    for name, points in curves.items():
      x = [p["mean"] for _, p, _ in points]
      y = [v["mean"] for _, _, v in points]
      ax.errorbar(x, y, xerr=np.nan_to_num([p["ci95"] for _, p, _ in points]),
                  yerr=np.nan_to_num([v["ci95"] for _, _, v in points]),
                  marker="o", capsize=3, markersize=4, label=name,
                  color=colours[name])
      for (lam, _, _), xi, yi in zip(points, x, y):
        ax.annotate(f"λ={lam:g}", (xi, yi), textcoords="offset points",
                    xytext=(4, 4), fontsize=7, color=colours[name])
    ax.set_title(f"SNR = {snr:g} dB", fontsize=10)
    ax.set_xlabel(_ylabel("psnr"))
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel(_ylabel(metric))
  _legend(fig, axes[0])
  return fig, axes[0]


def plot_perception_distortion(rows, output_dir, metrics=None, snrs_db=None):
  """One PNG per perception metric, `<metric>_vs_psnr.png`: the
  perception-distortion curves of `perception_distortion_axes`.

  Args:
    rows: summary rows with `lambda_lpips` on training runs.
    output_dir: where the PNGs go.
    metrics: the y metrics (default: those of `PERCEPTION_METRICS` present).
    snrs_db: the SNRs (panels) to draw (default: all).

  Returns:
    The paths written (none without two lambdas of one scheme).
  """
  plt = _pyplot()
  paths = []
  for metric in _metrics(rows, metrics or PERCEPTION_METRICS):
    fig, _ = perception_distortion_axes(rows, metric, snrs_db)
    if fig is None:
      continue
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, f"{metric}_vs_psnr.png")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    paths.append(path)
  return paths


def _legend(fig, axes):
  """One legend for the figure, below the panels."""
  handles, labels = {}, []
  for ax in axes:
    for handle, label in zip(*ax.get_legend_handles_labels()):
      if label not in handles:
        handles[label] = handle
        labels.append(label)
  fig.tight_layout()
  if labels:
    fig.legend([handles[l] for l in labels], labels, loc="upper center",
               bbox_to_anchor=(0.5, 0.0), ncol=min(len(labels), 4),
               fontsize=8, frameon=False)


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
