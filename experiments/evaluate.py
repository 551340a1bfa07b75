r"""Puts every scheme on the same test images and channel, on shared plots.

  python -m experiments.evaluate --output_dir=results/curves \
      --run=DeepJSCC=runs/deepjscc_1_768 --run=DeepJSCC=runs/deepjscc_1_192 \
      --run=GenerativeJSCC=runs/generative_1_192 \
      --run=InverseJSCC=results/inverse_1_192 \
      --run='BPG (capacity)=separation:heif' \
      --data.name=celebahq --snrs_db=-5,-3,-1,0,1,3,5 --realisations=4

Each --run is LABEL=SOURCE (`gjscc_jax/evaluation/comparison.py`):
  * a training workdir (`experiments.train`): its checkpoint (latest, or
    --step) is swept over --snrs_db;
  * an InverseJSCC output directory (`experiments.invert`): its summary is
    read (DIR:deepjscc reads the DeepJSCC rows it started from);
  * a separation output directory (`experiments.separation`): its summary
    is read;
  * separation:CODEC[:bcr=1/192,headers=shared,...]: the separation baseline
    computed here, at every bandwidth ratio of the other runs unless bcr= is
    given.
One label may name runs at several bandwidth ratios (one per ratio).

Every run is tested on the same images and channel: --data.* and
--channel.* override what each run was trained with (default: those of the
first run), so a model trained on AWGN can be tested on Rayleigh fading.
--test_channel (repeatable) gives the mismatch grid: every run tested on
each channel (docs/channels.md), the grid in OUTPUT_DIR/mismatch.md.
Training runs at different resolutions need --data.resolution. SIGTERM or
SIGINT abandons the run being swept and exits with status 75 (the runs
finished so far are under OUTPUT_DIR/runs).
Output directories computed on other images or another channel are refused
(--allow_mismatch plots them anyway). Written to --output_dir:
summary.csv/.json (mean and 95% confidence interval over test images, each
image's channel realisations averaged first; columns `channel` and
`trained_channel`), evaluation.json (the test set, channel, settings and
every run), per metric <metric>_vs_snr.png, <metric>_vs_snr_by_rho.png (a
panel per bandwidth ratio) and, with several ratios, <metric>_vs_rho.png
(a panel per SNR of --rho_snrs), with training runs of several LPIPS
weights of one scheme (`experiments.reproduce --lambdas`) per perception
metric <metric>_vs_psnr.png (the metric against PSNR, a panel per SNR, a
curve per scheme through its lambdas; rows carry `lambda_lpips`), and
runs/<label>_rho<p>_<q>/ with each
swept run's tables and image grid.

--metrics=psnr,ssim,lpips_vgg,dists,fid,kid adds DISTS (per image) and FID
and KID (once per run and SNR over all test images, with 95% bootstrap
intervals) for the swept runs; FID/KID need --inception_weights=DIR from
`python -m weights_convert inception` (docs/perception-metrics.md).
"""

import json
import os

from absl import app
from absl import flags
import jax

from experiments import config_cli
from gjscc_jax import channel as channel_lib
from gjscc_jax import data as data_lib
from gjscc_jax import preemption
from gjscc_jax.evaluation import comparison
from gjscc_jax import results as report
from gjscc_jax.evaluation import perception as perception_lib
from gjscc_jax.evaluation import mismatch

_RUNS = flags.DEFINE_multi_string(
    "run", [], "LABEL=SOURCE: a training workdir, an InverseJSCC or "
    "separation output directory, or separation:CODEC[:KEY=VALUE,...]; "
    "repeat for several runs.")
_OUT = flags.DEFINE_string("output_dir", None, "Where to write tables and plots.")
_SNRS = flags.DEFINE_list("snrs_db", ["-5", "-3", "-1", "0", "1", "3", "5"],
                          "Test SNRs in dB.")
_RHO_SNRS = flags.DEFINE_list(
    "rho_snrs", None, "SNRs (dB) of the metric-vs-bandwidth-ratio panels "
    "(default: the lowest and highest of --snrs_db).")
_REALISATIONS = flags.DEFINE_integer(
    "realisations", 2, "Channel realisations per image and SNR (averaged per "
    "image before the confidence interval over images).")
_DATA_NAME = flags.DEFINE_enum(
    "data.name", None, data_lib.DATASET_NAMES,
    "Test dataset for every run (default: the first run's).")
_DATA_IMAGE_DIR = flags.DEFINE_string(
    "data.image_dir", None, "Image folder of the test dataset (ffhq, "
    "celebahq, image_folder).")
_DATA_RESOLUTION = flags.DEFINE_integer(
    "data.resolution", None, "Test image side in pixels (default: the first "
    "run's).")
_DATA_TFDS_DIR = flags.DEFINE_string(
    "data.tfds_dir", None, "Prepared datasets' directory.")
_DATA_SPLIT = flags.DEFINE_enum("data.split", None, data_lib.SPLITS,
                                "Test split (default: the first run's).")
_DATA_NUM = flags.DEFINE_integer(
    "data.num_examples", None, "Evaluate the first N images of the split "
    "(default: the first run's count, or the whole split).")
_CHANNEL_KIND = flags.DEFINE_enum(
    "channel.kind", None, channel_lib.CHANNELS,
    "Test channel for every run (default: the first run's).")
_CHANNEL_FADING = flags.DEFINE_enum(
    "channel.fading", None, channel_lib.FADINGS,
    "Fading: slow (per image), fast (per symbol), block (--channel.coherence).")
_CHANNEL_EQ = flags.DEFINE_enum("channel.equalization", None,
                                channel_lib.EQUALIZATIONS,
                                "Equalisation (learned schemes).")
_CHANNEL_COHERENCE = flags.DEFINE_integer(
    "channel.coherence", None, "Block fading: symbols (OFDM symbols) per "
    "channel realisation.")
_CHANNEL_K = flags.DEFINE_float("channel.k_factor", None,
                                "Rician K-factor (linear).")
_CHANNEL_CSI = flags.DEFINE_enum("channel.csi", None, channel_lib.CSI,
                                 "OFDM receiver CSI: perfect, or estimated "
                                 "from pilots (ls, lmmse).")
_CHANNEL_PDP = flags.DEFINE_string(
    "channel.pdp", None, "OFDM power-delay profile: exponential, tdl-a, "
    "tdl-b, tdl-c.")
_CHANNEL_SPREAD = flags.DEFINE_float(
    "channel.delay_spread", None, "OFDM delay spread in samples.")
_TEST_CHANNELS = flags.DEFINE_multi_string(
    "test_channel", [], "The mismatch grid: test every run on each of these "
    "channels, KIND[:FIELD=VALUE,...] (e.g. awgn, rayleigh:fading=fast, "
    "rician:k_factor=4, ofdm:pdp=tdl-a,csi=ls; docs/channels.md); each "
    "channel's outputs go to OUTPUT_DIR/<channel name>/, all rows to "
    "OUTPUT_DIR/summary.csv and the grid to OUTPUT_DIR/mismatch.md. "
    "Replaces --channel.*.")
_ALLOW_MISMATCH = flags.DEFINE_bool(
    "allow_mismatch", False, "Plot output directories computed on other test "
    "images or another channel (the differences go to evaluation.json).")
_METRICS = flags.DEFINE_list(
    "metrics", None, "Metrics to report, e.g. psnr,ssim,lpips_vgg,dists,fid,"
    "kid (overrides --lpips; PSNR/SSIM are always computed). dists, fid and "
    "kid are computed for the runs swept here (docs/perception-metrics.md).")
_INCEPTION = flags.DEFINE_string(
    "inception_weights", None, "Directory of `python -m weights_convert "
    "inception` (needed for fid/kid).")
_BOOTSTRAP = flags.DEFINE_integer(
    "bootstrap", 100, "Bootstrap replicates of the FID/KID intervals.")
_LPIPS = flags.DEFINE_list("lpips", ["vgg", "alex"],
                           "LPIPS backbones to report (empty to skip LPIPS).")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Evaluation batch size.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_SEED = flags.DEFINE_integer("seed", 1, "Seed of the channel realisations.")


def _compare(runs, test_set, channel, settings, out):
  """One comparison on one test channel; returns its rows."""
  with preemption.abandon_on_signal(
      "the evaluation", f"the runs finished so far are in {out}/runs; "
      "rerun the same command to evaluate them all."):
    rows, record = comparison.collect(runs, test_set, channel, settings, out,
                                      allow_mismatch=_ALLOW_MISMATCH.value)
  if jax.process_index() != 0:
    return rows
  report.write_tables(rows, out)
  with open(os.path.join(out, "evaluation.json"), "w") as f:
    json.dump(record, f, indent=1)
  snrs = list(settings.snrs_db)
  rho_snrs = ([float(s) for s in _RHO_SNRS.value] if _RHO_SNRS.value
              else sorted({min(snrs), max(snrs)}))
  paths = (report.plot_metrics(rows, out) + report.plot_by_rho(rows, out) +
           report.plot_vs_rho(rows, out, rho_snrs) +
           report.plot_perception_distortion(rows, out))
  for metric in dict.fromkeys(r["metric"] for r in rows):
    print(report.format_table(rows, metric), "\n", flush=True)
  for run in record["runs"]:
    if run.get("trained_channel") not in ("", "unknown", channel.name):
      print(f"Note: {run['label']} was trained on {run['trained_channel']} "
            f"and is tested on {channel.name} (channel mismatch).")
  print(f"Wrote {len(paths)} plots, summary.csv/json and evaluation.json to "
        f"{out}", flush=True)
  return rows


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not _RUNS.value or not _OUT.value:
    raise app.UsageError("Pass at least one --run=LABEL=SOURCE and --output_dir.")
  lpips_nets, perception = tuple(_LPIPS.value), None
  if _METRICS.value is not None:
    try:
      lpips_nets, names = perception_lib.parse_metrics(_METRICS.value)
      if names:
        perception = perception_lib.Perception(
            names, inception_weights=_INCEPTION.value,
            num_bootstrap=_BOOTSTRAP.value)
    except (ValueError, FileNotFoundError) as e:
      raise app.UsageError(str(e)) from None
  runs = [comparison.parse_run(v) for v in _RUNS.value]
  try:
    test_channels = [channel_lib.parse(v) for v in _TEST_CHANNELS.value]
  except ValueError as e:
    raise app.UsageError(f"--test_channel: {e}") from e
  test_set, channel = comparison.reference(
      runs, data_overrides={"name": _DATA_NAME.value,
                            "image_dir": _DATA_IMAGE_DIR.value,
                            "resolution": _DATA_RESOLUTION.value,
                            "tfds_dir": _DATA_TFDS_DIR.value},
      channel_overrides={"kind": _CHANNEL_KIND.value,
                         "fading": _CHANNEL_FADING.value,
                         "equalization": _CHANNEL_EQ.value,
                         "coherence": _CHANNEL_COHERENCE.value,
                         "k_factor": _CHANNEL_K.value,
                         "csi": _CHANNEL_CSI.value,
                         "pdp": _CHANNEL_PDP.value,
                         "delay_spread": _CHANNEL_SPREAD.value},
      split=_DATA_SPLIT.value, num_images=_DATA_NUM.value)
  snrs = [float(s) for s in _SNRS.value]
  settings = comparison.Settings(
      snrs_db=tuple(snrs), realisations=_REALISATIONS.value, seed=_SEED.value,
      batch_size=_BATCH.value, lpips_nets=lpips_nets,
      step=_STEP.value, perception=perception)
  channels = test_channels or [channel]
  if jax.process_index() == 0:
    print(f"Test set: {test_set.describe()}; channel: "
          f"{', '.join(c.name for c in channels)}; SNRs "
          f"{', '.join(f'{s:g}' for s in snrs)} dB.", flush=True)
  if not test_channels:
    _compare(runs, test_set, channel, settings, _OUT.value)
    return
  rows = []
  for test_channel in channels:
    rows += _compare(runs, test_set, test_channel, settings,
                     os.path.join(_OUT.value, test_channel.name))
  if jax.process_index() == 0:
    report.write_tables(rows, _OUT.value)
    table = mismatch.markdown(rows, [c.name for c in channels])
    with open(os.path.join(_OUT.value, "mismatch.md"), "w") as f:
      f.write(table)
    print(table, flush=True)


if __name__ == "__main__":
  config_cli.run(main)
