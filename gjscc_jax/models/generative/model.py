"""GenerativeJSCC: a DeepJSCC encoder and a StyleGAN2-based decoder, end to end.

The scheme of Erdemir et al. (IEEE JSAC 2023) that trains the encoder and a
StyleGAN-based decoder together with MSE + lambda * LPIPS:

    image (R x R) -> DeepJSCC encoder -> latents (R/d x R/d x C)
      -> power normalisation -> channel (AWGN / Rayleigh, one SNR per image)
      -> receiver trunk -> W+ latents + per-layer feature maps
      -> StyleGAN2 synthesis with GPEN-style injection -> image (R x R)
      -> clip to [-1, 1] (straight-through gradient)

* Transmitter: `deepjscc.TungEncoder` (or the small Bourtsoulatze encoder for
  CPU demos), `rho = C / (6 d^2)` (`C / 1536` at `d = 16`).
* Channel: a `gjscc_jax.channel.Channel`.
* Receiver: `generative_receiver.GenerativeReceiver` (trunk, W+ head,
  injection heads) and `generative_synthesis.InjectedSynthesis` (the
  synthesis network; converted official weights graft onto it with
  `generative_synthesis.graft_synthesis`). The mapping network is not used:
  the trunk predicts W+ directly, starting from the generator's `w_avg`.

Variables of `GenerativeJSCC.init`::

  {'params':  {'encoder': ..., 'receiver': ...,
               'synthesis': {'b4': ..., 'inject_scale_0': ..., ...}},
   'buffers': {'synthesis': {'b4': {'conv1': {'noise_const'}}, ...}}}

Usage::

  model = build_generative_jscc(img_resolution=64, latent_channels=8,
                                encoder_arch='small', num_filters=32,
                                synthesis_channel_base=1024,
                                synthesis_channel_max=64)
  variables = model.init(init_key, images, snr_db, key)
  recon = model.apply(variables, images, snr_db, key)   # (B, 64, 64, 3)
"""

import fractions
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gjscc_jax import channel as channel_lib
from gjscc_jax.models import deepjscc
from gjscc_jax.models.generative import receiver as receiver_lib
from gjscc_jax.models.generative import synthesis as synthesis_lib

Dtype = Any

def straight_through_clip(images):
  """Clips to [-1, 1] in the forward pass; identity gradient.

  StyleGAN2 images are unbounded (a randomly initialised generator's reach
  +-7). The loss and the metrics see the displayed, clipped image, while the
  gradient still pulls out-of-range pixels back (plain clipping would zero
  it). In-range pixels, i.e. a pretrained generator's images, are unchanged.
  """
  return images + jax.lax.stop_gradient(jnp.clip(images, -1.0, 1.0) - images)


class GenerativeJSCC(nn.Module):
  """Encoder -> channel -> GPEN-style StyleGAN2 receiver (module docstring).

  Attributes:
    encoder: the transmitter network, `encoder(images, snr_db) -> latents`
      `(B, R/d, R/d, C)` (a `deepjscc.TungEncoder` or `SmallEncoder`).
    receiver: the `GenerativeReceiver` trunk.
    synthesis: the `InjectedSynthesis` decoder.
    downsampling: the encoder's spatial factor `d`.
    latent_channels: the encoder's `C` (even).
    channel: the `gjscc_jax.channel.Channel`.
    noise_mode: StyleGAN2 noise of layers without an injected map (and of
      'concat' layers with `noise_in_injected_layers`):
      'const' (the stored maps; deterministic), 'random' or 'none'.
  """
  encoder: nn.Module
  receiver: receiver_lib.GenerativeReceiver
  synthesis: synthesis_lib.InjectedSynthesis
  downsampling: int = 16
  latent_channels: int = 8
  channel: Any = channel_lib.Channel()
  noise_mode: str = "const"

  @property
  def bandwidth_ratio(self) -> fractions.Fraction:
    """`rho = C / (6 d^2)` complex channel uses per source dimension."""
    return channel_lib.bcr_of_latent_channels(self.latent_channels,
                                              self.downsampling)

  def encode(self, images, snr_db):
    """Images `(B, R, R, 3)` in [-1, 1] -> real latents `(B, R/d, R/d, C)`."""
    res = self.synthesis.img_resolution
    if images.ndim != 4 or images.shape[1:] != (res, res, 3):
      raise ValueError(
          f"images must be (B, {res}, {res}, 3) in [-1, 1] (the decoder's "
          f"resolution); got {images.shape}.")
    latents = self.encoder(images,
                           deepjscc.snr_per_image(snr_db, images.shape[0]))
    want = (res // self.downsampling,) * 2 + (self.latent_channels,)
    if latents.shape[1:] != want:
      raise ValueError(f"the encoder produced {latents.shape[1:]}, expected "
                       f"{want}: check downsampling and latent_channels.")
    return latents

  def decode(self, received, snr_db, key=None):
    """Received latents -> images `(B, R, R, 3)` in [-1, 1], float32.

    The synthesis image is clipped to [-1, 1] with a straight-through
    gradient (`straight_through_clip`). `key` is needed only for
    `noise_mode='random'`.
    """
    ws, maps = self.receiver(
        received, deepjscc.snr_per_image(snr_db, received.shape[0]))
    return straight_through_clip(
        self.synthesis(ws, maps, noise_mode=self.noise_mode, key=key))

  def decoder_inputs(self, images, snr_db, key):
    """Encode, transmit with `key`, and run the receiver: `(ws, maps)`.

    The W+ latents and the per-layer injected maps the synthesis network
    would get in `__call__` (`GenerativeReceiver`'s outputs).
    """
    return self._receive(images, snr_db, key)[1:]

  def _receive(self, images, snr_db, key):
    latents = self.encode(images, snr_db)
    received, _ = channel_lib.coerce(self.channel).transmit(
        key, latents, snr_db)
    ws, maps = self.receiver(
        received, deepjscc.snr_per_image(snr_db, received.shape[0]))
    return received, ws, maps

  def __call__(self, images, snr_db, key):
    """Encode, transmit over the channel with `key`, decode.

    Args:
      images: `(B, R, R, 3)` in [-1, 1].
      snr_db: channel SNR in dB, scalar or `(B,)`.
      key: PRNG key of the channel realisation (the same noise as
        `DeepJSCC` draws from it for latents of the same shape) and, folded
        with 1, of random noise maps.

    Returns:
      Reconstructions `(B, R, R, 3)`, float32.
    """
    _, ws, maps = self._receive(images, snr_db, key)
    return straight_through_clip(self.synthesis(
        ws, maps, noise_mode=self.noise_mode, key=jax.random.fold_in(key, 1)))


def build_generative_jscc(
    *, img_resolution, latent_channels, encoder_arch="tung", num_filters=256,
    downsampling=16, encoder_snr_adaptive=False, channel="awgn",
    fading="slow", equalization="mmse", power=1.0, w_dim=512,
    synthesis_channel_base=16384, synthesis_channel_max=512, conv_clamp=256,
    injection="concat", injection_scale="learned", injection_scale_gain=1.0,
    noise_in_injected_layers=False, receiver_upsample="resize", inject_max_resolution=None,
    w_mode="per_layer",
    receiver_channel_base=16384, receiver_channel_max=512,
    receiver_res_blocks=2, receiver_snr_adaptive=False, noise_mode="const",
    dtype=jnp.float32, precision=None, remat=False):
  """Builds a consistent `GenerativeJSCC` (argument names as in the config).

  The receiver's injection widths follow the synthesis network: each layer's
  own width for 'add' and for 'concat' (GPEN concatenates as many channels
  as the layer has). `remat` recomputes each encoder stage and each
  synthesis block in the backward pass instead of storing its activations
  (the variables do not change).

  `channel` is a `gjscc_jax.channel.Channel`, or (the older form) its kind
  with `fading`, `equalization` and `power`.

  Raises:
    ValueError: naming the argument when a choice is unknown or the sizes do
      not fit together.
  """
  deepjscc.validate_encoder(encoder_arch, latent_channels, downsampling)
  channel = channel_lib.coerce(channel, fading=fading,
                               equalization=equalization, power=power)
  if img_resolution % downsampling or img_resolution < downsampling:
    raise ValueError(f"img_resolution={img_resolution} must be a multiple of "
                     f"downsampling={downsampling}.")
  if injection not in receiver_lib.INJECTIONS:
    raise ValueError(f"injection={injection!r} must be one of "
                     f"{receiver_lib.INJECTIONS}.")
  if injection_scale not in synthesis_lib.INJECTION_SCALES:
    raise ValueError(f"injection_scale={injection_scale!r} must be one of "
                     f"{synthesis_lib.INJECTION_SCALES}.")
  if noise_mode not in ("const", "random", "none"):
    raise ValueError(f"noise_mode={noise_mode!r} must be 'const', 'random' or 'none'.")
  synthesis = synthesis_lib.InjectedSynthesis(
      w_dim=w_dim, img_resolution=img_resolution,
      channel_base=synthesis_channel_base, channel_max=synthesis_channel_max,
      conv_clamp=conv_clamp, injection=injection,
      injection_scale=injection_scale,
      injection_scale_gain=injection_scale_gain,
      noise_in_injected_layers=noise_in_injected_layers, dtype=dtype,
      precision=precision, remat=remat)
  receiver = receiver_lib.GenerativeReceiver(
      img_resolution=img_resolution, num_ws=synthesis.num_ws, w_dim=w_dim,
      injection=injection, injection_channels=synthesis.layer_channels(),
      inject_max_resolution=inject_max_resolution, w_mode=w_mode,
      channel_base=receiver_channel_base, channel_max=receiver_channel_max,
      num_res_blocks=receiver_res_blocks, snr_adaptive=receiver_snr_adaptive,
      upsample=receiver_upsample, dtype=dtype)
  if encoder_arch == "tung":
    encoder = deepjscc.TungEncoder(num_filters, latent_channels,
                                   encoder_snr_adaptive, dtype, remat)
  else:
    encoder = deepjscc.SmallEncoder(num_filters, latent_channels,
                                    downsampling.bit_length() - 1,
                                    encoder_snr_adaptive, dtype, remat)
  return GenerativeJSCC(
      encoder=encoder, receiver=receiver, synthesis=synthesis,
      downsampling=downsampling, latent_channels=latent_channels,
      channel=channel, noise_mode=noise_mode)
