"""Sweeps a trained scheme over a list of test SNRs and channel realisations.

For every test image, SNR and channel realisation the scheme transmits the
image and the per-image metrics of the reconstruction are kept (PSNR, SSIM,
MS-SSIM where the resolution allows it, and LPIPS when LPIPS weights are
given), so that means and confidence intervals can be formed afterwards.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from gjscc_jax import metrics as metrics_lib
from gjscc_jax import pixels
from gjscc_jax import sharding as sharding_lib

@dataclasses.dataclass
class SweepResult:
  """Per-image metrics of one scheme.

  Attributes:
    values: {snr_db: {metric: float array (num_images * realisations,)}}.
    examples: {snr_db: uint8 array (k, H, W, 3)}: the first k reconstructions
      (first channel realisation), for image grids.
    originals: uint8 array (k, H, W, 3): the matching originals.
  """
  values: dict
  examples: dict
  originals: np.ndarray


def make_eval_fn(scheme, lpips_losses, mesh):
  """A jitted `(params, images_uint8, snr_db, key, lpips_params) -> (recon, metrics)`.

  `lpips_losses` maps a metric name ('lpips_vgg', ...) to a PerceptualLoss
  whose `.lpips(params, x, y)` gives per-image distances.
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
    return pixels.to_uint8(recon), out

  batch = sharding_lib.batch_sharding(mesh)
  repl = sharding_lib.replicated(mesh)
  return jax.jit(evaluate, in_shardings=(repl, batch, repl, repl, repl),
                 out_shardings=(batch, batch))


def sweep(scheme, params, batches, snrs_db, *, key, realisations=1,
          lpips_losses=None, lpips_params=None, mesh=None, num_examples=8,
          progress=None):
  """Runs the SNR sweep; returns a `SweepResult`.

  Args:
    scheme: A `schemes.Scheme`.
    params: Its parameters.
    batches: Iterable of {'image': uint8 (B,H,W,3), 'mask': bool (B,)} with a
      fixed B divisible by the number of devices (padding rows masked out).
    snrs_db: Test SNRs in dB.
    key: PRNG key; realisation r of batch b at SNR s uses fold_in(key, (b,s,r)).
    realisations: Channel realisations per image and SNR.
    lpips_losses: Optional {name: PerceptualLoss} of LPIPS metrics to compute.
    lpips_params: {name: params} matching `lpips_losses`.
    mesh: Device mesh; None builds a data-parallel mesh of all devices.
    num_examples: Reconstructions kept per SNR for image grids.
    progress: Optional callable(n) told of every processed batch.
  """
  mesh = sharding_lib.make_mesh() if mesh is None else mesh
  lpips_losses = lpips_losses or {}
  lpips_params = lpips_params or {}
  eval_fn = make_eval_fn(scheme, lpips_losses, mesh)
  values = {float(s): {} for s in snrs_db}
  examples = {float(s): [] for s in snrs_db}
  originals = []
  for b, batch in enumerate(batches):
    mask = np.asarray(batch["mask"], bool)
    images = sharding_lib.global_batch(batch["image"], mesh)
    if sum(len(o) for o in originals) < num_examples:
      originals.append(np.asarray(batch["image"])[mask])
    for s, snr in enumerate(snrs_db):
      for r in range(realisations):
        k = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(key, b), s), r)
        recon, out = eval_fn(params, images, float(snr), k, lpips_params)
        for name, v in out.items():
          values[float(snr)].setdefault(name, []).append(np.asarray(v)[mask])
        if r == 0 and sum(len(e) for e in examples[float(snr)]) < num_examples:
          examples[float(snr)].append(np.asarray(recon)[mask])
    if progress is not None:
      progress(1)
  values = {s: {m: np.concatenate(v) for m, v in d.items()} for s, d in values.items()}
  cut = lambda xs: (np.concatenate(xs)[:num_examples] if xs
                    else np.zeros((0, 1, 1, 3), np.uint8))
  return SweepResult(values, {s: cut(e) for s, e in examples.items()}, cut(originals))
