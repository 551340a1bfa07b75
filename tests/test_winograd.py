"""Winograd F(4x4, 3x3): equal to the direct convolution up to its rounding,
its gradients through conv2d likewise, and taken by conv2d only where meant
(CPU, float32, enough tiles and channels, not under 'highest')."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from gjscc_jax.ops import conv2d as conv2d_lib
from gjscc_jax.ops.conv2d import same_conv2d
from gjscc_jax.ops.winograd import transform_kernel, winograd_conv3x3

DN = ('NHWC', 'HWIO', 'NHWC')
SAME = ((1, 1), (1, 1))
#: The fewest channels that conv2d sends to Winograd.
C = conv2d_lib.WINOGRAD_MIN_CHANNELS


@pytest.fixture(autouse=True)
def _default_precision():
  """conv2d takes Winograd only below 'highest'; other test modules may set
  a default."""
  with jax.default_matmul_precision(None):
    yield


def _direct(x, kernel):
  return lax.conv_general_dilated(x, kernel, (1, 1), SAME,
                                  dimension_numbers=DN,
                                  precision=lax.Precision.HIGHEST)


def _float64_direct(x, kernel):
  """The exact answer to compare both fp32 algorithms against."""
  x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
  h, w = x.shape[1:3]
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = 0
  for i in range(3):
    for j in range(3):
      out = out + padded[:, i:i + h, j:j + w] @ kernel[i, j]
  return out


def _rel(a, b):
  return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


# Sides that are and are not multiples of the 4x4 tile, down to one pixel.
@pytest.mark.parametrize('shape', [(2, 8, 8, 16), (1, 13, 6, 9), (3, 5, 7, 4),
                                   (1, 1, 1, 3), (1, 2, 3, 5),
                                   (2, 4, 17, 32)])
def test_equals_the_convolution_up_to_winograd_rounding(shape):
  kx, kk = jax.random.split(jax.random.PRNGKey(sum(shape)))
  x = jax.random.normal(kx, shape)
  kernel = jax.random.normal(kk, (3, 3, shape[3], 11)) / np.sqrt(9 * shape[3])
  exact = _float64_direct(x, kernel)
  got = jax.jit(winograd_conv3x3)(x, kernel)
  assert got.shape == exact.shape
  # F(4, 3)'s transforms have coefficients up to 8: a few ulps more than the
  # direct sum, never more than ~1e-5 relative in fp32.
  assert _rel(got, exact) < 2e-5
  np.testing.assert_allclose(got, exact, rtol=0,
                             atol=1e-4 * np.abs(exact).max())


def test_a_centre_tap_kernel_is_a_channel_matmul():
  """Closed form: a kernel that is zero but at its centre maps every pixel
  through that centre matrix, border pixels included."""
  kx, kk = jax.random.split(jax.random.PRNGKey(1))
  x = jax.random.normal(kx, (2, 9, 10, 5))
  centre = jax.random.normal(kk, (5, 3))
  kernel = jnp.zeros((3, 3, 5, 3)).at[1, 1].set(centre)
  np.testing.assert_allclose(winograd_conv3x3(x, kernel),
                             jnp.einsum('bhwi,io->bhwo', x, centre,
                                        precision='highest'),
                             rtol=1e-5, atol=1e-5)


def test_kernel_transform_is_g_g_gt():
  kernel = jax.random.normal(jax.random.PRNGKey(2), (3, 3, 2, 4))
  g = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6],
                [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
                [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
  want = np.einsum('ai,ijco,bj->abco', g, np.asarray(kernel, np.float64), g)
  np.testing.assert_allclose(transform_kernel(kernel),
                             want.reshape(36, 2, 4), rtol=1e-6, atol=1e-6)


def _has_convolution(fn, *args, platform='cpu'):
  lowered = jax.jit(fn).trace(*args).lower(lowering_platforms=(platform,))
  return 'convolution(' in lowered.as_text(dialect='hlo')


def test_the_input_is_never_padded_whole():
  # The tiles' taps are slices of the input itself (padded by at most a
  # tile each): a pad of the whole input fuses into its producer on XLA:CPU
  # and ran that producer ~5x slower (StyleGAN2's conv0 epilogue).
  x = jnp.ones((2, 16, 12, 8))
  jaxpr = jax.make_jaxpr(winograd_conv3x3)(x, jnp.ones((3, 3, 8, 8)))
  pads = [e for e in jaxpr.eqns if e.primitive.name == 'pad']
  assert pads, 'expected the edge taps to be padded'
  for e in pads:
    assert e.invars[0].aval.size * 4 <= x.size, e


def test_conv2d_takes_winograd_only_where_meant():
  x = jnp.zeros((4, 32, 32, C))           # 4 * 8 * 8 = 256 tiles
  kernel = jnp.zeros((3, 3, C, C))
  fwd = lambda x, k: same_conv2d(x, k)
  assert not _has_convolution(fwd, x, kernel)
  # Other platforms, full precision, bf16, few tiles, few channels, other
  # kernels: the direct convolution.
  assert _has_convolution(fwd, x, kernel, platform='cuda')
  with jax.default_matmul_precision('highest'):
    assert _has_convolution(fwd, x, kernel)
  assert _has_convolution(
      lambda x, k: same_conv2d(x, k, precision=lax.Precision.HIGHEST),
      x, kernel)
  assert _has_convolution(fwd, x.astype(jnp.bfloat16),
                          kernel.astype(jnp.bfloat16))
  assert _has_convolution(fwd, x[:1], kernel)        # 64 tiles
  assert _has_convolution(fwd, x[..., :C // 2], kernel[:, :, :C // 2])
  assert _has_convolution(fwd, x, kernel[..., :C // 2])
  assert _has_convolution(fwd, x, jnp.zeros((5, 5, C, C)))


def test_conv2d_gradients_through_winograd():
  kx, kk, kg = jax.random.split(jax.random.PRNGKey(3), 3)
  x = jax.random.normal(kx, (2, 45, 46, C))  # 2 * 12 * 12 tiles, cropped
  kernel = jax.random.normal(kk, (3, 3, C, C + 8)) / np.sqrt(9 * C)
  g = jax.random.normal(kg, (2, 45, 46, C + 8))
  assert not _has_convolution(lambda x, k: same_conv2d(x, k), x, kernel)
  got = jax.jit(lambda x, k, g: jax.vjp(same_conv2d, x, k)[1](g))(x, kernel, g)
  want = jax.vjp(_direct, x, kernel)[1](g)
  # The input gradient is itself a Winograd convolution; the kernel
  # gradient is XLA's.
  assert _rel(got[0], np.asarray(want[0])) < 2e-5
  assert _rel(got[1], np.asarray(want[1])) < 1e-6


def test_vmap_of_grad_through_winograd():
  kx, kk = jax.random.split(jax.random.PRNGKey(4))
  x = jax.random.normal(kx, (3, 4, 32, 32, C))
  kernel = jax.random.normal(kk, (3, 3, C, C)) / np.sqrt(9 * C)
  loss = lambda x: jnp.sum(same_conv2d(x, kernel) ** 2)
  ref = lambda x: jnp.sum(_direct(x, kernel) ** 2)
  got = jax.jit(jax.vmap(jax.grad(loss)))(x)
  want = jax.vmap(jax.grad(ref))(x)
  assert _rel(got, np.asarray(want)) < 2e-5


def test_bad_kernel_is_named():
  with pytest.raises(ValueError, match=r'\(3, 3, I, O\)'):
    winograd_conv3x3(jnp.zeros((1, 8, 8, 4)), jnp.zeros((5, 5, 4, 2)))
  with pytest.raises(ValueError, match='matching I'):
    winograd_conv3x3(jnp.zeros((1, 8, 8, 4)), jnp.zeros((3, 3, 3, 2)))


def test_loop_invariant_kernels_lower_the_tile_threshold():
  x = jnp.zeros((1, 16, 16, C))           # 16 tiles
  kernel = jnp.zeros((3, 3, C, C))
  # A new function each time: jit caches traces per function, and the
  # context is read when tracing.
  fwd = lambda: (lambda x, k: same_conv2d(x, k))
  assert _has_convolution(fwd(), x, kernel)
  with conv2d_lib.loop_invariant_kernels():
    assert not _has_convolution(fwd(), x, kernel)
    assert _has_convolution(fwd(), x[:, :8, :8], kernel)   # 4 tiles
  assert _has_convolution(fwd(), x, kernel)
