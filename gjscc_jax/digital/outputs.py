"""The extra files of a `--link=ldpc` separation output directory.

Beside the separation layout (`separation.outputs`, holding the envelope):

  mcs/summary.csv|json   every MCS's rows and the envelope's
  mcs/<metric>_vs_snr.png  a curve per MCS and the envelope
  digital.json           the MCS chosen per SNR, the held-out scores it was
                         chosen on and each MCS's transport block size
"""

import json
import os

from gjscc_jax import results as report


def write_outputs(result, output_dir):
  """Writes a `baseline.DigitalResult`'s per-MCS files; returns their dir."""
  folder = os.path.join(output_dir, "mcs")
  rows = [r for res in result.per_mcs.values() for r in res.rows]
  rows += result.envelope.rows
  report.write_tables(rows, folder)
  report.plot_metrics(rows, folder)
  record = dict(
      chosen={f"{s:g}": m for s, m in result.chosen.items()},
      held_out={f"{s:g}": {m: dict(psnr=v[0], loss_rate=v[1])
                           for m, v in scores.items()}
                for s, scores in result.selection.items()},
      payload_bits=result.payload)
  with open(os.path.join(output_dir, "digital.json"), "w") as f:
    json.dump(record, f, indent=1)
  return folder
