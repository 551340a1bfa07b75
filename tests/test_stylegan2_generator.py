"""Behaviour of the Flax StyleGAN2 that needs no oracle: identities that must
hold exactly (partial runs, noise injection, vmap, truncation), the
activation-modulation form against explicit per-sample kernels, bf16, errors.
"""

import functools

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest

from gjscc_jax.models.stylegan2 import (Generator, layers, load_stylegan2,
                                        resampling, save_stylegan2, w_avg)
from gjscc_jax.models.stylegan2 import loading


@pytest.fixture(autouse=True)
def _highest_precision():
  """These tests compare against float64 references at full fp32 precision
  (scoped to this module, not the rest of the session)."""
  with jax.default_matmul_precision('highest'):
    yield


CONFIG = dict(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=2,
              channel_base=128, channel_max=16)


def random_variables(g, seed=0):
  """Variables of `g` filled with N(0, 1) draws (no zero biases/strengths).

  Built from the shapes alone, which is much faster than compiling `g.init`.
  """
  shapes = jax.eval_shape(g.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, g.z_dim)))
  rng = np.random.RandomState(seed)
  return jax.tree.map(
      lambda s: jnp.asarray(np.asarray(rng.randn(*s.shape), np.float32)),
      shapes)


@pytest.fixture(scope='module')
def gen():
  g = Generator(**CONFIG)
  v = random_variables(g)
  ws = jax.random.normal(jax.random.PRNGKey(2), (3, g.num_ws, g.w_dim))
  return g, v, ws


@functools.lru_cache(maxsize=None)
def _compiled(g, static):
  return jax.jit(functools.partial(g.apply, method=g.synthesize,
                                   **dict(static)))


def _synth(g, v, ws, **kw):
  """Jitted synthesis (static options are hashed into the cache key)."""
  static = tuple(sorted((k, kw.pop(k)) for k in
                        ('noise_mode', 'start_block', 'end_block') if k in kw))
  return _compiled(g, static)(v, ws, **kw)


def test_structure_helpers(gen):
  g, v, _ = gen
  assert (g.num_blocks, g.num_ws, g.num_layers) == (3, 6, 5)
  assert g.noise_shapes == ((4, 4), (8, 8), (8, 8), (16, 16), (16, 16))
  assert g.feature_shapes == ((4, 4, 16), (8, 8, 16), (16, 16, 8))
  assert w_avg(v).shape == (16,)
  buffers = v['buffers']['synthesis']
  for layer, shape in enumerate(g.noise_shapes):
    res = 4 * 2**((layer + 1) // 2)
    name = 'conv1' if layer % 2 == 0 else 'conv0'
    assert buffers[f'b{res}'][name]['noise_const'].shape == shape


def _per_sample_modconv(x, kernel, styles, demodulate, up):
  """The official *fused* formulation: an explicit kernel per sample."""

  def one(xi, si):
    w = kernel * si[None, None, :, None]
    if demodulate:
      w = w * jax.lax.rsqrt(jnp.sum(w**2, axis=(0, 1, 2)) + 1e-8)
    if up:
      return resampling.upsample_conv_2x(xi[None], w)[0]
    pad = kernel.shape[0] // 2
    return jax.lax.conv_general_dilated(
        xi[None], w, (1, 1), [(pad, pad)] * 2,
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))[0]

  return jax.vmap(one)(x, styles)


@pytest.mark.parametrize('demodulate,up,k', [(True, False, 3), (True, True, 3),
                                             (False, False, 1)])
def test_activation_modulation_equals_per_sample_kernels(demodulate, up, k):
  keys = jax.random.split(jax.random.PRNGKey(3), 3)
  x = jax.random.normal(keys[0], (3, 5, 5, 6))
  kernel = jax.random.normal(keys[1], (k, k, 6, 7))
  styles = 1 + jax.random.normal(keys[2], (3, 6))
  got = layers.modulated_conv2d(x, kernel, styles, demodulate=demodulate,
                                up=up)
  want = _per_sample_modconv(x, kernel, styles, demodulate, up)
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_vmap_of_single_image_function_matches_batch(gen):
  g, v, ws = gen
  batched = _synth(g, v, ws)
  single = jax.jit(jax.vmap(lambda w: _synth(g, v, w[None])[0]))(ws)
  np.testing.assert_allclose(single, batched, rtol=1e-5, atol=1e-5)


def test_vmapped_gradient_uses_only_ordinary_convolutions(gen):
  g, v, ws = gen
  grad = jax.jit(jax.vmap(
      jax.grad(lambda w: jnp.sum(_synth(g, v, w[None])**2))))
  # The HLO before XLA's optimisations: every convolution of the forward and
  # the backward pass (custom VJPs included) is an ordinary one (HLO prints
  # feature_group_count / batch_group_count only when they are not 1).
  hlo = grad.lower(ws).as_text(dialect='hlo')
  assert hlo.count(' convolution(') > 10
  assert 'feature_group_count' not in hlo
  assert 'batch_group_count' not in hlo
  assert np.all(np.isfinite(grad(ws)))


@pytest.mark.parametrize('split', [1, 2])
def test_partial_runs_compose_to_the_full_network(gen, split):
  g, v, ws = gen
  full = _synth(g, v, ws)
  x, img = _synth(g, v, ws, end_block=split)
  assert x.shape[1:] == g.feature_shapes[split - 1]
  assert img.shape[1:3] == x.shape[1:3]
  rest = _synth(g, v, ws, start_block=split, x=x, img=img)
  np.testing.assert_allclose(rest, full, rtol=1e-5, atol=1e-5)
  # A middle range returns the block outputs too.
  if split == 1:
    x2, img2 = _synth(g, v, ws, start_block=1, end_block=2, x=x, img=img)
    want_x, want_img = _synth(g, v, ws, end_block=2)
    np.testing.assert_allclose(x2, want_x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(img2, want_img, rtol=1e-5, atol=1e-5)


def test_external_noise_replaces_the_noise_input(gen):
  g, v, ws = gen
  const = _synth(g, v, ws)
  buffers = v['buffers']['synthesis']
  maps = []
  for layer, (h, w) in enumerate(g.noise_shapes):
    res = 4 * 2**((layer + 1) // 2)
    name = 'conv1' if layer % 2 == 0 else 'conv0'
    maps.append(buffers[f'b{res}'][name]['noise_const'][None, :, :, None])
  np.testing.assert_allclose(_synth(g, v, ws, noise=maps), const, rtol=1e-6,
                             atol=1e-6)
  zeros = {l: jnp.zeros((1, h, w, 1)) for l, (h, w) in
           enumerate(g.noise_shapes)}
  np.testing.assert_allclose(_synth(g, v, ws, noise=zeros),
                             _synth(g, v, ws, noise_mode='none'), rtol=1e-6,
                             atol=1e-6)
  # Per-channel feature maps on one layer change only what follows it.
  feat = jax.random.normal(jax.random.PRNGKey(4), (3, 8, 8, 16))
  x_a, _ = _synth(g, v, ws, end_block=1, noise={2: feat})
  x_b, _ = _synth(g, v, ws, end_block=1)
  np.testing.assert_array_equal(x_a, x_b)       # Layer 2 is in block 1.
  assert np.abs(_synth(g, v, ws, noise={2: feat}) - const).max() > 1e-3


def test_noise_strength_scales_injected_noise(gen):
  g, v, ws = gen
  v0 = jax.tree_util.tree_map_with_path(
      lambda p, x: jnp.zeros_like(x) if 'noise_strength' in str(p) else x, v)
  feat = {3: jax.random.normal(jax.random.PRNGKey(5), (3, 16, 16, 8))}
  np.testing.assert_allclose(_synth(g, v0, ws, noise=feat),
                             _synth(g, v0, ws, noise_mode='none'), rtol=1e-5,
                             atol=1e-5)


def test_random_noise(gen):
  g, v, ws = gen
  with pytest.raises(ValueError, match='PRNG key'):
    _synth(g, v, ws, noise_mode='random')
  a = _synth(g, v, ws, noise_mode='random', key=jax.random.PRNGKey(0))
  b = _synth(g, v, ws, noise_mode='random', key=jax.random.PRNGKey(0))
  c = _synth(g, v, ws, noise_mode='random', key=jax.random.PRNGKey(1))
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 1e-3


def test_truncation(gen):
  g, v, _ = gen
  z = jax.random.normal(jax.random.PRNGKey(6), (2, g.z_dim))
  ws = g.apply(v, z, method=g.map)
  assert ws.shape == (2, g.num_ws, g.w_dim)
  np.testing.assert_array_equal(ws, jnp.broadcast_to(ws[:, :1], ws.shape))
  collapsed = g.apply(v, z, truncation_psi=0.0, method=g.map)
  np.testing.assert_allclose(collapsed, jnp.broadcast_to(w_avg(v), ws.shape),
                             rtol=1e-6)
  half = g.apply(v, z, truncation_psi=0.5, truncation_cutoff=2, method=g.map)
  np.testing.assert_allclose(half[:, :2], (ws[:, :2] + w_avg(v)) / 2,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(half[:, 2:], ws[:, 2:])
  # psi may be traced (e.g. swept under jit).
  traced = jax.jit(lambda p: g.apply(v, z, truncation_psi=p, method=g.map))
  np.testing.assert_allclose(traced(0.0), collapsed, rtol=1e-6)


def test_bfloat16_compute_stays_close_to_float32(gen):
  g, v, ws = gen
  ref = _synth(g, v, ws)
  g16 = Generator(**CONFIG, dtype=jnp.bfloat16)
  img = _synth(g16, v, ws)
  assert img.dtype == jnp.float32
  rel = float(jnp.linalg.norm(img - ref) / jnp.linalg.norm(ref))
  assert rel < 0.05, rel


def test_gradients_match_finite_differences(gen):
  g, v, ws = gen
  f = jax.jit(lambda w: jnp.sum(jnp.sin(_synth(g, v, w))))
  jax.test_util.check_grads(f, (ws,), order=1, modes=('rev',), atol=2e-2,
                            rtol=2e-2, eps=1e-3)


def test_bad_inputs_raise_clear_errors(gen):
  g, v, ws = gen
  with pytest.raises(ValueError, match=r'ws must have shape \(B, 6, 16\)'):
    _synth(g, v, ws[:, :5])
  with pytest.raises(ValueError, match='needs x'):
    _synth(g, v, ws, start_block=1)
  with pytest.raises(ValueError, match='start_block < end_block'):
    _synth(g, v, ws, start_block=2, end_block=2, x=jnp.zeros((3, 8, 8, 16)))
  with pytest.raises(ValueError, match=r'noise for a layer'):
    _synth(g, v, ws, noise={0: jnp.zeros((3, 8, 8, 1))})
  with pytest.raises(ValueError, match='one entry'):
    _synth(g, v, ws, noise=[None])
  with pytest.raises(ValueError, match='noise_mode'):
    _synth(g, v, ws, noise_mode='fixed')
  with pytest.raises(ValueError, match='power of two'):
    Generator(img_resolution=48).num_ws  # noqa: B018
  with pytest.raises(ValueError, match=r'z must have shape \(B, 16\)'):
    g.apply(v, jnp.zeros((2, 8)), method=g.map)


def test_save_and_load_round_trip(gen, tmp_path):
  g, v, ws = gen
  save_stylegan2(tmp_path / 'g', g.config, v, source={'kind': 'test'})
  g2, v2 = load_stylegan2(tmp_path / 'g')
  assert g2.config == g.config
  np.testing.assert_array_equal(_synth(g2, v2, ws), _synth(g, v, ws))
  bad = jax.tree_util.tree_map_with_path(
      lambda p, x: x[:-1] if 'fc0' in str(p) and 'bias' in str(p) else x, v)
  with pytest.raises(ValueError, match='wrong shapes.*fc0/bias'):
    save_stylegan2(tmp_path / 'bad', g.config, bad)
  with pytest.raises(FileNotFoundError, match='weights_convert stylegan2'):
    load_stylegan2(tmp_path / 'missing')
  assert loading.read_config(tmp_path / 'g') == g.config
