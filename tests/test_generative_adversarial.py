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

from gjscc_jax.models import stylegan2_discriminator as disc_lib
from gjscc_jax.train import schemes
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
  y = disc_lib.fir_lowpass(x, 1, stride=2)  # The 1x1-skip path's filter.
  assert y.shape == (1, 4, 4, 2)
  np.testing.assert_allclose(y[:, 1:-1, 1:-1], 3.0)  # Interior: mean kept.
  np.testing.assert_allclose(y[:, 0, 0], 3.0 * (7 / 8) ** 2)  # Zero padding.


def test_gan_terms_move_only_their_own_parameters():
  """Model gradient = weight * d softplus(-D(x_hat)); D's = its loss + R1."""
  config = tiny_config("demo,adversarial")
  adv = config.adversarial
  scheme = schemes.build_scheme(config)
  images = jax.random.uniform(jax.random.PRNGKey(1), (8, RES, RES, 3), minval=-1.0)
  params = jax.jit(scheme.init)(init_key(), images)
  assert "discriminator" in params
  discriminator = disc_lib.Discriminator(
      img_resolution=RES, channel_base=adv.channel_base, channel_max=adv.channel_max)
  snr = jnp.zeros(8)
  key = jax.random.PRNGKey(2)

  def logits(d, x):
    return discriminator.apply({"params": d}, x)

  def model_only(p):  # The generator term, D fixed.
    recon = scheme.reconstruct(p, images, snr, key)
    return adv.weight * disc_lib.generator_loss(logits(params["discriminator"], recon))

  def d_only(d):  # The discriminator's loss and R1, reconstructions fixed.
    recon = scheme.reconstruct(params, images, snr, key)
    r1 = disc_lib.r1_penalty(lambda x: logits(d, x), images)
    return (disc_lib.discriminator_loss(logits(d, images), logits(d, recon)) +
            0.5 * adv.r1_gamma * adv.r1_interval * r1)

  @jax.jit
  def gradients(params, step):
    def total(p):
      recon = scheme.reconstruct(p, images, snr, key)
      return scheme.extra_loss(p, images, recon, key, step)
    (_, aux), g = jax.value_and_grad(total, has_aux=True)(params)
    return g, aux, jax.grad(model_only)(params), jax.grad(d_only)(params["discriminator"])

  with jax.default_matmul_precision("highest"):
    g, aux, g_model, g_d = gradients(params, 0)
  for a, b in zip(jax.tree.leaves(g["params"]), jax.tree.leaves(g_model["params"])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
  for a, b in zip(jax.tree.leaves(g["discriminator"]), jax.tree.leaves(g_d)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
  assert float(aux["r1"]) > 0  # Lazy R1: on at multiples of r1_interval ...
  _, aux, _, _ = gradients(params, 1)
  assert float(aux["r1"]) == 0  # ... off in between.

  # The discriminator has its own optimiser group; buffers never move.
  tx, _ = scheme.make_optimizer(10)
  updates, _ = jax.jit(tx.update)(g, tx.init(params), params)
  assert all(np.any(np.asarray(u)) for u in jax.tree.leaves(updates["discriminator"]))
  assert not any(np.any(np.asarray(u)) for u in jax.tree.leaves(updates["buffers"]))
