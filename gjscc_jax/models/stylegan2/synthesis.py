"""StyleGAN2 synthesis network ('skip' architecture), with entry/exit points.

Indexing used throughout (R = output resolution, L = log2(R) - 1 blocks):

* block ``k`` (``k = 0..L-1``) works at resolution ``4 * 2**k`` and is named
  ``b{4 * 2**k}`` (``b4``, ``b8``, ...) as in the official code. Block 0 starts
  from the learned 4x4 constant and has ``conv1`` and ``torgb``; every other
  block has ``conv0`` (2x upsampling), ``conv1`` and ``torgb``.
* noise/conv *layer* ``l`` (``l = 0..2L-2``): layer 0 is ``b4.conv1``; for
  block ``k >= 1`` layer ``2k - 1`` is its ``conv0`` and layer ``2k`` its
  ``conv1``. Layer ``l`` consumes ``ws[:, l]``; the ``torgb`` of block ``k``
  consumes ``ws[:, 2k + 1]`` (shared with the next block's ``conv0``). So
  ``num_ws = 2L`` (14 at 256x256, 18 at 1024x1024) and there are
  ``num_ws - 1`` noise inputs, layer ``l`` at resolution ``4 * 2**((l+1)//2)``.

Channels per resolution: ``min(channel_base // r, channel_max)``.
"""

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gjscc_jax.models.stylegan2 import layers, resampling


def block_resolution(block):
  """Resolution of block `block` (0 -> 4, 1 -> 8, ...)."""
  return 4 * 2**block


def layer_resolution(layer):
  """Output resolution of conv layer `layer` (0 -> 4, 1 and 2 -> 8, ...)."""
  return 4 * 2**((layer + 1) // 2)


def block_layers(block):
  """The conv layer indices of block `block` (``(0,)`` or ``(2k-1, 2k)``)."""
  return (0,) if block == 0 else (2 * block - 1, 2 * block)


def num_blocks(img_resolution):
  """Number of blocks for an output resolution: log2(R) - 1."""
  res = img_resolution
  if not isinstance(res, int) or res < 4 or res & (res - 1):
    raise ValueError(f'img_resolution must be a power of two >= 4, got {res}')
  return int(np.log2(res)) - 1


def channels(resolution, channel_base, channel_max):
  """Feature channels at `resolution`: min(channel_base // r, channel_max)."""
  return min(channel_base // resolution, channel_max)


def noise_shapes(img_resolution):
  """Per conv layer, the (H, W) of its noise input (and output)."""
  return tuple((layer_resolution(l),) * 2
               for l in range(2 * num_blocks(img_resolution) - 1))


def feature_shapes(img_resolution, channel_base, channel_max):
  """Per block, the (H, W, C) of the feature map it outputs."""
  return tuple((r, r, channels(r, channel_base, channel_max)) for r in
               map(block_resolution, range(num_blocks(img_resolution))))


def _maps_by_layer(maps, num_layers, what='noise'):
  """Normalises per-layer `maps` (None, sequence or mapping) to a dict."""
  if maps is None:
    return {}
  if isinstance(maps, Mapping):
    items = dict(maps)
  elif isinstance(maps, Sequence):
    if len(maps) != num_layers:
      raise ValueError(f'{what} as a sequence needs one entry (or None) per '
                       f'layer: {num_layers}, got {len(maps)}')
    items = dict(enumerate(maps))
  else:
    raise TypeError(f'{what} must be a sequence or a dict {{layer: map}}, got '
                    f'{type(maps).__name__}')
  bad = [l for l in items if not 0 <= l < num_layers]
  if bad:
    raise ValueError(f'{what} layers {bad} out of range 0..{num_layers - 1}')
  return {l: n for l, n in items.items() if n is not None}


def _block_maps(maps_by_layer, block):
  """The maps of block `block`'s conv layers, padded to two entries."""
  block_maps = tuple(maps_by_layer.get(l) for l in block_layers(block))
  return block_maps + (None,) * (2 - len(block_maps))


def concat_gain(channels, map_channels, scale):
  """Input gains of a layer reading features with a concatenated map.

  Args:
    channels: input channels of the reading layer (features + map).
    map_channels: channels of the concatenated map (the trailing ones).
    scale: scalar gain of the map.

  Returns:
    `(channels,)` float32: 1 for the features, `scale` for the map.
  """
  return jnp.concatenate([
      jnp.ones((channels - map_channels,), jnp.float32),
      jnp.broadcast_to(jnp.asarray(scale, jnp.float32), (map_channels,))])


class SynthesisLayout:
  """Block and layer bookkeeping of a synthesis network (a mixin).

  For modules with `img_resolution`, `channel_base` and `channel_max`
  fields (`SynthesisNetwork`, `Generator`, GenerativeJSCC's decoder).
  """

  @property
  def num_blocks(self):
    """Number of synthesis blocks: log2(R) - 1."""
    return num_blocks(self.img_resolution)

  @property
  def num_ws(self):
    """Number of W+ latents: 2 log2(R) - 2."""
    return 2 * self.num_blocks

  @property
  def num_layers(self):
    """Number of conv layers (= noise inputs) = num_ws - 1."""
    return self.num_ws - 1

  def channels(self, resolution):
    """Feature channels at `resolution`."""
    return channels(resolution, self.channel_base, self.channel_max)

  def layer_channels(self):
    """Output channels of every conv layer, in layer order."""
    return tuple(self.channels(r) for r, _ in self.noise_shapes)

  @property
  def noise_shapes(self):
    """Per conv layer, the (H, W) of its noise input (and output)."""
    return noise_shapes(self.img_resolution)

  @property
  def feature_shapes(self):
    """Per block, the (H, W, C) of the feature map it outputs."""
    return feature_shapes(self.img_resolution, self.channel_base,
                          self.channel_max)


class SynthesisBlock(nn.Module):
  """One resolution of the skip generator: [const] conv0? conv1 torgb.

  Attributes:
    out_channels: channels of this block.
    resolution: output resolution.
    is_first: the 4x4 block (learned constant input, no conv0).
    img_channels: image channels.
    conv_clamp: activation clipping (None: none).
    dtype: compute dtype of feature maps (the skip image is float32).
    precision: convolution precision.
  """
  out_channels: int
  resolution: int
  is_first: bool = False
  img_channels: int = 3
  conv_clamp: float | None = None
  dtype: Any = jnp.float32
  precision: Any = None

  @nn.compact
  def __call__(self, x, img, ws, *, noise_mode='const', key=None,
               noise=(None, None), concat=(None, None), concat_noise=True,
               concat_scale=(None, None), input_gain=None):
    """Applies the block.

    Args:
      x: (B, r/2, r/2, C_in) features, or None for the first block.
      img: (B, r/2, r/2, img_channels) skip image or None (= zeros).
      ws: (B, n, w_dim) latents: n = 2 (conv1, torgb) for the first block,
        else 3 (conv0, conv1, torgb).
      noise_mode: see `layers.SynthesisLayer`.
      key: PRNG key for random noise.
      noise: per conv layer of this block, an external noise map or None.
      concat: per conv layer of this block, a map concatenated to the
        layer's output (so the next layer and ToRGB read a wider input), or
        None.
      concat_noise: whether a layer with a `concat` map still adds its
        `noise_mode` noise (a layer's external `noise` map is always added).
      concat_scale: per conv layer of this block, a scalar gain of its
        `concat` map, or None (gain 1). The gain multiplies the styles of the
        map's channels in the layers reading them (`concat_gain`), so it
        scales the map's contribution and its share of the demodulation.
      input_gain: per input channel of `x`, gains for conv0 (the previous
        block's `concat_scale`, `concat_gain`), or None.

    Returns:
      ``(x, img)``: (B, r, r, out_channels) features in `dtype` and the
      (B, r, r, img_channels) float32 image.
    """
    kw = dict(conv_clamp=self.conv_clamp, dtype=self.dtype,
              precision=self.precision)
    num_conv = 1 if self.is_first else 2
    if ws.shape[1] != num_conv + 1:
      raise ValueError(f'{self.name} needs {num_conv + 1} ws, got {ws.shape}')
    keys = (None, None) if key is None else jax.random.split(key)

    def conv(name, x, i, key, gain, up=False):
      """Layer `i` reading `x` (input gains `gain`) -> (output, its gains)."""
      mode = noise_mode
      if concat[i] is not None and not concat_noise:
        mode = 'none'
      y = layers.SynthesisLayer(self.out_channels, self.resolution, up=up,
                                name=name, **kw)(
                                    x, ws[:, i], noise_mode=mode, key=key,
                                    noise=noise[i], input_gain=gain)
      if concat[i] is None:
        return y, None
      y = jnp.concatenate([y, concat[i].astype(y.dtype)], axis=-1)
      if concat_scale[i] is None:
        return y, None
      return y, concat_gain(y.shape[-1], concat[i].shape[-1], concat_scale[i])

    if self.is_first:
      const = self.param('const', nn.initializers.normal(1.0),
                         (self.resolution, self.resolution, self.out_channels))
      x = jnp.broadcast_to(const.astype(self.dtype),
                           (ws.shape[0],) + const.shape)
      gain = None
    else:
      x, gain = conv('conv0', x, 0, keys[0], input_gain, up=True)
    x, gain = conv('conv1', x, num_conv - 1, keys[1], gain)
    y = layers.ToRGB(self.img_channels, name='torgb', **kw)(
        x, ws[:, num_conv], input_gain=gain)
    if img is not None:
      img = resampling.upsample_2x(img.astype(jnp.float32)) + y
    else:
      img = y
    return x, img


class SynthesisNetwork(SynthesisLayout, nn.Module):
  """StyleGAN2 synthesis network, W+ -> image, runnable block range by range.

  Attributes:
    w_dim: latent size.
    img_resolution: output resolution (power of two >= 4).
    img_channels: image channels.
    channel_base: channels at resolution r are min(channel_base // r,
      channel_max).
    channel_max: see `channel_base`.
    conv_clamp: activation clipping in every layer (None: none; official
      training configs use 256).
    dtype: compute dtype of the feature maps (float32 or bfloat16); the
      styles, demodulation coefficients and the skip image are float32.
    precision: convolution precision (e.g. ``'highest'``).
    remat: recompute each block in the backward pass (``nn.remat``) instead
      of storing its activations: a gradient through the network then keeps
      only the blocks' inputs, at the cost of one more forward pass. The
      variables are the same with and without it.
  """
  w_dim: int = 512
  img_resolution: int = 1024
  img_channels: int = 3
  channel_base: int = 32768
  channel_max: int = 512
  conv_clamp: float | None = None
  dtype: Any = jnp.float32
  precision: Any = None
  remat: bool = False

  @nn.compact
  def __call__(self, ws, *, noise_mode='const', key=None, noise=None,
               concat=None, concat_noise=True, concat_scale=False,
               concat_scale_gain=1.0, start_block=0, end_block=None, x=None, img=None):
    """Synthesises images, or runs blocks ``start_block .. end_block - 1``.

    Args:
      ws: (B, num_ws, w_dim) W+ latents (always the full set; blocks outside
        the range ignore theirs).
      noise_mode: ``'const'``, ``'random'`` or ``'none'`` (see module doc).
      key: PRNG key, required for ``noise_mode='random'``.
      noise: external noise/feature maps replacing the noise input of some
        layers: a sequence of ``num_layers`` entries (None = use `noise_mode`)
        or a dict ``{layer: map}``; a map is (B, H, W, 1) or (B, H, W, C) at
        the layer's resolution and is scaled by the layer's noise_strength.
      concat: feature maps concatenated to the output of some layers (as
        `noise`: a sequence or a dict ``{layer: map}``), (B, H, W, C') at the
        layer's resolution; the layers reading that output (the next conv
        and the block's ToRGB) get C' more input channels. GenerativeJSCC's
        'concat' injection.
      concat_noise: whether layers with a `concat` map still add their
        `noise_mode` noise (StyleGAN2's `noise_const`, random or none).
      concat_scale: give every `concat` map a learned scalar gain
        ``inject_scale_{layer}``, initialised to 0 (GPEN's
        `NoiseInjection(isconcat=True)` weight). The gain multiplies the
        map's styles in the layers reading it (the next conv and the block's
        ToRGB), so at 0 the map's channels are absent from the modulation
        and the demodulation alike: the network computes exactly the image
        it computes without the maps, whatever the kernel slices reading
        them, and the gain's gradient is not zero.
      concat_scale_gain: constant factor of the learned gains: the gain is
        ``concat_scale_gain * inject_scale_{layer}``, so an optimiser that
        is invariant to a parameter's scale (Adam) moves the gain
        `concat_scale_gain` times faster (equalised learning rate).
      start_block: first block to run; if > 0, `x` must be the output
        features of block ``start_block - 1`` (and `img` its skip image, or
        None for a zero image).
      end_block: stop before this block (default: run to the end).
      x: input features for ``start_block > 0``.
      img: input skip image for ``start_block > 0``.

    Returns:
      The (B, R, R, img_channels) float32 image when running to the end,
      otherwise ``(x, img)`` after block ``end_block - 1``.
    """
    n_blocks = self.num_blocks
    end = n_blocks if end_block is None else end_block
    if not 0 <= start_block < end <= n_blocks:
      raise ValueError(f'need 0 <= start_block < end_block <= {n_blocks}, '
                       f'got start_block={start_block}, end_block={end_block}')
    if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
      raise ValueError(f'ws must have shape (B, {self.num_ws}, {self.w_dim}) '
                       f'(W+), got {ws.shape}; broadcast a single w with '
                       'jnp.repeat(w[:, None], num_ws, axis=1).')
    if start_block > 0 and x is None:
      raise ValueError(f'start_block={start_block} needs x, the features of '
                       f'block {start_block - 1}: shape (B, '
                       f'{self.feature_shapes[start_block - 1]}).')
    if start_block == 0 and (x is not None or img is not None):
      raise ValueError('x and img are only used with start_block > 0.')
    ws = ws.astype(jnp.float32)
    noise = _maps_by_layer(noise, self.num_layers)
    concat = _maps_by_layer(concat, self.num_layers, 'concat')
    scales = {}
    if concat_scale:
      scales = {l: concat_scale_gain * self.param(
          f'inject_scale_{l}', nn.initializers.zeros, ()) for l in sorted(concat)}
    for k in range(start_block, end):
      first_w = 0 if k == 0 else 2 * k - 1
      num_w = 2 if k == 0 else 3
      block_key = None if key is None else jax.random.fold_in(key, k)
      prev = first_w - 1  # The layer whose output conv0 reads.
      input_gain = None
      if k > 0 and prev in scales:
        input_gain = concat_gain(x.shape[-1], concat[prev].shape[-1],
                                 scales[prev])
      block_scales = (tuple(scales.get(l) for l in block_layers(k))
                      + (None,) * (2 - len(block_layers(k))))
      run = self._block_fn(k, noise_mode, concat_noise)
      x, img = (nn.remat(run) if self.remat else run)(
          self, x, img, ws[:, first_w:first_w + num_w], block_key,
          _block_maps(noise, k), _block_maps(concat, k), block_scales,
          input_gain)
    if end == n_blocks:
      return img
    return x, img

  def _block_fn(self, k, noise_mode, concat_noise):
    """Block `k` as `(mdl, x, img, ws, key, noise, concat, concat_scale,
    input_gain) -> (x, img)`.

    Only arrays, None and tuples of them are arguments (what `nn.remat`
    traces); the static choices (`k`, `noise_mode`, `concat_noise`) are
    closed over. Flax passes the module (under remat its lifted copy) as
    `mdl`.
    """
    res = block_resolution(k)

    def run(mdl, x, img, ws, key, noise, concat, concat_scale, input_gain):
      del mdl  # The block attaches to it implicitly, named b{res}.
      return SynthesisBlock(
          self.channels(res), res, is_first=(k == 0),
          img_channels=self.img_channels, conv_clamp=self.conv_clamp,
          dtype=self.dtype, precision=self.precision, name=f'b{res}')(
              x, img, ws, noise_mode=noise_mode, key=key, noise=noise,
              concat=concat, concat_noise=concat_noise,
              concat_scale=concat_scale, input_gain=input_gain)
    return run
