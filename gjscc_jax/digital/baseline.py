"""The practical separation baseline: a codec over 5G LDPC and QAM.

The separation baseline (`gjscc_jax.separation`) with its ideal channel
code replaced by the link of `link`: for every image, SNR and MCS
(`mcs`), the transmitter fills the MCS's transport block,
`A = segmentation.max_payload(floor(k) Qm, Qm, R)` bits over
`k = rho H W 3` channel uses, with the codec's highest quality whose payload
fits `A` (`separation.search`, its header accounting unchanged), padded
with zeros to `A`; the block crosses the channel; the image is received
when the block's CRCs pass and lost otherwise (shown as the fallback
image, mid-gray by default, as in the capacity baseline). Images whose
lowest quality exceeds `A` are not sent (lost).

Each MCS gives a curve (its cliff where its block error rate rises). The
envelope picks one MCS per SNR without looking at the test images:
`selection='psnr'` takes the MCS with the highest mean PSNR on held-out
images (`selection_images`, e.g. the training split), and
`selection='bler:EPS'` the highest-rate MCS whose loss rate on those
held-out images is at most `EPS` (the MCS with the lowest loss rate if none
is). Slow Rayleigh fading uses the separation baseline's seeded gains
(`separation.capacity.fading_power`), so both baselines see the same fades.
"""

import dataclasses

import numpy as np

from gjscc_jax import channel as channel_lib
from gjscc_jax.digital import link as link_lib
from gjscc_jax.digital import mcs as mcs_lib
from gjscc_jax.separation import baseline as sep_baseline
from gjscc_jax.separation import capacity
from gjscc_jax.separation import codecs as codecs_lib
from gjscc_jax.separation import search as search_lib

#: What `link=` the separation experiment accepts.
LINKS = ("capacity", "ldpc")
ENVELOPE = "envelope"


@dataclasses.dataclass
class DigitalResult:
  """The per-MCS results and the envelope of one sweep.

  Attributes:
    per_mcs: `{mcs name: separation.SeparationResult}`.
    envelope: the `SeparationResult` of the envelope.
    chosen: `{snr_db: mcs name}` the envelope's MCS per SNR.
    selection: `{snr_db: {mcs name: (mean PSNR, loss rate)}}` on the
      held-out images (empty when no selection was run).
    payload: `{mcs name: A}` transport block payload bits (0: nothing fits).
  """
  per_mcs: dict
  envelope: object
  chosen: dict
  selection: dict
  payload: dict


def _bits_of(bitstream, length):
  bits = np.unpackbits(np.frombuffer(bitstream.payload, np.uint8))
  out = np.zeros(length, np.int8)
  out[:bits.size] = bits
  return out


class _Plans:
  """Per image and MCS: `separation.ImagePlan`s from the link's outcome."""

  def __init__(self, codec, images, indices, k, snrs, mcss, *, channel,
               fading, realisations, seed, receiver, batch_blocks=256):
    self.searches = [search_lib.QualitySearch(codec, im) for im in images]
    self.indices = list(indices)
    slow = channel == "rayleigh" and fading == "slow"
    reps = realisations if slow else 1
    self.plans = {}
    self.payload = {}
    for m in mcss:
      tb = link_lib.transport_plan(m, k)
      a = tb.payload if tb else 0
      self.payload[m.name] = a
      quality = np.array([s.best_fitting(a) for s in self.searches])
      bits = np.array([s.bits(q) for s, q in zip(self.searches, quality)])
      lost = np.ones((len(images), len(snrs), reps), bool)
      jobs = [(i, j, r) for i in range(len(images)) for j in range(len(snrs))
              for r in range(reps) if quality[i] != search_lib.NOT_SENT]
      for start in range(0, len(jobs), batch_blocks):
        chunk = jobs[start:start + batch_blocks]
        pad = chunk + [chunk[0]] * (batch_blocks - len(chunk)) if (
            len(jobs) > batch_blocks) else chunk
        payload = np.stack([_bits_of(self.searches[i].bitstream(quality[i]), a)
                            for i, _, _ in pad])
        snr = np.array([snrs[j] for _, j, _ in pad])
        keys = link_lib.noise_keys(seed, [self.indices[i] for i, _, _ in pad],
                                   snr, [r for _, _, r in pad])
        gains = None
        if slow:
          gains = np.array([capacity.fading_power(
              seed, self.indices[i], snrs[j], reps)[r] for i, j, r in pad])
        _, ok = link_lib.simulate(tb, payload, snr, keys, channel=channel,
                                  fading=fading, gains=gains,
                                  receiver=receiver)
        for (i, j, r), good in zip(chunk, ok[:len(chunk)]):
          lost[i, j, r] = not good
      self.plans[m.name] = [
          sep_baseline.ImagePlan(
              np.full(len(snrs), quality[i]), np.full(len(snrs), bits[i]),
              np.full(len(snrs), a), lost[i]) for i in range(len(images))]


def _assemble(planner, plans, snrs, codec, label, bcr, k, images, meter,
              num_examples, fallback):
  keys = {}
  for position, (search, plan) in enumerate(zip(planner.searches, plans)):
    keys[(position, sep_baseline.FALLBACK)] = (search.image, fallback)
    for q in set(plan.quality.tolist()) - {sep_baseline.FALLBACK}:
      keys[(position, int(q))] = (search.image, search.decoded(int(q)))
  for key, (original, shown) in keys.items():
    if key not in meter.results and key not in [q[0] for q in meter.queue]:
      meter.add(key, original, shown)
  per_pair = meter.finish()
  shown = [[fallback if plan.lost[s, 0] else
            planner.searches[p].decoded(int(plan.quality[s]))
            for s in range(len(snrs))]
           for p, plan in enumerate(plans[:num_examples])]
  return sep_baseline._assemble(  # pylint: disable=protected-access
      plans, per_pair, snrs, codec, label, bcr, k,
      np.asarray(planner.indices), list(images[:num_examples]), shown,
      np.shape(images[0]))


def _choose(selection, held_out, mcss, snrs):
  """`{snr: mcs name}` from held-out `{snr: {name: (psnr, loss)}}`."""
  chosen = {}
  for snr in snrs:
    scores = held_out[snr]
    if selection == "psnr":
      chosen[snr] = max(mcss, key=lambda m: (scores[m.name][0],
                                             -m.efficiency)).name
      continue
    target = float(selection.split(":", 1)[1])
    fine = [m for m in mcss if scores[m.name][1] <= target]
    chosen[snr] = (max(fine, key=lambda m: m.efficiency).name if fine else
                   min(mcss, key=lambda m: (scores[m.name][1],
                                            -m.efficiency)).name)
  return chosen


def check_selection(selection):
  """Raises a ValueError naming the fix for an unknown selection rule."""
  if selection == "psnr":
    return
  if selection.startswith("bler:"):
    try:
      value = float(selection[5:])
    except ValueError:
      value = -1.0
    if 0.0 <= value <= 1.0:
      return
  raise ValueError(f"selection={selection!r}: use 'psnr' or 'bler:EPS' with "
                   "0 <= EPS <= 1 (e.g. bler:0.1).")


def label(codec, m=None, channel="awgn", fading="slow"):
  """'HEIF + LDPC 16QAM R=0.42' or, for the envelope, 'HEIF + 5G LDPC'."""
  suffix = "" if channel == "awgn" else f", {fading} Rayleigh"
  if m is None:
    return f"{codec.display_name} + 5G LDPC{suffix}"
  return f"{codec.display_name} + LDPC {m.describe()}{suffix}"


def evaluate_images(codec, images, bcr, snrs_db, *, indices=None,
                    held_out=None, held_out_indices=None, mcs=mcs_lib.DEFAULT,
                    selection="psnr", channel="awgn", fading="slow",
                    realisations=1, receiver=link_lib.Receiver(),
                    lpips_nets=("alex",), fallback="gray", seed=0,
                    headers="stream", num_examples=8, batch_size=16,
                    label_prefix=None) -> DigitalResult:
  """The codec + 5G LDPC + QAM baseline over images; see the module doc.

  Args:
    codec: a codec name or `separation.codecs.Codec`.
    images: uint8 test images `(H, W, 3)` of one shape (a sequence).
    bcr: bandwidth ratio `rho`.
    snrs_db: test SNRs in dB.
    indices: the images' positions in their split (seed the draws).
    held_out: uint8 images the envelope's MCS is chosen on (not the test
      images); None with a single MCS.
    held_out_indices: their positions (seeds).
    mcs: MCS specs (`mcs.parse`).
    selection: 'psnr' or 'bler:EPS' (see the module docstring).
    channel, fading, realisations: the channel (slow fading: `realisations`
      seeded gains per image and SNR).
    receiver: a `link.Receiver`.
    lpips_nets, fallback, seed, headers, num_examples, batch_size: as for
      `separation.evaluate_images`.
    label_prefix: replaces the codec's display name in labels.

  Returns:
    A `DigitalResult`.
  """
  channel_lib.validate_options(channel, fading, receiver.equalization)
  check_selection(selection)
  if isinstance(codec, str):
    codec = codecs_lib.get_codec(codec, headers)
  mcss = mcs_lib.parse_all(mcs)
  images = [np.asarray(im) for im in images]
  if not images:
    raise ValueError("No images to evaluate.")
  indices = list(range(len(images)) if indices is None else indices)
  snrs = [float(s) for s in snrs_db]
  k = capacity.channel_uses(images[0].shape, bcr)
  fb = sep_baseline.fallback_image(fallback, images[0].shape)
  common = dict(channel=channel, fading=fading, realisations=realisations,
                seed=seed, receiver=receiver)
  held = {}
  if len(mcss) > 1:
    if held_out is None or not len(held_out):
      raise ValueError("Choosing an MCS per SNR needs held-out images "
                       "(held_out=, e.g. the training split), never the "
                       "test images.")
    held_out = [np.asarray(im) for im in held_out]
    h_idx = list(range(len(held_out)) if held_out_indices is None
                 else held_out_indices)
    h_plans = _Plans(codec, held_out, h_idx, k, snrs, mcss, **common)
    psnr = {}
    for pos, search in enumerate(h_plans.searches):
      psnr[(pos, sep_baseline.FALLBACK)] = sep_baseline._psnr_np(  # pylint: disable=protected-access
          fb, search.image)
    for name, plans in h_plans.plans.items():
      for pos, plan in enumerate(plans):
        for q in set(plan.quality.tolist()) - {sep_baseline.FALLBACK}:
          psnr[(pos, int(q))] = sep_baseline._psnr_np(  # pylint: disable=protected-access
              h_plans.searches[pos].decoded(int(q)),
              h_plans.searches[pos].image)
    for s, snr in enumerate(snrs):
      held[snr] = {}
      for name, plans in h_plans.plans.items():
        values = [np.mean([psnr[(p, sep_baseline.FALLBACK if gone else
                                 int(plan.quality[s]))]
                           for gone in plan.lost[s]])
                  for p, plan in enumerate(plans)]
        loss = np.mean([plan.lost[s].mean() for plan in plans])
        held[snr][name] = (float(np.mean(values)), float(loss))
    chosen = _choose(selection, held, mcss, snrs)
  else:
    chosen = {snr: mcss[0].name for snr in snrs}
  planner = _Plans(codec, images, indices, k, snrs, mcss, **common)
  meter = sep_baseline._Metrics(lpips_nets, images[0].shape, batch_size)  # pylint: disable=protected-access
  name = codec if label_prefix is None else dataclasses.replace(
      codec, display_name=label_prefix)
  per_mcs = {}
  for m in mcss:
    per_mcs[m.name] = _assemble(
        planner, planner.plans[m.name], snrs, codec,
        label(name, m, channel, fading), bcr, k, images, meter,
        num_examples, fb)
  envelope_plans = []
  for p in range(len(images)):
    rows = [planner.plans[chosen[snr]][p] for snr in snrs]
    envelope_plans.append(sep_baseline.ImagePlan(
        np.array([r.quality[s] for s, r in enumerate(rows)]),
        np.array([r.bits[s] for s, r in enumerate(rows)]),
        np.array([r.budget[s] for s, r in enumerate(rows)]),
        np.stack([r.lost[s] for s, r in enumerate(rows)])))
  envelope = _assemble(planner, envelope_plans, snrs, codec,
                       label(name, None, channel, fading), bcr, k, images,
                       meter, num_examples, fb)
  return DigitalResult(per_mcs, envelope, chosen, held, planner.payload)
