"""DISTS, FID and KID in evaluation sweeps (`experiments.evaluate --metrics`).

* ``dists`` is a per-image metric like LPIPS: computed on each clipped
  reconstruction against its original, summarised with the Student-t
  interval over images (`report.mean_ci95`).
* ``fid`` and ``kid`` compare distributions, so they are computed once per
  (run, SNR) over all test images: the FID Inception pool features of the
  uint8 reconstructions of the first channel realisation (as saved images
  would be scored) against those of the originals. Their rows carry the
  value as ``mean``, half the 95% percentile-bootstrap interval over test
  images as ``ci95`` (`gjscc_jax.perception.distribution`), the interval's
  ends as ``ci_low``/``ci_high``, and for KID the standard deviation over
  subsets as ``kid_subset_std``.

Metric names: `METRICS`; LPIPS is named ``lpips_vgg``/``lpips_alex`` as in
the summary rows; PSNR and SSIM (and MS-SSIM where the images are large
enough) are always computed.
"""

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from gjscc_jax import pixels

#: Per-image perceptual metrics, and distribution metrics.
PER_IMAGE = ("dists",)
DISTRIBUTION = ("fid", "kid")
#: Every name `--metrics` accepts.
ALWAYS = ("psnr", "ssim", "ms_ssim")
LPIPS_PREFIX = "lpips_"
METRICS = ALWAYS + ("lpips_vgg", "lpips_alex") + PER_IMAGE + DISTRIBUTION


def parse_metrics(names):
  """Splits `--metrics` names into ``(lpips_nets, perception_names)``.

  Raises:
    ValueError: naming the accepted metrics, for an unknown name.
  """
  names = [n.strip() for n in names if n.strip()]
  unknown = [n for n in names if n not in METRICS]
  if unknown:
    raise ValueError(f"--metrics: unknown {', '.join(unknown)}; choose from "
                     f"{','.join(METRICS)}.")
  nets = tuple(n[len(LPIPS_PREFIX):] for n in names
               if n.startswith(LPIPS_PREFIX))
  return nets, tuple(n for n in PER_IMAGE + DISTRIBUTION if n in names)


@dataclasses.dataclass(frozen=True)
class Perception:
  """Which perceptual metrics a sweep computes, and their settings.

  Attributes:
    names: a subset of ``('dists', 'fid', 'kid')``.
    inception_weights: the directory ``python -m weights_convert
      inception`` wrote (needed for 'fid' and 'kid').
    dists_weights: DISTS alpha/beta (default: the installed dists-pytorch
      wheel's file).
    num_bootstrap: bootstrap replicates of the FID/KID intervals.
    seed: seed of the bootstrap and of KID's subsets.
  """
  names: tuple = ()
  inception_weights: Optional[str] = None
  dists_weights: Optional[str] = None
  num_bootstrap: int = 100
  seed: int = 0

  def __post_init__(self):
    unknown = set(self.names) - set(PER_IMAGE + DISTRIBUTION)
    if unknown:
      raise ValueError(f"unknown perceptual metrics {sorted(unknown)}.")
    if self.distribution:
      from gjscc_jax.perception import inception_weights  # pylint: disable=import-outside-toplevel
      if not self.inception_weights:
        raise FileNotFoundError(inception_weights.missing_weights_message())
      inception_weights.weights_file(self.inception_weights)

  @property
  def distribution(self) -> tuple:
    return tuple(n for n in DISTRIBUTION if n in self.names)

  def load_params(self):
    """``{'dists': ..., 'inception': ...}`` as device arrays (those needed)."""
    params = {}
    if "dists" in self.names:
      from gjscc_jax.losses import dists_weights  # pylint: disable=import-outside-toplevel
      params["dists"] = dists_weights.load_dists_params(self.dists_weights)
    if self.distribution:
      from gjscc_jax.perception import inception_weights  # pylint: disable=import-outside-toplevel
      params["inception"] = inception_weights.load_inception_params(
          self.inception_weights)
    return jax.tree.map(jnp.asarray, params)

  def per_image(self, params, recon, images):
    """``{'dists': (B,)}`` of [-1, 1] reconstructions and originals
    (traceable; empty without 'dists')."""
    if "dists" not in self.names:
      return {}
    from gjscc_jax.losses import dists  # pylint: disable=import-outside-toplevel
    return {"dists": dists.DISTS().apply({"params": params["dists"]}, recon,
                                         images)}

  def features_fn(self):
    """A jitted ``(params, images_u8) -> (B, 2048)`` float32 of the FID
    Inception, or None without 'fid'/'kid'."""
    if not self.distribution:
      return None
    from gjscc_jax.perception import inception  # pylint: disable=import-outside-toplevel
    model = inception.FIDInceptionV3()

    def features(params, images_u8):
      return model.apply({"params": params["inception"]},
                         pixels.from_uint8(images_u8))
    return jax.jit(features)

  def rows(self, features, original_features, **columns):
    """Summary rows of FID/KID per SNR.

    Args:
      features: ``{snr_db: (N, 2048)}`` of the reconstructions.
      original_features: ``(N, 2048)`` of the originals, row ``i`` pairing
        with row ``i`` of each reconstruction set.
      **columns: the rows' other columns (``scheme``, ``label``, ``bcr``,
        ``channel``, ...).

    Returns:
      One row per SNR (ascending) and metric, with ``mean`` (the value),
      ``ci95`` (half the bootstrap interval), ``n``, ``ci_low``,
      ``ci_high``, ``interval`` and for KID ``kid_subset_std``.
    """
    from gjscc_jax.perception import distribution  # pylint: disable=import-outside-toplevel
    compute = {"fid": distribution.fid_interval,
               "kid": distribution.kid_interval}
    rows = []
    for snr in sorted(features):
      for name in self.distribution:
        est = compute[name](features[snr], original_features,
                            num_bootstrap=self.num_bootstrap, seed=self.seed)
        row = dict(columns, snr_db=float(snr), metric=name, mean=est.value,
                   ci95=est.half_width, n=est.n, ci_low=est.low,
                   ci_high=est.high,
                   interval=f"95% percentile bootstrap over images "
                            f"({est.num_bootstrap} replicates)")
        if name == "kid":
          row["kid_subset_std"] = est.spread
        rows.append(row)
    return rows

