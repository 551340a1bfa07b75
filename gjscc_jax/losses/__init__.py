"""Losses: LPIPS (VGG16 / AlexNet, v0.1), DISTS, and the MSE + lambda * LPIPS
objective."""

from gjscc_jax.losses.lpips import LPIPS
from gjscc_jax.losses.lpips_weights import load_lpips_params
from gjscc_jax.losses.lpips_weights import save_lpips_params
from gjscc_jax.losses.perceptual import check_image_range
from gjscc_jax.losses.perceptual import mse
from gjscc_jax.losses.perceptual import perceptual_loss
from gjscc_jax.losses.perceptual import PerceptualLoss
from gjscc_jax.losses.perceptual import PerceptualTarget

__all__ = [
    'LPIPS', 'PerceptualLoss', 'PerceptualTarget', 'check_image_range',
    'load_lpips_params', 'mse', 'perceptual_loss', 'save_lpips_params',
]
