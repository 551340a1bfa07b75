"""Transmit, invert and score a batch of images in one jitted function.

For every image of a batch (uint8 originals, one SNR and one global image
index per image) the function `make_batch_fn` returns

1. transmits the image with DeepJSCC at its SNR, giving the received
   reconstruction `x_hat` (the InverseJSCC input): `InverseJSCC.prepare`;
2. runs the ILO search for `G(.)` explaining `x_hat` (`search.inverter`);
3. scores the restored image (the chosen `G(.)`, area-downsampled to the
   image size and clipped) and `x_hat` against the original: PSNR, SSIM,
   MS-SSIM (from 176 px) and LPIPS per image: `InverseJSCC.score`; with
   `save_latents`, the chosen variables come out too.

Randomness is per image, never per batch: the channel realisation, the noise
maps' initialisation and the keys of every step derive from
`(seed, image index, SNR)` only, so an image's result does not depend on the
batch it lands in, on the batch size, on the device count or on the process
that computes it, and a rerun reproduces it.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from gjscc_jax import metrics as metrics_lib
from gjscc_jax import pixels
from gjscc_jax.inverse import forward_operators
from gjscc_jax.inverse import ilo
from gjscc_jax.inverse import latents as latents_lib
from gjscc_jax.inverse import search

#: Smallest side at which 5-scale MS-SSIM is reported (as in the sweeps).
MS_SSIM_MIN_SIZE = 176
#: Centi-dB resolution with which an SNR enters the per-image PRNG key.
_SNR_KEY_SCALE = 100


def image_keys(seed, image_index, snr_db):
  """The three PRNG keys of one image at one SNR (traceable, per image).

  Returns:
    `(transmit_key, fixed_channel_key, search_key)`, from
    `fold_in(fold_in(PRNGKey(seed), image_index), round(100 * snr_db))`.
  """
  key = jax.random.PRNGKey(seed)
  key = jax.random.fold_in(key, image_index)
  snr_code = jnp.round(snr_db * _SNR_KEY_SCALE).astype(jnp.int32)
  key = jax.random.fold_in(key, snr_code.astype(jnp.uint32))
  transmit, fixed, search = jax.random.split(key, 3)
  return transmit, fixed, search


def _score(images, originals, metric_losses, frozen):
  out = dict(psnr=metrics_lib.psnr(images, originals),
             ssim=metrics_lib.ssim(images, originals))
  if min(images.shape[1:3]) >= MS_SSIM_MIN_SIZE:
    out["ms_ssim"] = metrics_lib.ms_ssim(images, originals)
  for name, loss in metric_losses.items():
    out[name] = loss.lpips(frozen["metrics"][name], images, originals)
  return out


@dataclasses.dataclass(frozen=True)
class InverseJSCC:
  """Everything static about a batch run (hashable).

  Attributes:
    generator: The `LayeredGenerator` prior.
    config: The `ILOConfig` of the search.
    terms: The `DataTerms` (operator, LPIPS, resolutions).
    transmit: `(params, images, snr_db, key) -> images`, the DeepJSCC chain
      (`Scheme.reconstruct` of the trained run), used to make `x_hat`.
    metric_losses: `{'lpips_alex': PerceptualLoss, ...}` scored per image.
    seed: Base seed of every per-image key.
    save_latents: Whether `score` also returns the chosen variables.
  """
  generator: Any
  config: ilo.ILOConfig
  terms: forward_operators.DataTerms
  transmit: Callable[..., Any] = dataclasses.field(repr=False)
  metric_losses: tuple[tuple[str, Any], ...] = ()
  seed: int = 0
  save_latents: bool = False

  def __post_init__(self):
    if self.terms.lpips_target != self.config.lpips_target:
      raise ValueError(
          f"The data terms compute LPIPS on {self.terms.lpips_target!r} but "
          f"the ILO config says lpips_target={self.config.lpips_target!r}; "
          "build DataTerms with lpips_target=config.lpips_target.")

  def prepare(self, frozen, originals_u8, snr_db, image_index):
    """Transmits a batch: `(originals, received, targets, search_keys)`.

    Args:
      frozen: `{'generator', 'deepjscc', 'lpips', 'metrics': {name: params}}`.
      originals_u8: `(B, H, W, 3)` uint8 images.
      snr_db: `(B,)` float32 channel SNRs.
      image_index: `(B,)` int32 global image indices (for the keys).
    """
    originals = pixels.from_uint8(originals_u8)
    tx_key, fixed_key, search_key = jax.vmap(image_keys, (None, 0, 0))(
        self.seed, image_index, snr_db)

    def transmit_one(image, snr, key):
      out = self.transmit(frozen["deepjscc"], image[None], snr[None], key)
      return out[0].astype(jnp.float32)

    received = jax.vmap(transmit_one)(originals, snr_db, tx_key)
    received = jnp.clip(received, pixels.LOW, pixels.HIGH)
    targets = self.terms.prepare_targets(frozen, received, snr_db, fixed_key)
    return originals, received, targets, search_key

  def score(self, frozen, originals, received, result: ilo.Result):
    """The per-image outputs of a finished search.

    Returns:
      A dict of per-image arrays: 'restored' and 'received' uint8
      `(B, H, W, 3)`; 'inverse/<metric>' and 'deepjscc/<metric>' `(B,)`;
      'best' `(B,)` (the selection score of the restored image, NaN for
      'last') and 'best_step' `(B,)`; 'terms/<name>' `(B, total_steps)`
      search histories; with `save_latents`, 'latents/<name>' (see
      `latents.latent_arrays`).
    """
    factor = self.generator.resolution // originals.shape[1]
    restored = forward_operators.box_downsample(result.image, factor)
    restored = jnp.clip(restored, pixels.LOW, pixels.HIGH)
    losses = dict(self.metric_losses)
    out = dict(restored=pixels.to_uint8(restored),
               received=pixels.to_uint8(received), best=result.best,
               best_step=result.best_step)
    for prefix, images in (("inverse", restored), ("deepjscc", received)):
      for name, value in _score(images, originals, losses, frozen).items():
        out[f"{prefix}/{name}"] = value
    for name, value in result.terms.items():
      out[f"terms/{name}"] = value
    if self.save_latents:
      for name, value in latents_lib.latent_arrays(
          self.config, frozen, result.variables).items():
        out[f"latents/{name}"] = value
    return out


def make_batch_fn(inverse: InverseJSCC, mesh=None, loop="auto"):
  """`(frozen, originals_u8, snr_db, image_index) -> outputs` of a batch.

  Three jitted stages, `prepare`, the search (`search.inverter` with
  `loop`) and `score`, the batch sharded over `mesh` (frozen replicated);
  the batch size must then be a multiple of the mesh's device count. Each
  stage compiles once per batch shape; SNRs and image indices are traced,
  so a run over many SNRs and images compiles once. Every call is
  asynchronous: the host first waits when it reads the outputs.
  """
  prepare = search.jit_batched(mesh, inverse.prepare, (False, True, True,
                                                       True))
  score = search.jit_batched(mesh, inverse.score, (False,) + (True,) * 3)
  find = search.inverter(inverse.generator, inverse.config, inverse.terms,
                         mesh, loop)

  def batch_fn(frozen, originals_u8, snr_db, image_index):
    originals, received, targets, keys = prepare(frozen, originals_u8, snr_db,
                                                 image_index)
    result = find(frozen, targets, keys)
    return score(frozen, originals, received, result)
  return batch_fn
