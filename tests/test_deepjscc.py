"""Tests for the DeepJSCC networks: GDN, blocks, both architectures."""

import fractions

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from gjscc_jax import channel
from gjscc_jax.models import gdn as gdn_lib
from gjscc_jax.models import jscc_blocks
from gjscc_jax.models.deepjscc import DeepJSCC

_SNR = jnp.array([-3.0, 7.0])


def _compile(fn, *args):
  """jit-compiles `fn` for `args` with XLA's backend optimisations off.

  These tiny test programs then build about 3x faster; results are the same
  computation.
  """
  return jax.jit(fn).lower(*args).compile(
      compiler_options={"xla_backend_optimization_level": 0})


def _images(batch=2, size=32, seed=0):
  return jax.random.uniform(jax.random.key(seed), (batch, size, size, 3),
                            minval=-1.0, maxval=1.0)


def _init(model, images, snr=_SNR):
  args = (jax.random.key(1), images, snr, jax.random.key(2))
  return _compile(model.init, *args)(*args)


def _random_params(model, images, seed=0):
  """Generic random parameters with `model`'s structure, in one RNG call.

  Compiling `model.init` of the Tung network costs ~10 s of CPU (one threefry
  program per kernel), too much for this suite; the tests that use these
  parameters only need generic weights. Kernels are N(0, 1/fan_in) (the scale
  of flax's default lecun_normal), biases 0, and GDN parameters take the
  documented initial values (beta = 1, gamma = 0.1 I). `small` below uses the
  real `model.init`.
  """
  shapes = jax.eval_shape(model.init, jax.random.key(0), images, _SNR,
                          jax.random.key(0))
  leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
  total = sum(int(np.prod(leaf.shape)) for _, leaf in leaves)
  noise = np.random.default_rng(seed).standard_normal(total).astype(np.float32)
  values, start = [], 0
  for path, leaf in leaves:
    name, size = path[-1].key, int(np.prod(leaf.shape))
    if name == "kernel":
      fan_in = size // leaf.shape[-1]
      value = noise[start:start + size].reshape(leaf.shape) / np.sqrt(fan_in)
      start += size
    elif name == "bias":
      value = np.zeros(leaf.shape, np.float32)
    elif name == "beta":
      value = gdn_lib.nonnegative_init(jnp.ones(leaf.shape), 1e-6)
    elif name == "gamma":
      value = gdn_lib.nonnegative_init(0.1 * jnp.eye(leaf.shape[0]))
    else:
      raise AssertionError(f"unexpected parameter {jax.tree_util.keystr(path)}")
    values.append(jnp.asarray(value, jnp.float32))
  return jax.tree_util.tree_unflatten(treedef, values)


@pytest.fixture(scope="module")
def tung():
  """A small SNR-adaptive Tung model and generic random parameters."""
  model = DeepJSCC(arch="tung", num_filters=16, latent_channels=4,
                   snr_adaptive=True)
  return model, _random_params(model, _images())


@pytest.fixture(scope="module")
def small():
  """A small-arch model over fast Rayleigh fading, with its real init."""
  model = DeepJSCC(arch="small", num_filters=16, latent_channels=8,
                   downsampling=4,
                   channel=channel.Channel("rayleigh", fading="fast"))
  return model, _init(model, _images())


# --- GDN ---------------------------------------------------------------------


def _gdn_reference(x, beta, gamma, inverse):
  """y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2); times for the inverse."""
  x = np.asarray(x, np.float64)
  norm = beta + np.einsum("...j,ij->...i", x**2, gamma)
  return x * np.sqrt(norm) if inverse else x / np.sqrt(norm)


@pytest.fixture
def highest_precision():
  """Comparisons with float64 references at full float32 precision."""
  with jax.default_matmul_precision("highest"):
    yield


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_matches_definition(inverse, highest_precision):
  x = 2.0 * jax.random.normal(jax.random.key(0), (2, 3, 5, 6))
  layer = gdn_lib.GDN(inverse=inverse)
  params = jax.jit(layer.init)(jax.random.key(1), x)
  apply = jax.jit(layer.apply)
  # At initialisation beta = 1 and gamma = 0.1 I.
  np.testing.assert_allclose(
      apply(params, x),
      _gdn_reference(x, np.ones(6), 0.1 * np.eye(6), inverse), rtol=1e-5)
  # Random trained-like parameters, some stored values below the bounds.
  rng = np.random.default_rng(2)
  stored = {"beta": jnp.asarray(rng.uniform(-0.5, 1.5, 6), jnp.float32),
            "gamma": jnp.asarray(rng.uniform(-0.2, 0.6, (6, 6)), jnp.float32)}
  beta = np.maximum(np.asarray(stored["beta"], np.float64),
                    (1e-6 + 2.0**-36)**0.5)**2 - 2.0**-36
  gamma = np.maximum(np.asarray(stored["gamma"], np.float64),
                     2.0**-18)**2 - 2.0**-36
  assert beta.min() >= 1e-6 - 1e-12 and gamma.min() >= 0
  eff_beta, eff_gamma = gdn_lib.effective_gdn_params(stored)
  np.testing.assert_allclose(eff_beta, beta, rtol=1e-6)
  np.testing.assert_allclose(eff_gamma, gamma, rtol=1e-6, atol=1e-12)
  np.testing.assert_allclose(
      apply({"params": stored}, x),
      _gdn_reference(x, beta, gamma, inverse), rtol=1e-5, atol=1e-6)


def _trained_like_gdn_params(channels, seed=0):
  rng = np.random.default_rng(seed)
  return {"params": {
      "beta": jnp.asarray(rng.uniform(0.5, 1.5, channels), jnp.float32),
      "gamma": jnp.asarray(rng.uniform(0.0, 0.3, (channels, channels)),
                           jnp.float32)}}


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_default_precision_and_bfloat16(inverse):
  """The norm's matmul runs at the default precision (no forced 'highest').

  On CPU a default-precision float32 matmul is a float32 matmul, so it
  agrees with 'highest' to float32 rounding (1e-6 relative here); on a GPU
  the default rounds float32 operands to TF32 (~1e-3 relative), on a TPU to
  bfloat16 passes. With dtype=bfloat16 the matmul's operands are bfloat16
  (float32 accumulation): the output is then within 1.5 bfloat16 steps
  (1.5 * 2^-8 relative) of the exact GDN of the same bfloat16 input, where
  rounding the exact value to bfloat16 alone costs up to 2^-8.
  """
  x = 3.0 * jax.random.normal(jax.random.key(0), (2, 8, 8, 64))
  params = _trained_like_gdn_params(64)
  plain = jax.jit(gdn_lib.GDN(inverse=inverse).apply)
  with jax.default_matmul_precision("highest"):
    exact = jax.jit(gdn_lib.GDN(inverse=inverse).apply)(params, x)
  np.testing.assert_allclose(plain(params, x), exact, rtol=1e-6, atol=1e-7)

  x16 = x.astype(jnp.bfloat16)
  layer16 = gdn_lib.GDN(inverse=inverse, dtype=jnp.bfloat16)
  y16 = jax.jit(layer16.apply)(params, x16)
  assert y16.dtype == jnp.bfloat16
  # The einsum's operands really are bfloat16 (f32 accumulation).
  jaxpr = str(jax.make_jaxpr(layer16.apply)(params, x16))
  assert "bf16[64,64]" in jaxpr and "preferred_element_type=float32" in jaxpr
  with jax.default_matmul_precision("highest"):
    exact16 = np.asarray(gdn_lib.GDN(inverse=inverse).apply(
        params, x16.astype(jnp.float32)), np.float64)
  rel = np.abs(np.asarray(y16, np.float64) - exact16) / np.abs(exact16)
  assert rel.max() <= 1.5 * 2.0**-8, rel.max()
  # Parameter gradients stay float32.
  grads = jax.grad(lambda p: jnp.sum(layer16.apply(p, x16).astype(
      jnp.float32)))(params)
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))


def test_lower_bound_gradient_lets_parameters_recover():
  x = jnp.array([0.5, 2.0])
  # Pushing down: no gradient where clamped (x < bound).
  np.testing.assert_array_equal(
      jax.grad(lambda v: jnp.sum(gdn_lib.lower_bound(v, 1.0)))(x), [0.0, 1.0])
  # Pushing up (negative cotangent): the clamped value receives it.
  np.testing.assert_array_equal(
      jax.grad(lambda v: -jnp.sum(gdn_lib.lower_bound(v, 1.0)))(x),
      [-1.0, -1.0])


# --- blocks ------------------------------------------------------------------


def test_pixel_shuffle_matches_torch():
  x = np.random.default_rng(3).normal(size=(2, 3, 4, 12)).astype(np.float32)
  expected = torch.nn.functional.pixel_shuffle(
      torch.from_numpy(x).permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1).numpy()
  np.testing.assert_array_equal(jscc_blocks.pixel_shuffle(jnp.asarray(x), 2),
                                expected)


def test_af_module_scales_channels_by_a_function_of_the_snr():
  x = jax.random.normal(jax.random.key(4), (2, 4, 4, 5))
  af = jscc_blocks.AFModule()
  params = jax.jit(af.init)(jax.random.key(5), x, jnp.zeros(2))
  apply = jax.jit(af.apply)
  out_a = apply(params, x, jnp.array([0.0, 0.0]))
  out_b = apply(params, x, jnp.array([0.0, 10.0]))
  scale = np.asarray(out_a / x)
  # One scale per (image, channel) in (0, 1), constant over positions.
  np.testing.assert_allclose(scale, scale[:, :1, :1, :] * np.ones_like(scale),
                             rtol=1e-5)
  assert np.all((scale > 0) & (scale < 1))
  np.testing.assert_array_equal(out_a[0], out_b[0])
  assert not np.allclose(out_a[1], out_b[1])


# --- DeepJSCC shapes and ratios ----------------------------------------------


@pytest.mark.parametrize("arch", ["tung", "small"])
@pytest.mark.parametrize("latent_channels", [2, 4, 8])
def test_shapes_and_bandwidth_ratio(arch, latent_channels):
  model = DeepJSCC(arch=arch, num_filters=16, latent_channels=latent_channels)
  images = _images(size=48)
  # eval_shape traces without compiling, so all six configurations are cheap.
  params = jax.eval_shape(model.init, jax.random.key(1), images, _SNR,
                          jax.random.key(2))
  latents = jax.eval_shape(
      lambda p: model.apply(p, images, _SNR, method=DeepJSCC.encode), params)
  recon = jax.eval_shape(model.apply, params, images, _SNR, jax.random.key(3))
  assert latents.shape == (2, 3, 3, latent_channels)
  assert recon.shape == images.shape and recon.dtype == jnp.float32
  rho = channel.bandwidth_ratio(images.shape, latents.shape)
  assert rho == latent_channels / 1536
  assert model.bandwidth_ratio == fractions.Fraction(latent_channels, 1536)
  assert channel.latent_channels_for_bcr(rho) == latent_channels


def test_small_arch_other_downsampling():
  model = DeepJSCC(arch="small", num_filters=8, latent_channels=6,
                   downsampling=4)
  images = _images(size=32)
  params = jax.eval_shape(model.init, jax.random.key(1), images, 0.0,
                          jax.random.key(2))
  latents = jax.eval_shape(
      lambda p: model.apply(p, images, method=DeepJSCC.encode), params)
  assert latents.shape == (2, 8, 8, 6)
  assert channel.bandwidth_ratio(images.shape, latents.shape) == 6 / 96


# --- DeepJSCC behaviour ------------------------------------------------------


def _loss(model):
  def loss(params, images, snr, key):
    return jnp.mean(jnp.square(model.apply(params, images, snr, key) - images))
  return loss


@pytest.mark.parametrize("which", ["tung", "small"])
def test_gradients_reach_every_parameter(which, tung, small):
  model, params = {"tung": tung, "small": small}[which]
  args = (params, _images(), _SNR, jax.random.key(3))
  grads = _compile(jax.grad(_loss(model)), *args)(*args)
  dead = [jax.tree_util.keystr(path)
          for path, g in jax.tree_util.tree_leaves_with_path(grads)
          if not np.all(np.isfinite(g)) or not np.any(g != 0)]
  assert not dead, f"no (finite) gradient for: {dead}"
  if which == "tung":
    assert any("af_" in jax.tree_util.keystr(p)
               for p, _ in jax.tree_util.tree_leaves_with_path(grads))


def test_snr_adaptive_decoder_depends_on_snr(tung):
  model, params = tung
  received = jax.random.normal(jax.random.key(5), (2, 2, 2, 4))
  decode = lambda p, r, s: model.apply(p, r, s, method=DeepJSCC.decode)
  decode = _compile(decode, params, received, _SNR)
  low = decode(params, received, jnp.array([-5.0, -5.0]))
  high = decode(params, received, jnp.array([-5.0, 15.0]))
  np.testing.assert_array_equal(low[0], high[0])  # same SNR, same output
  assert np.max(np.abs(np.asarray(low[1] - high[1]))) > 1e-6
  assert np.all(np.abs(np.asarray(low)) <= 1.0)


def test_non_adaptive_model_ignores_snr_outside_the_channel(small):
  model, params = small
  received = jax.random.normal(jax.random.key(6), (2, 8, 8, 8))
  decode = jax.jit(lambda r, s: model.apply(params, r, s,
                                            method=DeepJSCC.decode))
  np.testing.assert_array_equal(decode(received, jnp.array([-5.0, 0.0])),
                                decode(received, jnp.array([20.0, 3.0])))


def test_apply_is_deterministic_per_key(tung):
  model, params = tung
  images = _images()
  args = (params, images, _SNR, jax.random.key(7))
  apply = _compile(model.apply, *args)
  a = apply(*args)
  b = apply(params, images, _SNR, jax.random.key(7))
  c = apply(params, images, _SNR, jax.random.key(8))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


def test_jit_and_vmap_are_consistent(small):
  model, params = small
  images, keys = _images(), jax.random.split(jax.random.key(9), 2)
  eager = np.stack([
      model.apply(params, images[i:i + 1], _SNR[i:i + 1], keys[i])[0]
      for i in range(2)
  ])
  single = lambda x, s, k: model.apply(params, x[None], s[None], k)[0]
  np.testing.assert_allclose(jax.jit(single)(images[0], _SNR[0], keys[0]),
                             eager[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jax.jit(jax.vmap(single))(images, _SNR, keys),
                             eager, rtol=1e-5, atol=1e-6)


def test_bfloat16_compute_keeps_float32_params(small):
  _, params = small
  model = DeepJSCC(arch="small", num_filters=16, latent_channels=8,
                   downsampling=4,
                   channel=channel.Channel("rayleigh", fading="fast"),
                   dtype=jnp.bfloat16)
  images = _images()
  out = jax.jit(model.apply)(params, images, _SNR, jax.random.key(10))
  reference = jax.jit(small[0].apply)(params, images, _SNR, jax.random.key(10))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  assert out.dtype == jnp.float32
  scale = np.max(np.abs(np.asarray(reference)))
  np.testing.assert_allclose(out, reference, atol=0.05 * scale)


@pytest.mark.parametrize("kwargs,shape,match", [
    (dict(arch="small", downsampling=4), (1, 30, 32, 3), "not divisible"),
    (dict(arch="tung"), (1, 32, 40, 3), "not divisible"),
    (dict(latent_channels=5), (1, 32, 32, 3), "even"),
    (dict(arch="tung", downsampling=8), (1, 32, 32, 3), "fixed 16x"),
    (dict(arch="small", downsampling=12), (1, 48, 48, 3), "power of two"),
    (dict(arch="resnet"), (1, 32, 32, 3), "arch='resnet'"),
    (dict(channel="nakagami"), (1, 32, 32, 3), "channel='nakagami'"),
    (dict(arch="small"), (1, 32, 32, 1), r"\(B, H, W, 3\)"),
])
def test_invalid_configurations_raise(kwargs, shape, match):
  model = DeepJSCC(num_filters=8, **kwargs)
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape), 0.0,
                   jax.random.key(1))


def test_snr_adaptive_requires_snr():
  model = DeepJSCC(arch="small", num_filters=8, snr_adaptive=True)
  with pytest.raises(ValueError, match="needs snr_db"):
    jax.eval_shape(
        lambda x: model.init(jax.random.key(0), x, method=DeepJSCC.encode),
        jnp.zeros((1, 32, 32, 3)))
