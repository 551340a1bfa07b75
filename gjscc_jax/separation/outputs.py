"""A separation output directory: what it holds, and writing it.

Layout (written by `python -m experiments.separation`, and for each
separation run of `python -m experiments.evaluate`)::

  run.json           what the directory is (`gjscc_jax.run_record`)
  run_config.json    what the results depend on (`run_settings`)
  summary.csv/.json  mean and 95% confidence interval per SNR and metric,
                     with `loss_rate` and `bits_used` (the report format of
                     `gjscc_jax.results`)
  <metric>_vs_snr.png
  grid_separation.png  originals above the received images, one row per SNR
  per_image.npz      per SNR and image: codec quality index, payload bits,
                     bit budget, lost (per realisation)

`run_config.json` lets a comparison check that the results were computed
on its test images and channel before it reads `summary.json`.
"""

import json
import os

import numpy as np

from gjscc_jax import channel as channel_lib
from gjscc_jax import results as report
from gjscc_jax import run_record
from gjscc_jax.separation import baseline
from gjscc_jax.separation import capacity

#: The file recording what the results depend on.
RUN_CONFIG = "run_config.json"
#: Data config fields that do not change which images are read.
_READER_FIELDS = ("num_workers", "read_threads", "prefetch_buffer_size")


def run_settings(codec, data_config, split, num_images, bcr, snrs_db, *,
                 channel="awgn", fading="slow", outage=None, realisations=1,
                 lpips_nets=("alex",), fallback="gray", seed=0,
                 exhaustive=False, headers="stream"):
  """What a separation sweep's results depend on, JSON-serialisable.

  Args:
    codec: the codec name.
    data_config: the data config of the images.
    split: their split.
    num_images: how many images from the start of the split were used.
    bcr, snrs_db, channel, fading, outage, realisations, lpips_nets,
      fallback, seed, exhaustive, headers: as for `baseline.evaluate`.

  Returns:
    A dict with `scheme='separation'` and the settings; `channel` is
    `{'kind', 'fading'}` (`fading` None for AWGN) and, for the newer
    channels, their other fields (`Channel.to_config`); `realisations` 1
    unless the realised capacity is random (slow or block fading).
  """
  link = capacity.link_of(channel, fading)
  slow = capacity.is_random(link)
  fields = (data_config.to_dict() if hasattr(data_config, "to_dict")
            else dict(data_config))  # nested ConfigDicts (data.generator)
  data = {k: v for k, v in fields.items() if k not in _READER_FIELDS}
  return dict(
      scheme=baseline.SCHEME, codec=codec, headers=headers,
      exhaustive=bool(exhaustive),
      fallback=fallback if isinstance(fallback, str) else "image",
      bcr=str(channel_lib.parse_ratio(bcr)),
      snrs_db=[float(s) for s in snrs_db], data=data, split=split,
      num_images=int(num_images),
      channel=_channel_record(link),
      outage=outage, realisations=realisations if slow else 1, seed=seed,
      lpips_nets=list(filter(None, lpips_nets)))


def _channel_record(link):
  """`{'kind', 'fading'}` as before for AWGN and Rayleigh; every field
  otherwise."""
  if link.kind == "awgn":
    return dict(kind="awgn", fading=None)
  if link.kind == "rayleigh" and link.fading != "block":
    return dict(kind="rayleigh", fading=link.fading)
  return link.to_config()


def write_outputs(result, output_dir, settings):
  """Writes a `baseline.SeparationResult` as the layout above.

  Args:
    result: the result.
    output_dir: the directory (created).
    settings: from `run_settings`.

  Returns:
    The paths of the metric plots.
  """
  os.makedirs(output_dir, exist_ok=True)
  with open(os.path.join(output_dir, RUN_CONFIG), "w") as f:
    json.dump(settings, f, indent=1, sort_keys=True)
  run_record.write(output_dir, run_record.SEPARATION, __name__,
                   link=(settings.get("link") or {}).get("kind", "capacity"))
  report.write_tables(result.rows, output_dir)
  paths = report.plot_metrics(result.rows, output_dir)
  report.save_grid(result.originals,
                   {f"{s:g} dB": r for s, r in result.examples.items()},
                   os.path.join(output_dir, "grid_separation.png"),
                   title=f"{result.label}: rho={settings['bcr']}, "
                   f"k={result.k:g}")
  snrs = sorted(result.quality)
  np.savez(os.path.join(output_dir, "per_image.npz"), snrs_db=np.asarray(snrs),
           indices=result.indices,
           quality=np.stack([result.quality[s] for s in snrs]),
           bits=np.stack([result.bits[s] for s in snrs]),
           budget=np.stack([result.budget[s] for s in snrs]),
           lost=np.stack([result.lost[s] for s in snrs]))
  return paths


def read_settings(output_dir):
  """The `run_config.json` of a separation output directory, or None when
  the directory has none or it is not a separation run's."""
  path = os.path.join(output_dir, RUN_CONFIG)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    settings = json.load(f)
  return settings if settings.get("scheme") == baseline.SCHEME else None
