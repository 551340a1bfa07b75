"""Transmit, invert and score a batch of images in one jitted function.

For every image of a batch (uint8 originals, one SNR and one global image
index per image) `make_batch_fn` returns a single XLA program that

1. transmits the image with DeepJSCC at its SNR, giving the received
   reconstruction `x_hat` (the InverseJSCC input);
2. runs the ILO search for `G(.)` explaining `x_hat` (`ilo.invert_one`,
   vmapped over the batch);
3. scores the restored image (the best `G(.)`, area-downsampled to the image
   size and clipped) and `x_hat` against the original: PSNR, SSIM, MS-SSIM
   (from 176 px) and LPIPS per image.

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
  """
  generator: Any
  config: ilo.ILOConfig
  terms: forward_operators.DataTerms
  transmit: Callable[..., Any] = dataclasses.field(repr=False)
  metric_losses: tuple[tuple[str, Any], ...] = ()
  seed: int = 0

  def __call__(self, frozen, originals_u8, snr_db, image_index):
    """Transmits, inverts and scores a batch (see the module docstring).

    Args:
      frozen: `{'generator', 'deepjscc', 'lpips', 'metrics': {name: params}}`.
      originals_u8: `(B, H, W, 3)` uint8 images.
      snr_db: `(B,)` float32 channel SNRs.
      image_index: `(B,)` int32 global image indices (for the keys).

    Returns:
      A dict of per-image arrays: 'restored' and 'received' uint8
      `(B, H, W, 3)`; 'inverse/<metric>' and 'deepjscc/<metric>' `(B,)`;
      'best' `(B,)` (the `best_by` term of the restored image); 'terms/<name>'
      `(B, total_steps)` search histories.
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
    result = ilo.batch_inverter(self.generator, self.config, self.terms)(
        frozen, targets, search_key)
    factor = self.generator.resolution // originals.shape[1]
    restored = forward_operators.box_downsample(result.image, factor)
    restored = jnp.clip(restored, pixels.LOW, pixels.HIGH)
    losses = dict(self.metric_losses)
    out = dict(restored=pixels.to_uint8(restored),
               received=pixels.to_uint8(received), best=result.best)
    for prefix, images in (("inverse", restored), ("deepjscc", received)):
      for name, value in _score(images, originals, losses, frozen).items():
        out[f"{prefix}/{name}"] = value
    for name, value in result.terms.items():
      out[f"terms/{name}"] = value
    return out


def make_batch_fn(inverse: InverseJSCC, mesh=None):
  """`inverse` jitted, its batch sharded over `mesh` (frozen replicated).

  The batch size must be a multiple of the mesh's device count. One compile
  per batch shape; SNRs and image indices are traced, so a run over many
  SNRs and images compiles once.
  """
  if mesh is None:
    return jax.jit(inverse)
  from gjscc_jax.train import sharding  # pylint: disable=import-outside-toplevel
  batch = sharding.batch_sharding(mesh)
  repl = sharding.replicated(mesh)
  return jax.jit(inverse, in_shardings=(repl, batch, batch, batch),
                 out_shardings=batch)
