"""The adversarial ablation: the StyleGAN2 discriminator against NVIDIA's (the
oracle) and the routing of the GAN terms' gradients to their own parameters.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from gjscc_jax import schemes
from gjscc_jax.models.stylegan2 import discriminator as disc_lib
from gjscc_jax.models.stylegan2 import resampling
from tests.test_generative import RES, init_key, tiny_config


def test_discriminator_matches_the_official_one():
  torch = pytest.importorskip("torch")
  draggan = pytest.importorskip("draggan")
  sys.path.insert(0, os.path.join(os.path.dirname(draggan.__file__), "stylegan2"))
  from training import networks as official  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  d_official = official.Discriminator(
      c_dim=0, img_resolution=RES, img_channels=3, channel_base=64,
      channel_max=16, num_fp16_res=0, conv_clamp=256).eval()
  with torch.no_grad():  # Non-zero biases; one large enough to hit the clamp.
    for name, p in d_official.named_parameters():
      if name.endswith("bias"):
        p.add_(torch.randn_like(p) * 0.5)
    d_official.b16.conv0.bias[0] = 400.0
  # Official tensors -> our layout: OIHW -> HWIO, dense [out, in] -> [in, out].
  flat = {}
  for name, p in d_official.named_parameters():
    a = p.detach().numpy()
    a = a.transpose(2, 3, 1, 0) if a.ndim == 4 else a.T if a.ndim == 2 else a
    flat[tuple(name.split("."))] = jnp.asarray(a)
  params = traverse_util.unflatten_dict(flat)
  ours = disc_lib.Discriminator(img_resolution=RES, channel_base=64,
                                channel_max=16, conv_clamp=256)
  shapes = jax.eval_shape(ours.init, jax.random.PRNGKey(0), jnp.zeros((8, RES, RES, 3)))
  assert jax.tree.map(lambda s: s.shape, shapes["params"]) == jax.tree.map(
      lambda a: a.shape, params)

  images = np.random.RandomState(0).uniform(-1, 1, (8, RES, RES, 3)).astype(np.float32)
  with torch.no_grad():
    expected = d_official(torch.from_numpy(images.transpose(0, 3, 1, 2)), None)
  expected = expected.numpy()[:, 0]
  with jax.default_matmul_precision("highest"):
    logits = jax.jit(ours.apply)({"params": params}, images)
  np.testing.assert_allclose(logits, expected, rtol=1e-5,
                             atol=1e-5 * np.abs(expected).max())
  # Minibatch std couples the samples of a group (i, i + 2, i + 4, i + 6).
  with jax.default_matmul_precision("highest"):
    changed = jax.jit(ours.apply)(
        {"params": params}, np.concatenate([np.zeros_like(images[:1]), images[1:]]))
  moved = np.abs(np.asarray(changed) - np.asarray(logits)) > 1e-6
  assert moved.tolist() == [True, False, True, False, True, False, True, False]


def test_fir_downsampling_preserves_constants_and_halves_the_size():
  x = jnp.full((1, 8, 8, 2), 3.0)
  y = resampling.fir_lowpass(x, 1, stride=2)  # The 1x1-skip path's filter.
  assert y.shape == (1, 4, 4, 2)
  np.testing.assert_allclose(y[:, 1:-1, 1:-1], 3.0)  # Interior: mean kept.
  np.testing.assert_allclose(y[:, 0, 0], 3.0 * (7 / 8) ** 2)  # Zero padding.


def test_gan_terms_move_only_their_own_parameters():
  """d/d x_hat = weight * d softplus(-D(x_hat)); d/d D = D's loss + R1.

  The model's gradient reaches it only through the reconstruction x_hat, so
  the gradient with respect to x_hat shows which terms the model learns
  from: the generator term alone, never the discriminator's loss.
  """
  config = tiny_config("demo,adversarial")
  adv = config.adversarial
  scheme = schemes.build_scheme(config)
  discriminator = disc_lib.Discriminator(
      img_resolution=RES, channel_base=adv.channel_base, channel_max=adv.channel_max)
  keys = jax.random.split(jax.random.PRNGKey(1), 3)
  images = jax.random.uniform(keys[0], (8, RES, RES, 3), minval=-1.0)
  recon = jax.random.uniform(keys[1], (8, RES, RES, 3), minval=-1.0)
  d_params = jax.jit(discriminator.init)(init_key(), images)["params"]

  def logits(d, x):
    return discriminator.apply({"params": d}, x)

  def d_terms(d):  # The discriminator's loss and lazy R1 (step 0: on).
    r1 = disc_lib.r1_penalty(lambda x: logits(d, x), images)
    return (disc_lib.discriminator_loss(logits(d, images), logits(d, recon)) +
            0.5 * adv.r1_gamma * adv.r1_interval * r1)

  @jax.jit
  def gradients(d, recon, step):
    (_, aux), (g_d, g_recon) = jax.value_and_grad(
        lambda d, x: scheme.extra_loss({"discriminator": d}, images, x, keys[2], step),
        argnums=(0, 1), has_aux=True)(d, recon)
    expected_recon = jax.grad(
        lambda x: adv.weight * disc_lib.generator_loss(logits(d, x)))(recon)
    return g_d, g_recon, aux, jax.grad(d_terms)(d), expected_recon

  with jax.default_matmul_precision("highest"):
    g_d, g_recon, aux, expected_d, expected_recon = gradients(d_params, recon, 0)
    aux_off = gradients(d_params, recon, 1)[2]
  np.testing.assert_allclose(g_recon, expected_recon, rtol=1e-4, atol=1e-9)
  for a, b in zip(jax.tree.leaves(g_d), jax.tree.leaves(expected_d)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
  assert float(aux["r1"]) > 0  # Lazy R1: on at multiples of r1_interval ...
  assert float(aux_off["r1"]) == 0  # ... off in between.


def test_discriminator_has_its_own_optimiser_group():
  config = tiny_config("demo,adversarial",
                       **{"optimizer.warmup_steps": 0, "generator.train": "frozen"})
  tx, _ = schemes.build_scheme(config).make_optimizer(10)
  ones = jnp.ones((3,))
  params = {"params": {"encoder": {"w": ones}, "synthesis": {"w": ones}},
            "buffers": {"synthesis": {"noise": ones}}, "discriminator": {"w": ones}}
  updates, _ = tx.update(params, tx.init(params), params)
  # Adam(2e-3, b1=0) moves D by its lr; the frozen generator and buffers stay.
  np.testing.assert_allclose(updates["discriminator"]["w"], -config.adversarial.lr,
                             rtol=1e-4)
  np.testing.assert_allclose(updates["params"]["encoder"]["w"],
                             -config.optimizer.lr, rtol=1e-4)
  assert not np.any(updates["params"]["synthesis"]["w"])
  assert not np.any(updates["buffers"]["synthesis"]["noise"])
