"""The channel-mismatch grid: runs trained on one channel, tested on each.

`experiments.evaluate --test_channel=...` (repeated) sweeps every run on
each test channel; `markdown` lays the summary rows out as one table per
run and metric: a line per test channel, a column per SNR, `mean ± ci95`.
"""

from gjscc_jax import results as report


def markdown(rows, channels, metrics=("psnr",)):
  """The grid as markdown text.

  Args:
    rows: summary rows with a `channel` column (and `trained_channel`).
    channels: the test channels' names, in the order of the lines.
    metrics: the metrics tabulated.

  Returns:
    A string: per (label, metric) a heading naming the training channel
    and a table `| test channel | rho | <snr> dB | ... |` (a channel with
    overhead, e.g. OFDM's pilots and prefixes, spends more channel uses on
    the same latents: a larger rho).
  """
  out = []
  for metric in metrics:
    name = report.METRICS.get(metric, (metric, True))[0]
    for label in dict.fromkeys(r["label"] for r in rows):
      mine = [r for r in rows if r["metric"] == metric and r["label"] == label]
      if not mine:
        continue
      trained = mine[0].get("trained_channel") or "-"
      snrs = sorted({float(r["snr_db"]) for r in mine})
      out.append(f"{name}: {label} (trained on {trained})\n")
      out.append("| test channel | rho | " + " | ".join(
          f"{s:g} dB" for s in snrs) + " |")
      out.append("|---|---|" + "---|" * len(snrs))
      for channel in channels:
        here = [r for r in mine if r.get("channel") == channel]
        for rho in dict.fromkeys(report.format_ratio(r["bcr"]) for r in here):
          cells = {float(r["snr_db"]): r for r in here
                   if report.format_ratio(r["bcr"]) == rho}
          out.append(f"| {channel} | {rho} | " + " | ".join(
              f"{cells[s]['mean']:.2f} ± {cells[s]['ci95']:.2f}"
              if s in cells else "-" for s in snrs) + " |")
      out.append("")
  return "\n".join(out)
