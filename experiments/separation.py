r"""The separation baseline: a standard codec over an ideal channel code.

  python -m experiments.separation --codec=heif --data=sample --resolution=64 \
      --rho=1/192 --snrs_db=-5,-3,-1,0,1,3,5 --output_dir=runs/separation_heif

Every test image is coded with --codec at the highest quality whose payload
fits the bit budget of an ideal channel code over k = rho * H * W * 3 complex
channel uses (AWGN: k log2(1 + SNR); --channel=rayleigh --fading=fast: the
ergodic capacity; --fading=slow: outage at the rate of --outage, or, without
it, the rate that maximises each image's expected PSNR); lost images are shown
as the --fallback image. See gjscc_jax/separation/ for the codecs and the
bytes they count.

--link=ldpc replaces the ideal code with the practical one (see
gjscc_jax/digital/): 5G NR LDPC and QAM over the same channel, one curve per
--mcs, and the envelope with the MCS per SNR chosen on --selection_images
images of --selection_split (never the test images):

  python -m experiments.separation --link=ldpc --codec=heif --data=sample \
      --resolution=64 --rho=1/12 --snrs_db=-5,0,5,10 --output_dir=runs/ldpc_heif

With --link=ldpc the summary files hold the envelope (what
`experiments.evaluate` reads); mcs/summary.csv|json and mcs/*_vs_snr.png hold
every MCS's curve and digital.json the MCS chosen per SNR.

Written to --output_dir (`gjscc_jax/separation/outputs.py`): summary.csv
and summary.json (mean and 95% confidence interval over images per SNR and
metric, with loss_rate and bits_used), one PNG per metric vs SNR,
grid_separation.png (originals vs received images per SNR), per_image.npz
(quality index, payload bits, budget, lost, per SNR) and run_config.json
(the settings: `python -m experiments.evaluate --run=LABEL=OUTPUT_DIR` checks
them against its test images and channel and plots the curve with the
other schemes'). One run at a time writes --output_dir, and a directory
holding another kind of output (a training workdir, InverseJSCC results)
is refused. SIGTERM/SIGINT abandons the search, writes nothing and exits
with status 75.
"""

from absl import app
from absl import flags
import numpy as np

from experiments import config_cli
from gjscc_jax import channel as channel_lib
from gjscc_jax import data as data_lib
from gjscc_jax import digital
from gjscc_jax import preemption
from gjscc_jax import results as report
from gjscc_jax import run_record
from gjscc_jax import separation
from gjscc_jax import workdir_lock

_CODEC = flags.DEFINE_enum("codec", "heif", separation.CODECS,
                           "Source codec.")
_DATA = flags.DEFINE_enum("data", "sample", data_lib.DATASET_NAMES,
                          "Dataset name (data.name).")
_IMAGE_DIR = flags.DEFINE_string("image_dir", None,
                                 "Image folder (for ffhq, celebahq, image_folder).")
_TFDS_DIR = flags.DEFINE_string("tfds_dir", None,
                                "Prepared datasets' directory (default TFDS's).")
_RESOLUTION = flags.DEFINE_integer("resolution", 256, "Image side in pixels.")
_SPLIT = flags.DEFINE_enum("split", "test", data_lib.SPLITS, "Data split.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", None,
                                   "First N images of the split (all if unset).")
_BCR = flags.DEFINE_string("rho", "1/192", "Bandwidth ratio rho = k / n "
                           "(--bcr: its old name).")
_SNRS = flags.DEFINE_list("snrs_db", ["-5", "-3", "-1", "0", "1", "3", "5"],
                          "Test SNRs in dB.")
_CHANNEL = flags.DEFINE_enum("channel", "awgn", channel_lib.CHANNELS, "Channel.")
_FADING = flags.DEFINE_enum("fading", "slow", channel_lib.FADINGS,
                            "Rayleigh fading: slow (outage) or fast (ergodic).")
_OUTAGE = flags.DEFINE_float(
    "outage", None, "Slow fading: code at the rate of this outage probability; "
    "unset: per image, the rate maximising the expected PSNR.")
_REALISATIONS = flags.DEFINE_integer(
    "realisations", 16, "Slow fading: fading draws per image and SNR.")
_LPIPS = flags.DEFINE_list("lpips", ["alex"],
                           "LPIPS backbones to report (empty to skip LPIPS).")
_FALLBACK = flags.DEFINE_enum("fallback", "gray", ["gray", "train_mean"],
                              "Image shown when an image is lost.")
_EXHAUSTIVE = flags.DEFINE_bool(
    "exhaustive", False, "Encode every codec quality per image (exact highest "
    "fitting quality) instead of a binary search over the quality.")
_HEADERS = flags.DEFINE_enum(
    "headers", "stream", ["stream", "shared"],
    "Payload accounting: 'stream' counts the whole coded stream; 'shared' "
    "does not count stream headers identical for every image of the size "
    "(parameter sets, J2K main header), as if the receiver held them.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the fading draws.")
_LABEL = flags.DEFINE_string("label", None,
                             "Label of the rows (default e.g. 'HEIF (capacity)').")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Images per metric batch.")
_EXAMPLES = flags.DEFINE_integer("num_examples", 8, "Images in the grid.")
_OUT = flags.DEFINE_string("output_dir", None, "Where to write the results.")
_LINK = flags.DEFINE_enum(
    "link", "capacity", digital.LINKS, "Channel code: 'capacity' (ideal) or "
    "'ldpc' (5G NR LDPC + QAM, gjscc_jax/digital/).")
_MCS = flags.DEFINE_list(
    "mcs", list(digital.mcs.DEFAULT), "--link=ldpc: MCSs, 'T:I' (TS 38.214 "
    "table T in {1, 3}, index I) or 'Qm/R1024' (e.g. 2/30).")
_SELECTION = flags.DEFINE_string(
    "selection", "psnr", "--link=ldpc: the envelope's MCS per SNR: 'psnr' "
    "(best mean PSNR on the held-out images) or 'bler:EPS' (highest rate "
    "with held-out loss rate <= EPS).")
_SELECTION_SPLIT = flags.DEFINE_enum(
    "selection_split", "train", data_lib.SPLITS,
    "--link=ldpc: split of the held-out images the MCS is chosen on.")
_SELECTION_IMAGES = flags.DEFINE_integer(
    "selection_images", 8, "--link=ldpc: held-out images for the MCS choice.")
_DECODER = flags.DEFINE_enum(
    "decoder", "sum-product", digital.ldpc_decode.ALGORITHMS,
    "--link=ldpc: BP check-node rule.")
_ITERATIONS = flags.DEFINE_integer("iterations", 20,
                                   "--link=ldpc: most BP iterations.")
_DEMAPPING = flags.DEFINE_enum("demapping", "app", digital.qam.DEMAPPINGS,
                               "--link=ldpc: soft demapping.")
_EQUALIZATION = flags.DEFINE_enum(
    "equalization", "mmse", channel_lib.EQUALIZATIONS,
    "--link=ldpc, Rayleigh: the receiver's equaliser.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not _OUT.value:
    raise app.UsageError("Pass --output_dir.")
  out = _OUT.value
  workdir_lock.check_kind(out, run_record.SEPARATION)
  with workdir_lock.DirectoryLock(out, "separation run"):
    _run(out)


def _run(out):
  """`main` once --output_dir is locked."""
  config = data_lib.default_data_config()
  config.name = _DATA.value
  config.resolution = _RESOLUTION.value
  config.image_dir = _IMAGE_DIR.value
  config.tfds_dir = _TFDS_DIR.value
  if _LINK.value == "ldpc":
    with preemption.abandon_on_signal(
        "the separation baseline over 5G LDPC",
        f"nothing was written to {out}; rerun the same command."):
      return _main_ldpc(config)
  total = _NUM_IMAGES.value or len(data_lib.get_data_source(config, _SPLIT.value))
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  with tqdm(total=total, desc=f"separation:{_CODEC.value}", unit="img",
            dynamic_ncols=True) as bar, preemption.abandon_on_signal(
                "the separation baseline's codec search",
                f"nothing was written to {out}; rerun the same command."):
    result = separation.evaluate(
        _CODEC.value, config, _SPLIT.value, _NUM_IMAGES.value, _BCR.value,
        [float(s) for s in _SNRS.value], channel=_CHANNEL.value,
        fading=_FADING.value, outage=_OUTAGE.value,
        realisations=_REALISATIONS.value, lpips_nets=_LPIPS.value,
        fallback=_FALLBACK.value, seed=_SEED.value,
        exhaustive=_EXHAUSTIVE.value, headers=_HEADERS.value,
        label=_LABEL.value,
        num_examples=_EXAMPLES.value, batch_size=_BATCH.value,
        progress=bar.update)
  settings = separation.run_settings(
      _CODEC.value, config, _SPLIT.value, len(result.indices), _BCR.value,
      _SNRS.value, channel=_CHANNEL.value, fading=_FADING.value,
      outage=_OUTAGE.value, realisations=_REALISATIONS.value,
      lpips_nets=_LPIPS.value, fallback=_FALLBACK.value, seed=_SEED.value,
      exhaustive=_EXHAUSTIVE.value, headers=_HEADERS.value)
  paths = separation.write_outputs(result, out, settings)
  for metric in dict.fromkeys(r["metric"] for r in result.rows):
    print(report.format_table(result.rows, metric), "\n", flush=True)
  grid = ["grid_separation.png"] if result.originals.size else []
  print("Wrote", ", ".join(paths), "summary.csv/json,", *grid,
        "per_image.npz, run_config.json and run.json to", out)


def _images(config, split, num_images):
  for batch in data_lib.eval_batches(config, split, 16, num_images):
    for image, index, keep in zip(batch["image"], batch["index"],
                                  batch["mask"]):
      if keep:
        yield int(index), np.asarray(image)


def _main_ldpc(config):
  """--link=ldpc: the codec over 5G LDPC + QAM, per MCS and the envelope."""
  try:
    digital.check_selection(_SELECTION.value)
    digital.mcs.parse_all(_MCS.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  if _FALLBACK.value != "gray":
    raise app.UsageError("--link=ldpc shows lost images as mid-gray; drop "
                         "--fallback.")
  test = list(_images(config, _SPLIT.value, _NUM_IMAGES.value))
  held = (list(_images(config, _SELECTION_SPLIT.value,
                       _SELECTION_IMAGES.value))
          if len(_MCS.value) > 1 else [])
  receiver = digital.Receiver(algorithm=_DECODER.value,
                              num_iter=_ITERATIONS.value,
                              demapping=_DEMAPPING.value,
                              equalization=_EQUALIZATION.value)
  result = digital.evaluate_images(
      _CODEC.value, [im for _, im in test], _BCR.value,
      [float(s) for s in _SNRS.value], indices=[i for i, _ in test],
      held_out=[im for _, im in held], held_out_indices=[i for i, _ in held],
      mcs=_MCS.value, selection=_SELECTION.value, channel=_CHANNEL.value,
      fading=_FADING.value, realisations=_REALISATIONS.value,
      receiver=receiver, lpips_nets=_LPIPS.value, seed=_SEED.value,
      headers=_HEADERS.value, num_examples=_EXAMPLES.value,
      batch_size=_BATCH.value, label_prefix=_LABEL.value)
  settings = separation.run_settings(
      _CODEC.value, config, _SPLIT.value, len(test), _BCR.value, _SNRS.value,
      channel=_CHANNEL.value, fading=_FADING.value, outage=None,
      realisations=_REALISATIONS.value, lpips_nets=_LPIPS.value,
      fallback="gray", seed=_SEED.value, exhaustive=False,
      headers=_HEADERS.value)
  settings["link"] = dict(
      kind="ldpc", mcs=list(_MCS.value), selection=_SELECTION.value,
      selection_split=_SELECTION_SPLIT.value,
      selection_images=len(held), decoder=_DECODER.value,
      iterations=_ITERATIONS.value, demapping=_DEMAPPING.value,
      equalization=_EQUALIZATION.value)
  out = _OUT.value
  separation.write_outputs(result.envelope, out, settings)
  digital.write_outputs(result, out)
  print(report.format_table(result.envelope.rows, "psnr"), "\n")
  print("MCS per SNR (chosen on held-out images):", result.chosen)
  print("Wrote the envelope (summary.csv/json), mcs/ (every MCS) and "
        "digital.json to", out)


if __name__ == "__main__":
  config_cli.run(main)
