"""LPIPS (Zhang et al., CVPR 2018), version 0.1, as a pure Flax module.

LPIPS compares two images through a frozen ImageNet classifier. For images
``x`` and ``y`` in [-1, 1] it computes

  1. the *scaling layer* ``(img - SHIFT) / SCALE`` (ImageNet mean/std expressed
     for [-1, 1] input);
  2. backbone activations at five taps ``l`` (VGG16: relu1_2, relu2_2, relu3_3,
     relu4_3, relu5_3; AlexNet: relu1 ... relu5);
  3. channel-wise unit normalisation ``f / (sqrt(sum_c f^2) + 1e-10)``;
  4. the squared difference weighted per channel by the non-negative v0.1
     linear layer ``w_l`` and averaged over the spatial positions:
     ``d_l = mean_hw sum_c w_lc (fx_hwc - fy_hwc)^2``;
  5. ``LPIPS(x, y) = sum_l d_l``, one value per image.

This is the arithmetic of the official ``lpips`` 0.1.4 package (``LPIPS(net,
version='0.1')`` in eval mode, ``spatial=False``) in NHWC layout. The network
parameters are an ordinary pytree passed to ``apply``: they are never created
inside a training state (see `gjscc_jax.losses.lpips_weights` for the real,
pretrained values).

Precision: with ``dtype=jnp.bfloat16`` the backbone convolutions run in
bfloat16, while the taps are cast to float32 before the normalisation, the
differences and every sum, so the distance is accumulated in float32.

The features of a fixed target can be computed once (`LPIPS.features`) and
reused for every optimisation step (`LPIPS.distance_to` from images, or
`LPIPS.distance` from their features): InverseJSCC's inner loop does. The
convolutions, VGG's 2x2 max-pool and the ReLU come from `gjscc_jax.ops`
(platform-specific forms with the same values and gradients).

Memory: with ``remat=True`` a gradient through LPIPS keeps only the input
and the five raw taps; each backbone stage (`backbone_stages`) and each
tap's normalisation and distance are recomputed in the backward pass.
"""

from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gjscc_jax.ops.conv2d import square_conv
from gjscc_jax.ops.elementwise import relu
from gjscc_jax.ops.pooling import max_pool_2x2

#: Scaling layer of LPIPS v0.1: ``(img - SHIFT) / SCALE`` for [-1, 1] images.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
#: Added to the feature norm (outside the square root), as in ``lpips``.
NORM_EPS = 1e-10


class ConvLayer(NamedTuple):
  """One conv + ReLU of a backbone (torchvision's layout)."""
  name: str
  kernel: int
  stride: int
  padding: int
  in_channels: int
  out_channels: int
  pool_before: bool  # a max-pool precedes the conv
  tap: bool  # LPIPS reads the ReLU output


#: The conv layers of each backbone up to its last tap, in order.
VGG16_LAYERS = (
    ConvLayer('conv1_1', 3, 1, 1, 3, 64, False, False),
    ConvLayer('conv1_2', 3, 1, 1, 64, 64, False, True),
    ConvLayer('conv2_1', 3, 1, 1, 64, 128, True, False),
    ConvLayer('conv2_2', 3, 1, 1, 128, 128, False, True),
    ConvLayer('conv3_1', 3, 1, 1, 128, 256, True, False),
    ConvLayer('conv3_2', 3, 1, 1, 256, 256, False, False),
    ConvLayer('conv3_3', 3, 1, 1, 256, 256, False, True),
    ConvLayer('conv4_1', 3, 1, 1, 256, 512, True, False),
    ConvLayer('conv4_2', 3, 1, 1, 512, 512, False, False),
    ConvLayer('conv4_3', 3, 1, 1, 512, 512, False, True),
    ConvLayer('conv5_1', 3, 1, 1, 512, 512, True, False),
    ConvLayer('conv5_2', 3, 1, 1, 512, 512, False, False),
    ConvLayer('conv5_3', 3, 1, 1, 512, 512, False, True),
)
ALEXNET_LAYERS = (
    ConvLayer('conv1', 11, 4, 2, 3, 64, False, True),
    ConvLayer('conv2', 5, 1, 2, 64, 192, True, True),
    ConvLayer('conv3', 3, 1, 1, 192, 384, True, True),
    ConvLayer('conv4', 3, 1, 1, 384, 256, False, True),
    ConvLayer('conv5', 3, 1, 1, 256, 256, False, True),
)
BACKBONES = {'vgg': VGG16_LAYERS, 'alex': ALEXNET_LAYERS}


def backbone_layers(net: str):
  """The conv layer table of backbone ``net`` ('vgg' or 'alex')."""
  if net not in BACKBONES:
    raise ValueError(f"LPIPS net must be one of {sorted(BACKBONES)}; got "
                     f"{net!r}. ('vgg' is VGG16, 'alex' is AlexNet.)")
  return BACKBONES[net]


def tap_channels(net: str) -> tuple[int, ...]:
  """Channels of the five taps of ``net``, i.e. the lengths of its lin weights."""
  return tuple(l.out_channels for l in backbone_layers(net) if l.tap)


def param_shapes(net: str) -> dict[str, Any]:
  """The shape of every parameter of ``LPIPS(net)``, as a nested dict.

  ``{'backbone': {conv: {'kernel': (k, k, in, out), 'bias': (out,)}},
  'lin0': (C0,), ..., 'lin4': (C4,)}``; kernels are HWIO.
  """
  backbone = {l.name: {'kernel': (l.kernel, l.kernel, l.in_channels,
                                  l.out_channels),
                       'bias': (l.out_channels,)}
              for l in backbone_layers(net)}
  shapes = {'backbone': backbone}
  for i, c in enumerate(tap_channels(net)):
    shapes[f'lin{i}'] = (c,)
  return shapes


def _pool_out(size: int, window: int) -> int:
  return (size - window) // 2 + 1  # stride 2, no padding, floor mode


def _conv_out(size: int, k: int, stride: int, pad: int) -> int:
  return (size + 2 * pad - k) // stride + 1


def min_image_size(net: str) -> int:
  """Smallest height/width for which every tap of ``net`` is non-empty."""
  def last_size(size):
    for layer in backbone_layers(net):
      if layer.pool_before:
        size = _pool_out(size, 2 if net == 'vgg' else 3)
      size = _conv_out(size, layer.kernel, layer.stride, layer.padding)
    return size
  size = 1
  while last_size(size) < 1:
    size += 1
  return size


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """3x3 max-pool with stride 2, no padding, floor mode (AlexNet's pool)."""
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding='VALID')


def _at_least_f32(x: jax.Array) -> jax.Array:
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def normalize_channels(features: jax.Array, eps: float = NORM_EPS) -> jax.Array:
  """``f / (||f||_2 + eps)`` over the channel axis, in float32 (or wider)."""
  features = _at_least_f32(features)
  norm = jnp.sqrt(jnp.sum(jnp.square(features), axis=-1, keepdims=True))
  return features * (1.0 / (norm + eps))  # one divide per position


class Conv(nn.Module):
  """Square convolution + bias, NHWC/HWIO, parameters ``kernel`` and ``bias``.

  Computed by `gjscc_jax.ops.conv2d.square_conv`.

  Attributes:
    features: Output channels.
    kernel_size: Height = width of the kernel.
    stride: Stride in both directions.
    padding: Zero padding on every side.
    dtype: Computation dtype (parameters are float32).
  """
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (k, k, x.shape[-1], self.features), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (self.features,),
                      jnp.float32)
    x, kernel, bias = (a.astype(self.dtype) for a in (x, kernel, bias))
    return square_conv(x, kernel, self.stride, self.padding) + bias


def tap_distance(fx: jax.Array, fy: jax.Array, lin: jax.Array) -> jax.Array:
  """``mean_hw sum_c lin_c (fx - fy)^2`` of normalised taps: shape (B,)."""
  diff2 = jnp.square(fx - fy)
  h, w = diff2.shape[1:3]
  return jnp.einsum('bhwc,c->b', diff2, lin.astype(diff2.dtype)) / (h * w)


def backbone_stages(net: str) -> tuple[tuple[ConvLayer, ...], ...]:
  """The conv layers of ``net`` grouped into stages: a max-pool starts each
  stage but the first (VGG16: 5 stages, AlexNet: 3). Every stage ends with
  a tap."""
  stages = []
  for layer in backbone_layers(net):
    if layer.pool_before or not stages:
      stages.append([])
    stages[-1].append(layer)
  assert all(stage[-1].tap for stage in stages), net
  return tuple(tuple(stage) for stage in stages)


class Backbone(nn.Module):
  """The ImageNet feature extractor up to its last LPIPS tap.

  Attributes:
    net: 'vgg' (VGG16 ``features[:30]``) or 'alex' (AlexNet ``features[:12]``).
    dtype: Computation dtype of the convolutions (parameters stay float32).
    remat: Recompute each stage (`backbone_stages`: its pool, convs and
      ReLUs) in the backward pass instead of storing its activations; only
      the stage outputs and taps are kept. Same parameters either way.
  """
  net: str = 'vgg'
  dtype: Any = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, ...]:
    """Returns the five tap activations (after ReLU) of ``x`` in ``dtype``."""
    pool = max_pool_2x2 if self.net == 'vgg' else max_pool_3x3_s2

    def stage_fn(stage):
      def run(mdl, x):
        del mdl  # Flax's (lifted) module: the convs attach to it by name.
        taps = []
        for layer in stage:
          if layer.pool_before:
            x = pool(x)
          x = Conv(layer.out_channels, layer.kernel, layer.stride,
                   layer.padding, self.dtype, name=layer.name)(x)
          x = relu(x)
          if layer.tap:
            taps.append(x)
        return tuple(taps)  # The last is the stage's output.
      return nn.remat(run) if self.remat else run

    taps = ()
    x = x.astype(self.dtype)
    for stage in backbone_stages(self.net):
      taps += stage_fn(stage)(self, x)
      x = taps[-1]
    return taps


def check_image_shapes(x, y=None, *, net: str | None, name: str = 'LPIPS'):
  """Raises a clear error for inputs LPIPS cannot compare (trace-time check).

  Args:
    x: First image batch.
    y: Optional second batch, which must match ``x``.
    net: Backbone, for its minimum image size (None: no size check, for
      callers that compute no LPIPS).
    name: Function name used in the messages.
  """
  for arr in (x,) if y is None else (x, y):
    if arr.ndim != 4 or arr.shape[-1] != 3:
      raise ValueError(f'{name}: expects RGB images as NHWC batches (B, H, W, 3);'
                       f' got shape {arr.shape}. Add a batch axis with x[None]'
                       ' for one image.')
    if not jnp.issubdtype(arr.dtype, jnp.floating):
      raise TypeError(f'{name}: expects float images in [-1, 1]; got dtype '
                      f'{arr.dtype}. Convert uint8 images with '
                      'gjscc_jax.pixels.from_uint8.')
  if y is not None and x.shape != y.shape:
    raise ValueError(f'{name}: the two image batches must have the same shape;'
                     f' got {x.shape} and {y.shape}.')
  if net is None:
    return
  smallest = min_image_size(net)
  if min(x.shape[1:3]) < smallest:
    raise ValueError(f"{name}: images of {x.shape[1]}x{x.shape[2]} are too "
                     f"small for LPIPS-{net}, which needs at least "
                     f"{smallest}x{smallest}; upsample them first.")


class LPIPS(nn.Module):
  """LPIPS v0.1 distance between [-1, 1] NHWC image batches.

  Parameters: ``{'backbone': {...}, 'lin0': (C0,), ..., 'lin4': (C4,)}`` (see
  `param_shapes`); load real ones with
  `gjscc_jax.losses.lpips_weights.load_lpips_params`.

  Example:

    >>> model = LPIPS(net='vgg')
    >>> params = load_lpips_params('vgg')                   # doctest: +SKIP
    >>> d = model.apply({'params': params}, x, y)           # (B,)  # doctest: +SKIP

  Attributes:
    net: 'vgg' or 'alex'.
    dtype: Computation dtype of the backbone (float32 or bfloat16); the
      normalisation and distance are always float32.
    remat: Recompute each backbone stage in the backward pass
      (`Backbone.remat`), and in `distance_to` each tap's normalisation and
      distance: less memory for gradients through LPIPS.
  """
  net: str = 'vgg'
  dtype: Any = jnp.float32
  remat: bool = False

  def setup(self):
    self.backbone = Backbone(self.net, self.dtype, self.remat)
    self.lins = [self.param(f'lin{i}', nn.initializers.ones, (c,), jnp.float32)
                 for i, c in enumerate(tap_channels(self.net))]

  def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
    """LPIPS(x, y) per image: shape (B,), float32."""
    check_image_shapes(x, y, net=self.net)
    return self.distance(self.features(x), self.features(y))

  def _taps(self, x: jax.Array) -> tuple[jax.Array, ...]:
    check_image_shapes(x, net=self.net)
    x = _at_least_f32(x)
    scaled = (x - jnp.asarray(SHIFT, x.dtype)) / jnp.asarray(SCALE, x.dtype)
    return self.backbone(scaled)

  def features(self, x: jax.Array) -> tuple[jax.Array, ...]:
    """Unit-normalised float32 taps of ``x``; reusable for a fixed target."""
    return tuple(normalize_channels(f) for f in self._taps(x))

  def distance_to(self, x: jax.Array,
                  fy: Sequence[jax.Array]) -> jax.Array:
    """LPIPS per image between images ``x`` and ``fy = features(y)``: (B,).

    The same value as ``distance(features(x), fy)``. With `remat`, each
    tap's normalisation and distance are also recomputed in the backward
    pass, so a gradient keeps only the raw taps of ``x``.
    """
    taps = self._taps(x)
    if len(fy) != len(self.lins):
      raise ValueError(f'LPIPS.distance_to: expects {len(self.lins)} taps '
                       f'from LPIPS.features; got {len(fy)}.')

    def term(f, g, lin):
      if f.shape != g.shape:
        raise ValueError('LPIPS.distance_to: features come from images of '
                         f'different shapes ({f.shape} vs {g.shape}).')
      return tap_distance(normalize_channels(f), g, lin)

    term = jax.checkpoint(term) if self.remat else term
    total = 0.0
    for f, g, lin in zip(taps, fy, self.lins):
      total = total + term(f, g, lin)
    return total

  def distance(self, fx: Sequence[jax.Array],
               fy: Sequence[jax.Array]) -> jax.Array:
    """LPIPS per image from two outputs of `features`: shape (B,)."""
    if len(fx) != len(self.lins) or len(fy) != len(self.lins):
      raise ValueError(f'LPIPS.distance: expects {len(self.lins)} taps from '
                       f'LPIPS.features; got {len(fx)} and {len(fy)}.')
    total = 0.0
    for a, b, lin in zip(fx, fy, self.lins):
      if a.shape != b.shape:
        raise ValueError('LPIPS.distance: features come from images of '
                         f'different shapes ({a.shape} vs {b.shape}).')
      total = total + tap_distance(a, b, lin)
    return total
