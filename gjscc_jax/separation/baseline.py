"""Separate source-channel coding: a standard codec over an ideal channel code.

For every test image and SNR the transmitter encodes the image with a standard
codec (`codecs`) at the highest quality whose payload fits the bit budget of
an ideal channel code (`capacity`, `search`); the receiver decodes it, or, when
the image is lost, shows a fixed fallback image known in advance (mid-gray, or
a dataset's mean image). Lost images count in every metric and in the loss
rate. With `k = rho * H * W * 3` complex channel uses per image:

* `channel='awgn'`: budget `floor(k log2(1 + snr))`; an image is lost only
  when even the codec's lowest quality exceeds it.
* `channel='rayleigh', fading='fast'`: budget `floor(k * C_erg(snr))`, the
  ergodic capacity; lost as for AWGN.
* `channel='rayleigh', fading='slow'`: the transmitter codes at a rate `R`
  without knowing `h`; the image, `b <= R` bits, is lost when
  `k log2(1 + |h|^2 snr) < b` (outage). With `outage=eps`, `R` is the rate of
  outage probability `eps` (`capacity.rate_for_outage`). With `outage=None`,
  the transmitter picks for each image and SNR, among the rates of the
  outage probabilities in `capacity.OUTAGE_GRID`, the one that maximises the
  image's expected PSNR `(1 - P_out(b)) PSNR(decoded) + P_out(b)
  PSNR(fallback)` (it knows its own image and the fading law, not `h`). The
  reported metrics are averaged over `realisations` seeded draws of `h` per
  image and SNR (`capacity.fading_power`).

AWGN and fast fading are deterministic given the budget, so they use one
realisation whatever `realisations` is.

Results are summary rows `(scheme, label, bcr, snr_db, metric, mean, ci95, n)`
like every other scheme's (`gjscc_jax.results`), with
`scheme='separation'`, the image metrics (PSNR, SSIM, MS-SSIM when the images
have at least 176 pixels a side, LPIPS per backbone) and two more metrics:
`loss_rate` (fraction of lost images) and `bits_used` (mean payload bits sent
per image, 0 for images not sent), plus per-image arrays.
"""

import dataclasses
import functools
import itertools
from typing import Callable, Iterable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gjscc_jax import channel as channel_lib
from gjscc_jax import metrics as metrics_lib
from gjscc_jax import pixels
from gjscc_jax import results as report
from gjscc_jax.separation import capacity
from gjscc_jax.separation import codecs as codecs_lib
from gjscc_jax.separation import search as search_lib

SCHEME = "separation"
#: Quality index of the fallback image in per-image results.
FALLBACK = search_lib.NOT_SENT
#: PSNR used in the slow-fading rate choice for an exact reconstruction.
_PSNR_CAP = 100.0


@dataclasses.dataclass
class ImagePlan:
  """What the transmitter sends for one image, per SNR, and what arrives.

  Attributes:
    quality: int64 `(S,)` codec quality index per SNR, or `FALLBACK` when not
      sent.
    bits: int64 `(S,)` payload bits sent (0 when not sent).
    budget: int64 `(S,)` the rate `R` the image was coded for, in bits.
    lost: bool `(S, R)` per SNR and channel realisation.
  """
  quality: np.ndarray
  bits: np.ndarray
  budget: np.ndarray
  lost: np.ndarray


@dataclasses.dataclass
class SeparationResult:
  """Summary rows and per-image results of one separation sweep.

  Attributes:
    rows: summary rows (dicts with `report.FIELDS`), metrics plus `loss_rate`
      and `bits_used`; `n` is the number of images (each image's fading
      realisations are averaged first, `report.mean_ci95`).
    label: the rows' label, e.g. 'HEIF (capacity)'.
    k: complex channel uses per image.
    indices: int `(N,)` positions of the images in their split.
    values: `{snr_db: {metric: float64 (N * R,)}}`, image-major (the `R`
      realisations of image 0 first).
    quality: `{snr_db: int64 (N,)}` codec quality indices (`FALLBACK`: not
      sent).
    bits: `{snr_db: int64 (N,)}` payload bits sent.
    budget: `{snr_db: int64 (N,)}` rate coded for, in bits.
    lost: `{snr_db: bool (N, R)}`.
    examples: `{snr_db: uint8 (m, H, W, 3)}` what the receiver shows for the
      first `m` images (first realisation).
    originals: uint8 `(m, H, W, 3)`.
  """
  rows: list
  label: str
  k: float
  indices: np.ndarray
  values: dict
  quality: dict
  bits: dict
  budget: dict
  lost: dict
  examples: dict
  originals: np.ndarray


def default_label(codec, channel="awgn", fading="slow", outage=None):
  """'HEIF (capacity)', 'HEIF (ergodic)', 'HEIF (outage 0.1)', ...

  Codecs with `headers='shared'` get ', shared headers' inside the brackets.
  """
  link = capacity.link_of(channel, fading)
  if link.kind == "awgn":
    mode = "capacity"
  elif not capacity.is_random(link):
    mode = "ergodic"
  elif outage is None:
    mode = "outage, best rate"
  else:
    mode = f"outage {outage:g}"
  if codec.headers == "shared":
    mode += ", shared headers"
  return f"{codec.display_name} ({mode})"


def fallback_image(fallback, shape):
  """The uint8 image shown for a lost image: 'gray' (128) or a given image."""
  if isinstance(fallback, str):
    if fallback != "gray":
      raise ValueError(f"fallback={fallback!r}: use 'gray' or a uint8 image "
                       "(e.g. separation.mean_image(...)).")
    return np.full(shape, 128, np.uint8)
  fallback = np.asarray(fallback)
  if fallback.shape != tuple(shape) or fallback.dtype != np.uint8:
    raise ValueError(f"The fallback image must be uint8 {tuple(shape)}; got "
                     f"{fallback.dtype} {fallback.shape}.")
  return fallback


def _psnr_np(x, y):
  mse = np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2)
  return _PSNR_CAP if mse == 0 else min(10 * np.log10(255.0**2 / mse),
                                        _PSNR_CAP)


def plan_image(search, k, snrs_db, *, channel="awgn", fading="slow",
               outage=None, realisations=1, seed=0, index=0,
               fallback="gray") -> ImagePlan:
  """Chooses the codec quality per SNR and draws the channel's outcome.

  Args:
    search: a `search.QualitySearch` over the image.
    k: complex channel uses per image.
    snrs_db: the SNRs in dB, `(S,)`.
    channel: a `gjscc_jax.channel.Channel` (or the older 'awgn' /
      'rayleigh' with `fading`, 'slow' or 'fast').
    fading: the older form's fading.
    outage: slow fading: the outage probability to code at, or None to pick
      the rate maximising the expected PSNR (see the module docstring).
    realisations: slow fading: draws of `h` per SNR (others use 1).
    seed: seed of the fading draws.
    index: the image's position in its split (seeds its draws).
    fallback: 'gray' or a uint8 image (for the expected PSNR of a loss).

  Returns:
    An `ImagePlan`.
  """
  link = capacity.link_of(channel, fading)
  snrs = [float(s) for s in snrs_db]
  if not capacity.is_random(link):
    budget = np.array([capacity.bit_budget(k, s, link)
                       for s in snrs], np.int64)
    quality = search.best_fitting_many(budget)
    bits = np.array([search.bits(q) for q in quality], np.int64)
    return ImagePlan(quality, bits, budget, (bits == 0)[:, None])
  epsilons = (outage,) if outage is not None else capacity.OUTAGE_GRID
  rates = np.array([[capacity.rate_for_outage(k, s, e, link)
                     for e in epsilons]
                    for s in snrs], np.int64)
  candidates = search.best_fitting_many(rates.ravel()).reshape(rates.shape)
  quality = candidates[:, 0].copy()
  budget = rates[:, 0].copy()
  if outage is None:
    fb_psnr = _psnr_np(fallback_image(fallback, search.image.shape),
                       search.image)
    for i, snr in enumerate(snrs):
      expected = []
      for q in candidates[i]:
        if q == FALLBACK:
          expected.append(fb_psnr)
          continue
        p_out = float(capacity.outage_of(link, search.bits(q), k, snr))
        expected.append((1 - p_out) * _psnr_np(search.decoded(q), search.image)
                        + p_out * fb_psnr)
      best = int(np.argmax(expected))
      quality[i], budget[i] = candidates[i, best], rates[i, best]
  bits = np.array([search.bits(q) for q in quality], np.int64)
  lost = np.stack([
      capacity.in_outage_of(link, b, k, s, capacity.realised_draws(
          link, seed, index, s, realisations, k))
      for b, s in zip(bits, snrs)])
  return ImagePlan(quality, bits, budget, lost)


@functools.lru_cache(maxsize=None)
def _metric_fn(lpips_nets, with_ssim, with_ms_ssim):
  """A jitted `(lpips_params, originals_u8, shown_u8) -> {metric: (B,)}`.

  Cached, so every sweep of a process with the same metrics and image shape
  reuses one compilation.
  """
  from gjscc_jax.losses import PerceptualLoss
  losses = {f"lpips_{net}": PerceptualLoss(lambda_lpips=1.0, net=net)
            for net in lpips_nets}

  def measure(params, originals, shown):
    x, y = pixels.from_uint8(shown), pixels.from_uint8(originals)
    out = {"psnr": metrics_lib.psnr(x, y)}
    if with_ssim:
      out["ssim"] = metrics_lib.ssim(x, y)
    if with_ms_ssim:
      out["ms_ssim"] = metrics_lib.ms_ssim(x, y)
    for name, loss in losses.items():
      out[name] = loss.lpips(params[name], x, y)
    return out

  return jax.jit(measure)


@functools.lru_cache(maxsize=None)
def _lpips_params(net):
  from gjscc_jax.losses import PerceptualLoss
  return PerceptualLoss(lambda_lpips=1.0, net=net).load_params()


class _Metrics:
  """Per-image metrics of (original, shown image) pairs, in fixed-size batches.

  `add(key, original, shown)` queues a pair; full batches are measured at
  once (one jitted function, one shape); `finish()` measures the rest (padded)
  and returns `{key: {metric: float}}`.
  """

  def __init__(self, lpips_nets, image_shape, batch_size):
    from gjscc_jax.losses import lpips as lpips_lib
    side = min(image_shape[:2])
    nets = tuple(filter(None, lpips_nets))  # `--lpips=` gives ('',)
    for net in nets:
      if side < lpips_lib.min_image_size(net):
        raise ValueError(
            f"LPIPS-{net} needs images of at least "
            f"{lpips_lib.min_image_size(net)} pixels a side; these are "
            f"{image_shape[0]}x{image_shape[1]}. Pass lpips_nets=() (--lpips=) "
            "or use larger images.")
    self.params = {f"lpips_{net}": _lpips_params(net) for net in nets}
    self._fn = _metric_fn(nets, side >= metrics_lib.WINDOW_SIZE,
                          side >= metrics_lib.ms_ssim_min_size())
    self.batch_size = batch_size
    self.queue, self.results = [], {}

  def add(self, key, original, shown):
    self.queue.append((key, original, shown))
    if len(self.queue) >= self.batch_size:
      self._flush()

  def _flush(self):
    if not self.queue:
      return
    batch, self.queue = self.queue, []
    pad = [batch[0]] * (self.batch_size - len(batch))
    originals = np.stack([b[1] for b in batch + pad])
    shown = np.stack([b[2] for b in batch + pad])
    out = jax.device_get(self._fn(self.params, jnp.asarray(originals),
                                  jnp.asarray(shown)))
    for i, (key, _, _) in enumerate(batch):
      self.results[key] = {m: float(v[i]) for m, v in out.items()}

  def finish(self):
    self._flush()
    return self.results


def evaluate_images(codec, images: Iterable, bcr, snrs_db, *,
                    indices: Optional[Iterable[int]] = None, channel="awgn",
                    fading="slow", outage=None, realisations=1,
                    lpips_nets=("alex",), fallback="gray", seed=0,
                    exhaustive=False, headers="stream", label=None,
                    num_examples=8, batch_size=16,
                    progress: Optional[Callable[[int], None]] = None
                    ) -> SeparationResult:
  """Runs the separation baseline over images; see the module docstring.

  Args:
    codec: a codec name (`codecs.CODECS`) or a `codecs.Codec`.
    images: uint8 images `(H, W, 3)` of one shape (any iterable, consumed
      once).
    bcr: bandwidth ratio `rho` (`'1/192'`, a number or a Fraction).
    snrs_db: test SNRs in dB.
    indices: the images' positions in their split (seeds the fading draws);
      default 0, 1, 2, ...
    channel, fading, outage, realisations: the channel, see `plan_image`.
    lpips_nets: LPIPS backbones to report ('alex', 'vgg'); empty for none.
    fallback: 'gray' or a uint8 `(H, W, 3)` image shown for lost images.
    seed: seed of the fading draws.
    exhaustive: encode every codec quality per image (exact "highest quality
      that fits") instead of a binary search (see `search`).
    headers: for a codec given by name: 'stream' (count the whole coded
      stream) or 'shared' (stream headers that are the same for every image
      are known to the receiver); see `codecs`.
    label: the rows' label (default `default_label`).
    num_examples: images kept for grids.
    batch_size: images per metric batch.
    progress: called with 1 after every image.

  Returns:
    A `SeparationResult`.
  """
  pairs = zip(itertools.count() if indices is None else indices, images)
  return _evaluate_pairs(
      codec, pairs, bcr, snrs_db, channel=channel, fading=fading,
      outage=outage, realisations=realisations, lpips_nets=lpips_nets,
      fallback=fallback, seed=seed, exhaustive=exhaustive, headers=headers,
      label=label,
      num_examples=num_examples, batch_size=batch_size, progress=progress)


def _evaluate_pairs(codec, pairs, bcr, snrs_db, *, channel, fading, outage,
                    realisations, lpips_nets, fallback, seed, exhaustive,
                    headers, label, num_examples, batch_size, progress):
  """`evaluate_images` over `(index, image)` pairs, consumed once."""
  if isinstance(codec, str):
    codec = codecs_lib.get_codec(codec, headers)
  channel = capacity.link_of(channel, fading)
  if outage is not None and not 0.0 < outage < 1.0:
    raise ValueError(f"outage={outage!r} must lie in (0, 1), or be None to "
                     "choose the rate per image.")
  if realisations < 1:
    raise ValueError(f"realisations must be >= 1; got {realisations}.")
  realisations = realisations if capacity.is_random(channel) else 1
  snrs = [float(s) for s in snrs_db]
  label = label or default_label(codec, channel, outage=outage)
  meter, plans, positions, originals, shown_examples = None, [], [], [], []
  k = fb = None
  for position, (index, image) in enumerate(pairs):
    image = np.asarray(image)
    if meter is None:
      k = capacity.channel_uses(image.shape, bcr)
      fb = fallback_image(fallback, image.shape)
      meter = _Metrics(lpips_nets, image.shape, batch_size)
      shape = image.shape
    elif image.shape != shape:
      raise ValueError(f"All images must have one shape; got {image.shape} "
                       f"after {shape}.")
    index = int(index)
    search = search_lib.QualitySearch(codec, image, exhaustive)
    plan = plan_image(search, k, snrs, channel=channel,
                      outage=outage, realisations=realisations, seed=seed,
                      index=index, fallback=fb)
    meter.add((position, FALLBACK), image, fb)
    for q in sorted(set(plan.quality.tolist()) - {FALLBACK}):
      meter.add((position, q), image, search.decoded(q))
    if position < num_examples:
      originals.append(image)
      shown_examples.append([
          fb if plan.lost[s, 0] else search.decoded(plan.quality[s])
          for s in range(len(snrs))])
    plans.append(plan)
    positions.append(index)
    if progress is not None:
      progress(1)
  if meter is None:
    raise ValueError("No images to evaluate.")
  per_pair = meter.finish()
  return _assemble(plans, per_pair, snrs, codec, label, bcr, k,
                   np.asarray(positions), originals, shown_examples, shape)


def _metric_order(name):
  known = list(report.METRICS)
  return (known.index(name) if name in known else len(known), name)


def _stack(images, shape):
  """`np.stack(images)`, or uint8 `(0, *shape)` when none was kept."""
  return np.stack(images) if images else np.zeros((0, *shape), np.uint8)


def _assemble(plans, per_pair, snrs, codec, label, bcr, k, indices,
              originals, shown_examples, image_shape):
  metric_names = sorted(per_pair[(0, FALLBACK)], key=_metric_order)
  values, quality, bits, budget, lost = {}, {}, {}, {}, {}
  for s, snr in enumerate(snrs):
    quality[snr] = np.array([p.quality[s] for p in plans], np.int64)
    bits[snr] = np.array([p.bits[s] for p in plans], np.int64)
    budget[snr] = np.array([p.budget[s] for p in plans], np.int64)
    lost[snr] = np.stack([p.lost[s] for p in plans])
    values[snr] = {m: np.array([
        per_pair[(i, FALLBACK if gone else int(p.quality[s]))][m]
        for i, p in enumerate(plans) for gone in p.lost[s]])
                   for m in metric_names}
  rho = float(channel_lib.parse_ratio(bcr))
  per_image = {}  # {snr: {metric: (N, R)}}: realisations averaged per image.
  for snr in snrs:
    shape = lost[snr].shape
    per_image[snr] = {m: v.reshape(shape) for m, v in values[snr].items()}
    per_image[snr]["loss_rate"] = lost[snr].astype(np.float64)
    per_image[snr]["bits_used"] = bits[snr].astype(np.float64)
  rows = report.summarize(per_image, scheme=SCHEME, label=label, bcr=rho)
  examples = {snr: _stack([row[s] for row in shown_examples], image_shape)
              for s, snr in enumerate(snrs)}
  return SeparationResult(
      rows=rows, label=label, k=k, indices=indices, values=values,
      quality=quality, bits=bits, budget=budget, lost=lost, examples=examples,
      originals=_stack(originals, image_shape))


def _split_images(data_config, split, num_images, batch_size):
  from gjscc_jax import data as data_lib
  for batch in data_lib.eval_batches(data_config, split, batch_size,
                                     num_images):
    for image, index, keep in zip(batch["image"], batch["index"],
                                  batch["mask"]):
      if keep:
        yield int(index), np.asarray(image)


def mean_image(data_config, split="train", num_images=None, batch_size=64):
  """The per-pixel mean of a split, rounded to uint8 `(H, W, 3)`.

  A fallback the receiver can know in advance (use the training split).
  """
  total, count = None, 0
  for _, image in _split_images(data_config, split, num_images, batch_size):
    total = image.astype(np.float64) if total is None else total + image
    count += 1
  if not count:
    raise ValueError(f"The {split!r} split has no images.")
  return np.clip(np.round(total / count), 0, 255).astype(np.uint8)


def evaluate(codec, data_config, split="test", num_images=None, bcr="1/192",
             snrs_db=(-5, -3, -1, 0, 1, 3, 5), *, channel="awgn",
             fading="slow", outage=None, realisations=1,
             lpips_nets=("alex",), fallback="gray", seed=0,
             exhaustive=False, headers="stream", label=None,
             num_examples=8, batch_size=16,
             progress=None) -> SeparationResult:
  """The separation baseline on a dataset split: one call, rows and arrays.

  Args:
    codec: a codec name (`codecs.CODECS`) or a `codecs.Codec`.
    data_config: a config like `gjscc_jax.data.default_data_config()`.
    split: 'test' or 'train'.
    num_images: the first N images of the split (None: all).
    bcr: bandwidth ratio `rho`.
    snrs_db: test SNRs in dB.
    channel, fading, outage, realisations, lpips_nets, fallback, seed,
      exhaustive, headers, label, num_examples, batch_size, progress: as for
      `evaluate_images`;
      `fallback='train_mean'` uses `mean_image(data_config, 'train')`.

  Returns:
    A `SeparationResult`; `result.rows` are the summary rows.
  """
  if isinstance(fallback, str) and fallback == "train_mean":
    fallback = mean_image(data_config, "train")
  return _evaluate_pairs(
      codec, _split_images(data_config, split, num_images, batch_size), bcr,
      snrs_db, channel=channel, fading=fading,
      outage=outage, realisations=realisations, lpips_nets=lpips_nets,
      fallback=fallback, seed=seed, exhaustive=exhaustive, headers=headers,
      label=label,
      num_examples=num_examples, batch_size=batch_size, progress=progress)
