r"""The quick start's figure: DeepJSCC against separation, curves and images.

  python -m experiments.quickstart_figure --run=runs/demo \
      --comparison=runs/demo_vs_separation --out=runs/demo_vs_separation/quickstart.png

Left: PSNR vs SNR of every curve in the comparison's `summary.json` (the
output of `experiments.evaluate` with the DeepJSCC run and the separation
baselines): DeepJSCC degrades gracefully, a separated codec falls off a
cliff where its bitstream no longer fits the channel's capacity. Right: the
first `--num_images` test images of the run's dataset, sent over AWGN at each
SNR of `--snrs_db` by the DeepJSCC run (one channel draw per image and SNR) and
by the `--codec` separation baseline at the run's bandwidth ratio (a lost
image is mid-gray), with each image's PSNR.
"""

import json
import os

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import config_cli
from gjscc_jax import data as data_lib
from gjscc_jax import pixels
from gjscc_jax import separation
from gjscc_jax.train import runs

_RUN = flags.DEFINE_string("run", None, "A DeepJSCC training workdir.")
_COMPARISON = flags.DEFINE_string(
    "comparison", None, "The output directory of `experiments.evaluate` whose "
    "summary.json gives the curves.")
_OUT = flags.DEFINE_string("out", None, "The PNG to write.")
_SNRS = flags.DEFINE_list("snrs_db", ["-5", "0", "5", "10"],
                          "SNRs (dB) of the image columns.")
_CODEC = flags.DEFINE_string("codec", "heif", "Separation codec of the images.")
_CODEC_LABEL = flags.DEFINE_string("codec_label", "HEVC + capacity code",
                                   "Row label of the separation images.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 2, "Test images shown.")
_FIRST_IMAGE = flags.DEFINE_integer("first_image", 0,
                                    "Index of the first test image shown.")


def _psnr(x, y):
  mse = np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2)
  return 10 * np.log10(255.0 ** 2 / max(mse, 1e-10))


def _curves(ax, rows):
  labels = list(dict.fromkeys(r["label"] for r in rows))
  for label in labels:
    pts = sorted((r["snr_db"], r["mean"], r["ci95"]) for r in rows
                 if r["label"] == label and r["metric"] == "psnr")
    snr, mean, ci = (np.asarray(v) for v in zip(*pts))
    ax.plot(snr, mean, marker="o", label=label)
    ax.fill_between(snr, mean - ci, mean + ci, alpha=0.2)
  ax.set_xlabel("channel SNR (dB)")
  ax.set_ylabel("PSNR (dB)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="lower right")


def main(argv):
  del argv
  for flag in (_RUN, _COMPARISON, _OUT):
    if not flag.value:
      config_cli.fail(f"--{flag.name} is required; see --help.")
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  with open(os.path.join(_COMPARISON.value, "summary.json")) as f:
    rows = json.load(f)
  config, scheme, params = runs.load_run(_RUN.value)
  k, first = _NUM_IMAGES.value, _FIRST_IMAGE.value
  batch = next(data_lib.eval_batches(config.data, "test", 8, first + k))
  originals = np.asarray(batch["image"])[first:first + k]
  snrs = [float(s) for s in _SNRS.value]

  deep = {}
  for s in snrs:
    snr_db = jnp.full((k,), s, jnp.float32)
    out = scheme.reconstruct(params, pixels.from_uint8(originals), snr_db,
                             jax.random.PRNGKey(0))
    deep[s] = np.asarray(pixels.to_uint8(out))
  sep = separation.evaluate_images(_CODEC.value, list(originals),
                                   scheme.bandwidth_ratio, snrs,
                                   lpips_nets=(), num_examples=k)
  rho = rows[0]["bcr"] if rows else scheme.bandwidth_ratio

  n_rows, n_cols = 2 * k, len(snrs) + 1
  fig = plt.figure(figsize=(4.2 + 1.25 * n_cols, 0.2 + 1.3 * n_rows))
  grid = fig.add_gridspec(n_rows, n_cols + 3)
  _curves(fig.add_subplot(grid[:, :3]), rows)
  for i in range(k):
    for j, (name, images) in enumerate(
        (("DeepJSCC", deep), (_CODEC_LABEL.value, sep.examples))):
      r = 2 * i + j
      ax = fig.add_subplot(grid[r, 3])
      ax.imshow(originals[i])
      ax.set_xticks([])
      ax.set_yticks([])
      ax.set_ylabel(name, fontsize=8)
      if r == 0:
        ax.set_title("original", fontsize=8)
      for c, s in enumerate(snrs):
        ax = fig.add_subplot(grid[r, 4 + c])
        shown = images[s][i]
        ax.imshow(shown)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{_psnr(originals[i], shown):.1f} dB", fontsize=7,
                      labelpad=1)
        if r == 0:
          ax.set_title(f"SNR {s:g} dB", fontsize=8)
  res = originals.shape[1]
  fig.suptitle(f"{res}×{res} images, ρ = 1/{round(1 / float(rho))} "
               f"({round(float(rho) * res * res * 3)} complex channel uses "
               "per image), AWGN", fontsize=10)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  fig.savefig(_OUT.value, dpi=90)
  plt.close(fig)
  print(_OUT.value)


if __name__ == "__main__":
  config_cli.run(main)
