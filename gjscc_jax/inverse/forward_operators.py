"""Forward operators `A` and the data terms InverseJSCC minimises.

InverseJSCC looks for a generator image `G` whose *measurement* `A(G)` looks
like the received DeepJSCC reconstruction `x_hat`:

  `MSE(A(G), x_hat) + lambda * LPIPS(A(G) or G, x_hat)`.

Two operators:

* `'deepjscc'`: the frozen DeepJSCC chain, encoder -> channel -> decoder, at
  the image's SNR. The channel noise inside `A` is drawn afresh at every step
  (`channel_noise='fresh'`, a stochastic estimate of the expected loss over
  channel realisations) or is one fixed realisation per image
  (`channel_noise='fixed'`, a deterministic objective). Neither is the
  realisation that produced `x_hat`, which the receiver does not know.
* `'identity'`: `A(G) = G`; the search then denoises `x_hat` directly.

LPIPS compares `x_hat` with `A(G)` (`lpips_target='operator'`) or with the
generator image itself (`'generator'`, at the image resolution); see
`gjscc_jax.inverse.ilo` for which of them ILO's code computes.

Selecting the returned iterate by a term computed with fresh channel noise
would pick a lucky draw; `selection_terms` scores an image with the image's
fixed channel key instead (and the mean over `draws` keys derived from it).

Resolutions: a generator whose output is `k` times larger than the images is
area-downsampled by `k` before `A` (ILO downsamples the same way, with a
bicubic filter). LPIPS is computed at `lpips_resolution` at most (ILO: 256),
area-downsampling both images when they are larger; the target's LPIPS
features are computed once per image (`prepare_targets`), not every step.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from gjscc_jax.losses import perceptual

OPERATORS = ("deepjscc", "identity")
CHANNEL_NOISE = ("fresh", "fixed")
LPIPS_TARGETS = ("operator", "generator")


def box_downsample(images, factor: int):
  """Area (box-filter) downsampling of `(..., H, W, C)` by an integer."""
  if factor == 1:
    return images
  *lead, h, w, c = images.shape
  if h % factor or w % factor:
    raise ValueError(f"Cannot area-downsample {h}x{w} images by {factor}.")
  images = images.reshape(*lead, h // factor, factor, w // factor, factor, c)
  return jnp.mean(images, axis=(-4, -2))


def integer_factor(larger: int, smaller: int, what: str) -> int:
  """`larger // smaller`, or a clear error when it is not an integer."""
  if larger < smaller or larger % smaller:
    raise ValueError(
        f"{what}: {larger} px must be an integer multiple of {smaller} px.")
  return larger // smaller


@dataclasses.dataclass(frozen=True)
class DataTerms:
  """The data terms of InverseJSCC for one image (a hashable config).

  Attributes:
    operator: 'deepjscc' or 'identity'.
    loss: The `PerceptualLoss` whose MSE and LPIPS are used (its
      `lambda_lpips` only decides whether LPIPS is computed; ILO weighs the
      terms itself).
    generator_resolution: Side of the generator's images.
    image_resolution: Side of the target images (a divisor of the above).
    lpips_resolution: LPIPS is computed at most at this size.
    channel_noise: 'fresh' or 'fixed' (the 'deepjscc' operator only).
    lpips_target: 'operator' (LPIPS(A(G), x_hat)) or 'generator'
      (LPIPS(G, x_hat), `G` area-downsampled to the image size).
    reconstruct: `(params, images, snr_db, key) -> images`, the DeepJSCC
      chain on a batch (`Scheme.reconstruct`); None for 'identity'.
  """
  operator: str
  loss: perceptual.PerceptualLoss
  generator_resolution: int
  image_resolution: int
  lpips_resolution: int = 256
  channel_noise: str = "fresh"
  lpips_target: str = "operator"
  reconstruct: Callable[..., Any] | None = dataclasses.field(
      default=None, repr=False)

  def __post_init__(self):
    if self.operator not in OPERATORS:
      raise ValueError(f"operator={self.operator!r}: use one of {OPERATORS}.")
    if self.channel_noise not in CHANNEL_NOISE:
      raise ValueError(f"channel_noise={self.channel_noise!r}: use one of "
                       f"{CHANNEL_NOISE}.")
    if self.lpips_target not in LPIPS_TARGETS:
      raise ValueError(f"lpips_target={self.lpips_target!r}: use one of "
                       f"{LPIPS_TARGETS}.")
    if self.operator == "deepjscc" and self.reconstruct is None:
      raise ValueError("The 'deepjscc' operator needs `reconstruct`, the "
                       "DeepJSCC chain (Scheme.reconstruct of the trained run).")
    integer_factor(self.generator_resolution, self.image_resolution,
                   "The generator resolution")
    if self.loss.check_inputs:
      raise ValueError("Build the PerceptualLoss with check_inputs=False: the "
                       "run-time range check would sync with the host every "
                       "step. Targets are checked once in prepare_targets.")

  @property
  def _lpips_factor(self) -> int:
    if self.image_resolution <= self.lpips_resolution:
      return 1
    return integer_factor(self.image_resolution, self.lpips_resolution,
                          "The image resolution (for LPIPS)")

  def at_image_size(self, image):
    """The generator image `(R, R, 3)` area-downsampled to the image size."""
    return box_downsample(image, self.generator_resolution //
                          self.image_resolution)

  def measure(self, frozen, image, snr_db, key):
    """`A(G)` of one generator image `(R, R, 3)` -> `(H, W, 3)`."""
    image = self.at_image_size(image)
    if self.operator == "identity":
      return image
    out = self.reconstruct(frozen["deepjscc"], image[None],
                           jnp.reshape(snr_db, (1,)), key)
    return out[0].astype(jnp.float32)

  def prepare_targets(self, frozen, received, snr_db, channel_keys):
    """Per-image targets of a batch (call once, outside the search).

    Args:
      frozen: `{'lpips': params, 'deepjscc': params, ...}`.
      received: The DeepJSCC reconstructions `x_hat`, `(B, H, W, 3)`.
      snr_db: `(B,)` channel SNRs (used by 'deepjscc').
      channel_keys: `(B, ...)` keys of the fixed channel realisation per
        image (used when `channel_noise='fixed'`).

    Returns:
      A pytree with a leading batch axis, as `__call__` expects. Concrete
      `received` images are checked to lie in [-1, 1]; traced ones are not
      (a check would sync with the host).
    """
    if not isinstance(received, jax.core.Tracer):  # No host sync when traced.
      perceptual.check_image_range(received, "InverseJSCC targets")
    small = box_downsample(received, self._lpips_factor)
    prepared = self.loss.prepare_target(frozen.get("lpips"), small)
    return dict(received=received, snr_db=snr_db, channel_key=channel_keys,
                features=prepared.features)

  def _lpips(self, frozen, image, target):
    """LPIPS of one image `(H, W, 3)` against the target's features."""
    small = box_downsample(image, self._lpips_factor)
    features = tuple(f[None] for f in target["features"])
    prepared = perceptual.PerceptualTarget(None, features)
    return self.loss.lpips(frozen["lpips"], small[None], prepared)[0]

  def __call__(self, frozen, image, target, key):
    """`{'mse', 'lpips'}` of one generator image against one target."""
    if self.channel_noise == "fixed":
      key = target["channel_key"]
    measured = self.measure(frozen, image, target["snr_db"], key)
    terms = dict(mse=jnp.mean(jnp.square(measured - target["received"])))
    if self.loss.uses_lpips:
      seen = measured if self.lpips_target == "operator" else (
          self.at_image_size(image))
      terms["lpips"] = self._lpips(frozen, seen, target)
    return terms

  def selection_keys(self, target, draws):
    """The channel keys that score an image: the image's fixed key, then
    `fold_in(fixed key, k)` for `k = 1 .. draws - 1`."""
    key = target["channel_key"]
    return [key] + [jax.random.fold_in(key, k) for k in range(1, draws)]

  def selection_terms(self, frozen, image, target, draws, step_terms,
                      need_lpips=True):
    """`{'mse'[, 'lpips']}` of `image` under fixed channel realisations.

    The mean over `selection_keys(target, draws)`: the same keys at every
    step, so iterates are compared on equal terms. Terms that are already
    deterministic are taken from `step_terms` (the terms of the same image
    from `__call__`): everything for 'identity' or for 'fixed' noise with
    one draw, LPIPS for `lpips_target='generator'`.

    Args:
      frozen, image, target: As for `__call__`.
      draws: Number of channel realisations (>= 1).
      step_terms: `__call__`'s terms of this image at this step.
      need_lpips: Whether the caller needs 'lpips'.
    """
    if self.operator == "identity" or (self.channel_noise == "fixed"
                                       and draws == 1):
      return step_terms
    measured = [self.measure(frozen, image, target["snr_db"], key)
                for key in self.selection_keys(target, draws)]
    terms = dict(mse=jnp.mean(jnp.stack(
        [jnp.mean(jnp.square(m - target["received"])) for m in measured])))
    if need_lpips and self.loss.uses_lpips:
      if self.lpips_target == "generator":
        terms["lpips"] = step_terms["lpips"]
      else:
        terms["lpips"] = jnp.mean(jnp.stack(
            [self._lpips(frozen, m, target) for m in measured]))
    return terms
