"""Sweeps a trained scheme over a list of test SNRs and channel realisations.

For every test image, SNR and channel realisation the scheme transmits the
image and the per-image metrics of the reconstruction are kept (PSNR, SSIM,
MS-SSIM where the resolution allows it, and LPIPS when LPIPS weights are
given), so that means and confidence intervals can be formed afterwards.
"""

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from gjscc_jax import faults
from gjscc_jax import metrics as metrics_lib
from gjscc_jax import pixels
from gjscc_jax import sharding as sharding_lib

@dataclasses.dataclass
class SweepResult:
  """Per-image metrics of one scheme.

  Attributes:
    values: {snr_db: {metric: float array (num_images, realisations)}}: row
      `i` holds the realisations of the image `indices[i]`, so summaries
      average each image's realisations before forming intervals over
      images (`report.mean_ci95`).
    indices: int32 (num_images,): the images' positions in their split,
      ascending.
    examples: {snr_db: uint8 array (k, H, W, 3)}: the first k reconstructions
      (first channel realisation), for image grids.
    originals: uint8 array (k, H, W, 3): the matching originals.
    features: {snr_db: float32 (num_images, 2048)}: FID Inception features
      of the uint8 reconstructions of the first realisation, rows as
      `indices` (empty unless FID/KID were asked for).
    original_features: float32 (num_images, 2048) of the originals, or None.
  """
  values: dict
  indices: np.ndarray
  examples: dict
  originals: np.ndarray
  features: dict = dataclasses.field(default_factory=dict)
  original_features: Optional[np.ndarray] = None


def make_eval_fn(scheme, lpips_losses, mesh, perception=None):
  """A jitted `(params, images_uint8, snr_db, key, lpips_params) -> (recon, metrics)`.

  `lpips_losses` maps a metric name ('lpips_vgg', ...) to a PerceptualLoss
  whose `.lpips(params, x, y)` gives per-image distances; `perception` (an
  `evaluation.perception.Perception`) adds DISTS, its parameters then
  under `lpips_params['perception']`.
  """

  def evaluate(params, images_u8, snr_db, key, lpips_params):
    images = pixels.from_uint8(images_u8)
    snr = jnp.full(images.shape[:1], snr_db, jnp.float32)
    recon = scheme.reconstruct(params, images, snr, key).astype(jnp.float32)
    recon = jnp.clip(recon, pixels.LOW, pixels.HIGH)
    out = dict(psnr=metrics_lib.psnr(recon, images),
               ssim=metrics_lib.ssim(recon, images))
    if min(images.shape[1:3]) >= metrics_lib.ms_ssim_min_size():
      out["ms_ssim"] = metrics_lib.ms_ssim(recon, images)
    for name, loss in lpips_losses.items():
      out[name] = loss.lpips(lpips_params[name], recon, images)
    if perception is not None:
      out.update(perception.per_image(lpips_params["perception"], recon,
                                      images))
    return pixels.to_uint8(recon), out

  batch = sharding_lib.batch_sharding(mesh)
  repl = sharding_lib.replicated(mesh)
  return jax.jit(evaluate, in_shardings=(repl, batch, repl, repl, repl),
                 out_shardings=(batch, batch))


def sweep(scheme, params, batches, snrs_db, *, key, realisations=1,
          lpips_losses=None, lpips_params=None, mesh=None, num_examples=8,
          progress=None, perception=None, perception_params=None):
  """Runs the SNR sweep; returns a `SweepResult` (on every process).

  Multi-process: every process passes its slice of the same global batches
  (`eval_batches` with `gjscc_jax.sharding.process_shard`), so no image is
  transmitted twice; each reads its own rows' metrics back from its own
  devices, and the per-image metrics of all processes are gathered once at
  the end. The result does not depend on the number of processes.

  Args:
    scheme: A `schemes.Scheme`.
    params: Its parameters.
    batches: Iterable of this process's slices of the global batches:
      {'image': uint8 (L, H, W, 3), 'index': int32 (L,) (the image's
      position in the split), 'mask': bool (L,) (False for padding)}, with
      the global batch size divisible by the number of devices.
    snrs_db: Test SNRs in dB.
    key: PRNG key; realisation r of global batch b at SNR s uses
      fold_in(key, (b, s, r)).
    realisations: Channel realisations per image and SNR.
    lpips_losses: Optional {name: PerceptualLoss} of LPIPS metrics to compute.
    lpips_params: {name: params} matching `lpips_losses`.
    mesh: Device mesh; None builds a data-parallel mesh of all devices.
    num_examples: Reconstructions kept per SNR for image grids (those of the
      first images of the split).
    progress: Optional callable(n) told of every processed batch.
    perception: Optional `evaluation.perception.Perception`: DISTS per
      image, and the FID Inception features of `SweepResult.features`.
    perception_params: its `load_params()`.
  """
  mesh = sharding_lib.make_mesh() if mesh is None else mesh
  lpips_losses = lpips_losses or {}
  lpips_params = dict(lpips_params or {})
  if perception is not None:
    lpips_params["perception"] = perception_params
  eval_fn = make_eval_fn(scheme, lpips_losses, mesh, perception)
  features_fn = perception.features_fn() if perception is not None else None
  feature_rows = {}  # index, original, recon/<s>: this process's features.
  snrs = [float(s) for s in snrs_db]
  rows = {}  # Column name -> list of per-batch arrays (this process's rows).
  kept = {}  # The same for the example images.
  image_shape = None

  def add(table, **columns):
    for name, value in columns.items():
      table.setdefault(name, []).append(np.asarray(value))

  for b, batch in enumerate(batches):
    faults.maybe_kill(faults.TERM_AT_EVAL_BATCH, b + 1)
    mask = np.asarray(batch["mask"], bool)
    index = np.asarray(batch["index"], np.int32)[mask]
    images = sharding_lib.global_batch(batch["image"], mesh)
    image_shape = np.shape(batch["image"])[1:]
    n_kept = sum(len(x) for x in kept.get("index", ()))
    keep = max(0, min(num_examples - n_kept, len(index)))
    examples = {}
    for s, snr in enumerate(snrs):
      for r in range(realisations):
        k = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(key, b), s), r)
        recon, out = eval_fn(params, images, snr, k, lpips_params)
        out = {name: sharding_lib.host_local(v)[mask] for name, v in out.items()}
        add(rows, snr_db=np.full(len(index), snr), index=index,
            realisation=np.full(len(index), r, np.int32), **out)
        if r == 0 and keep:
          examples[f"recon/{s}"] = sharding_lib.host_local(recon)[mask][:keep]
        if r == 0 and features_fn is not None:
          feats = features_fn(perception_params, recon)
          add(feature_rows, **{f"recon/{s}": sharding_lib.host_local(
              feats)[mask]})
    if features_fn is not None:
      feats = features_fn(perception_params, images)
      add(feature_rows, index=index,
          original=sharding_lib.host_local(feats)[mask])
    if keep:
      add(kept, index=index[:keep],
          original=np.asarray(batch["image"])[mask][:keep], **examples)
    if progress is not None:
      progress(1)

  columns = sharding_lib.gather_rows(
      {name: np.concatenate(parts) for name, parts in rows.items()})
  order = np.lexsort((columns["realisation"], columns["index"]))
  columns = {name: v[order] for name, v in columns.items()}
  metrics = [n for n in columns if n not in ("snr_db", "index", "realisation")]
  indices = np.unique(columns["index"]).astype(np.int32)
  shape = (len(indices), realisations)
  # Per SNR the rows are sorted by (index, realisation): image-major.
  values = {snr: {m: columns[m][columns["snr_db"] == snr].reshape(shape)
                  for m in metrics} for snr in snrs}
  kept = {name: np.concatenate(parts) for name, parts in kept.items()}
  if not kept:  # This process holds none of the first images.
    shape = (0,) + tuple(image_shape)
    kept = dict(index=np.zeros(0, np.int32), original=np.zeros(shape, np.uint8),
                **{f"recon/{s}": np.zeros(shape, np.uint8)
                   for s in range(len(snrs))})
  kept = sharding_lib.gather_rows(kept)
  first = np.argsort(kept["index"], kind="stable")[:num_examples]
  features, original_features = {}, None
  if features_fn is not None:
    gathered = sharding_lib.gather_rows(
        {name: np.concatenate(parts) for name, parts in feature_rows.items()})
    order = np.argsort(gathered["index"], kind="stable")
    features = {snr: gathered[f"recon/{s}"][order]
                for s, snr in enumerate(snrs)}
    original_features = gathered["original"][order]
  return SweepResult(values, indices, {snr: kept[f"recon/{s}"][first]
                              for s, snr in enumerate(snrs)},
                     kept["original"][first], features, original_features)
