"""DISTS (Ding, Ma, Wang and Simoncelli, TPAMI 2020) as a pure Flax module.

DISTS compares two images through VGG16 whose max-pools are replaced by
*L2 pooling*. For images ``x`` and ``y`` in [-1, 1] it computes

  1. ``u = (x + 1) / 2`` in [0, 1] (not clipped), then the ImageNet normalisation
     ``(u - MEAN) / STD``;
  2. six feature maps ``f_0 ... f_5``: ``f_0 = u`` itself (3 channels, not
     normalised) and the VGG16 taps relu1_2, relu2_2, relu3_3, relu4_3,
     relu5_3 (64, 128, 256, 512, 512 channels), where each of the four
     pools is ``l2pool(f) = sqrt(g * f^2 + 1e-12)``: a depthwise 3x3 filter
     ``g = h h^T / sum(h h^T)``, ``h = (1/2, 1, 1/2)`` (the inner Hann window
     of length 5), stride 2, zero padding 1, so an H x W map becomes
     ``ceil(H / 2) x ceil(W / 2)``;
  3. per channel ``c`` of map ``k``, with spatial means ``mu``, biased
     variances ``var`` and ``cov = mean(fx fy) - mu_x mu_y``:
     ``S1 = (2 mu_x mu_y + c1) / (mu_x^2 + mu_y^2 + c1)`` (structure of the
     textures' means) and ``S2 = (2 cov + c2) / (var_x + var_y + c2)``,
     ``c1 = c2 = 1e-6``;
  4. ``DISTS(x, y) = 1 - sum_kc (alpha_kc S1_kc + beta_kc S2_kc) / W`` with
     ``W = sum(alpha) + sum(beta)``: one value per image, 0 for identical
     images.

This is the arithmetic of ``DISTS_pytorch.DISTS`` 0.1 (the authors' PyPI
package) in NHWC layout. The VGG16 weights are torchvision's ImageNet
weights, the same LPIPS-VGG uses (`gjscc_jax.losses.lpips` names them
alike, so one parameter tree serves both); ``alpha`` and ``beta`` (1475
values each) are the released ones (`gjscc_jax.losses.dists_weights`).
Statistics are accumulated in float32 whatever ``dtype`` the backbone uses.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gjscc_jax.losses import lpips as lpips_lib
from gjscc_jax.ops.elementwise import relu

#: ImageNet statistics of [0, 1] RGB images (torchvision's normalisation).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: Channels of the six compared maps (the image, then the five VGG16 taps).
CHANNELS = (3, 64, 128, 256, 512, 512)
#: Stabilisers of the two similarity terms.
C1 = C2 = 1e-6
#: Added under the square root of L2 pooling.
L2POOL_EPS = 1e-12
#: The separable L2-pooling filter (sums to 1 once squared-out as h h^T).
_TAPS = (0.25, 0.5, 0.25)


def l2_pool(x: jax.Array) -> jax.Array:
  """DISTS's L2 pooling: ``sqrt(g * x^2 + 1e-12)``, stride 2, padding 1.

  Args:
    x: (B, H, W, C).

  Returns:
    (B, ceil(H / 2), ceil(W / 2), C). The 3x3 filter is separable,
    ``g = t t^T`` with ``t = (1/4, 1/2, 1/4)``, so it is applied as two
    strided 3-tap sums (elementwise work instead of a depthwise conv).
  """
  sq = jnp.square(x)

  def along(a, axis):
    n = a.shape[axis]
    out = (n - 1) // 2 + 1
    pad = [(0, 0)] * a.ndim
    pad[axis] = (1, 1)
    a = jnp.pad(a, pad)
    total = 0.0
    for offset, weight in enumerate(_TAPS):
      sl = [slice(None)] * a.ndim
      sl[axis] = slice(offset, offset + 2 * out - 1, 2)
      total = total + weight * a[tuple(sl)]
    return total

  return jnp.sqrt(along(along(sq, 1), 2) + L2POOL_EPS)


def param_shapes() -> dict[str, Any]:
  """Shapes of DISTS's parameters: ``{'backbone': <LPIPS-VGG backbone>,
  'alpha': (1475,), 'beta': (1475,)}``."""
  return {'backbone': lpips_lib.param_shapes('vgg')['backbone'],
          'alpha': (sum(CHANNELS),), 'beta': (sum(CHANNELS),)}


class L2PooledVGG16(nn.Module):
  """VGG16 up to relu5_3 with L2 pooling (`l2_pool`) instead of max-pools.

  Attributes:
    dtype: Computation dtype of the convolutions (parameters are float32).
  """
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array) -> tuple[jax.Array, ...]:
    """The five taps (relu1_2 ... relu5_3) of normalised images, float32."""
    h = h.astype(self.dtype)
    taps = []
    for layer in lpips_lib.VGG16_LAYERS:
      if layer.pool_before:
        h = l2_pool(h)
      h = relu(lpips_lib.Conv(layer.out_channels, layer.kernel, layer.stride,
                              layer.padding, self.dtype, name=layer.name)(h))
      if layer.tap:
        taps.append(h.astype(jnp.float32))
    return tuple(taps)


class DISTS(nn.Module):
  """DISTS distance between [-1, 1] NHWC image batches; shape (B,), float32.

  Parameters: `param_shapes`; load the real ones with
  `gjscc_jax.losses.dists_weights.load_dists_params`.

  Example:

    >>> params = load_dists_params()                        # doctest: +SKIP
    >>> d = DISTS().apply({'params': params}, x, y)        # (B,)  # doctest: +SKIP

  Attributes:
    dtype: Computation dtype of the VGG16 convolutions (float32 or
      bfloat16); the statistics and the distance are always float32.
  """
  dtype: Any = jnp.float32

  def setup(self):
    self.backbone = L2PooledVGG16(self.dtype)
    n = sum(CHANNELS)
    self.alpha = self.param('alpha', nn.initializers.constant(0.1), (n,),
                            jnp.float32)
    self.beta = self.param('beta', nn.initializers.constant(0.1), (n,),
                           jnp.float32)

  def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
    """DISTS(x, y) per image: shape (B,), float32."""
    lpips_lib.check_image_shapes(x, y, net=None, name='DISTS')
    return self.distance(self.features(x), self.features(y))

  def features(self, x: jax.Array) -> tuple[jax.Array, ...]:
    """The six maps DISTS compares (float32), reusable for a fixed target."""
    lpips_lib.check_image_shapes(x, net=None, name='DISTS')
    unit = (x.astype(jnp.promote_types(x.dtype, jnp.float32)) + 1.0) * 0.5
    h = (unit - jnp.asarray(MEAN, unit.dtype)) / jnp.asarray(STD, unit.dtype)
    return (unit,) + self.backbone(h)

  def distance(self, fx: Sequence[jax.Array],
               fy: Sequence[jax.Array]) -> jax.Array:
    """DISTS per image from two outputs of `features`: shape (B,)."""
    if len(fx) != len(CHANNELS) or len(fy) != len(CHANNELS):
      raise ValueError(f'DISTS.distance: expects {len(CHANNELS)} maps from '
                       f'DISTS.features; got {len(fx)} and {len(fy)}.')
    total_weight = jnp.sum(self.alpha) + jnp.sum(self.beta)
    split = [sum(CHANNELS[:k]) for k in range(1, len(CHANNELS))]
    alphas = jnp.split(self.alpha / total_weight, split)
    betas = jnp.split(self.beta / total_weight, split)
    similarity = 0.0
    for a, b, alpha, beta in zip(fx, fy, alphas, betas):
      if a.shape != b.shape:
        raise ValueError('DISTS.distance: features come from images of '
                         f'different shapes ({a.shape} vs {b.shape}).')
      mx = jnp.mean(a, axis=(1, 2))
      my = jnp.mean(b, axis=(1, 2))
      s1 = (2 * mx * my + C1) / (mx * mx + my * my + C1)
      vx = jnp.mean(jnp.square(a - mx[:, None, None]), axis=(1, 2))
      vy = jnp.mean(jnp.square(b - my[:, None, None]), axis=(1, 2))
      cov = jnp.mean(a * b, axis=(1, 2)) - mx * my
      s2 = (2 * cov + C2) / (vx + vy + C2)
      similarity = similarity + s1 @ alpha + s2 @ beta
    return 1.0 - similarity
