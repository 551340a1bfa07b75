"""conv2d / same_conv2d: equal to lax.conv_general_dilated, value and gradient,
and routed to the taller-output form only where (and on the platform) meant."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from gjscc_jax.ops import conv2d as conv2d_lib
from gjscc_jax.ops.conv2d import conv2d, same_conv2d

DN = ('NHWC', 'HWIO', 'NHWC')


def _reference(x, kernel, padding):
  return lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                  dimension_numbers=DN,
                                  precision=lax.Precision.HIGHEST)


# (side, kernel (kh, kw), padding): 3x3 "same" inside and outside the Eigen
# range, and the phase convolutions of StyleGAN2's upsampling (kernels below
# 3x3, padding 1, whose input gradients need a crop).
CASES = [
    (16, (3, 3), ((1, 1), (1, 1))),
    (8, (3, 3), ((1, 1), (1, 1))),
    (4, (3, 3), ((1, 1), (1, 1))),
    (80, (3, 3), ((1, 1), (1, 1))),
    (12, (5, 5), ((2, 2), (2, 2))),
    (12, (2, 2), ((1, 1), (1, 1))),
    (12, (2, 1), ((1, 1), (1, 1))),
    (12, (1, 2), ((1, 1), (1, 1))),
    (12, (1, 1), ((1, 1), (1, 1))),
    (12, (2, 2), ((0, 0), (0, 0))),
    (12, (3, 3), ((0, 2), (2, 0))),
]


# RGB inputs take the matmul + shifted-sum input gradient.
RGB_CASES = [(20, (3, 3), ((1, 1), (1, 1))), (9, (5, 5), ((2, 2), (2, 2))),
             (9, (3, 3), ((0, 2), (1, 0)))]


@pytest.mark.parametrize('channels,side,ksize,padding',
                         [(5,) + c for c in CASES] +
                         [(3,) + c for c in RGB_CASES])
def test_value_and_gradients_equal_plain_convolution(channels, side, ksize,
                                                     padding):
  kx, kk, kg = jax.random.split(jax.random.PRNGKey(side + sum(ksize)), 3)
  x = jax.random.normal(kx, (2, side, side + 1, channels))
  kernel = jax.random.normal(kk, ksize + (channels, 7))
  want = _reference(x, kernel, padding)
  got = jax.jit(lambda x, k: conv2d(x, k, padding,
                                    precision=lax.Precision.HIGHEST))(x, kernel)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  g = jax.random.normal(kg, want.shape)
  want_dx, want_dk = jax.vjp(lambda x, k: _reference(x, k, padding),
                             x, kernel)[1](g)
  got_dx, got_dk = jax.jit(lambda x, k, g: jax.vjp(
      lambda x, k: conv2d(x, k, padding, precision=lax.Precision.HIGHEST),
      x, k)[1](g))(x, kernel, g)
  np.testing.assert_allclose(got_dx, want_dx, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(got_dk, want_dk, rtol=1e-5, atol=1e-4)


def test_same_conv2d_is_same_padding_and_works_under_vmap_and_grad():
  kx, kk = jax.random.split(jax.random.PRNGKey(0))
  x = jax.random.normal(kx, (3, 2, 16, 16, 4))
  kernel = jax.random.normal(kk, (3, 3, 4, 6))
  loss = lambda x: jnp.sum(same_conv2d(x, kernel) ** 2)
  ref = lambda x: jnp.sum(_reference(x, kernel, ((1, 1), (1, 1))) ** 2)
  got = jax.jit(jax.vmap(jax.grad(loss)))(x)
  want = jax.vmap(jax.grad(ref))(x)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _conv_paddings(hlo_text):
  """The pad= windows of the convolutions in an HLO module's text."""
  return re.findall(r'convolution\(.*?pad=([0-9_x]+)', hlo_text)


def test_cpu_route_pads_one_more_row_and_other_platforms_do_not():
  x = jnp.zeros((1, 32, 32, 8))
  kernel = jnp.zeros((3, 3, 8, 8))
  fn = jax.jit(lambda x, k: same_conv2d(x, k))
  cpu = fn.trace(x, kernel).lower(lowering_platforms=('cpu',))
  assert _conv_paddings(cpu.as_text(dialect='hlo')) == ['1_2x1_1']
  gpu = fn.trace(x, kernel).lower(lowering_platforms=('cuda',))
  assert _conv_paddings(gpu.as_text(dialect='hlo')) == ['1_1x1_1']
  # Outside the range (large maps), the plain convolution on every platform.
  big = jax.jit(lambda x, k: same_conv2d(x, k)).lower(
      jnp.zeros((1, 128, 128, 8)), kernel)
  assert _conv_paddings(big.as_text(dialect='hlo')) == ['1_1x1_1']


def test_routing_rule():
  prefers = conv2d_lib._prefers_eigen  # pylint: disable=protected-access
  same = ((1, 1), (1, 1))
  assert prefers((4, 32, 32, 512), (3, 3, 512, 512), same)
  assert not prefers((4, 256, 256, 64), (3, 3, 64, 64), same)
  assert not prefers((4, 4, 4, 512), (3, 3, 512, 512), same)
  # Small kernels at any size; outputs taller than inputs are Eigen already.
  assert prefers((4, 128, 128, 64), (2, 2, 64, 128), ((0, 0), (0, 0)))
  assert not prefers((4, 128, 128, 64), (2, 2, 64, 128), same)


@pytest.mark.parametrize('kernel_shape,padding,match', [
    ((3, 3, 4, 2), ((1, 1), (1, 1)), 'matching input channels'),
    ((3, 3, 5, 2), ((-1, 1), (1, 1)), 'non-negative'),
    ((3, 3, 5, 2), ((1, 1),), 'non-negative'),
])
def test_bad_arguments_are_named(kernel_shape, padding, match):
  with pytest.raises(ValueError, match=match):
    conv2d(jnp.zeros((1, 8, 8, 5)), jnp.zeros(kernel_shape), padding)
  with pytest.raises(ValueError, match='odd size'):
    same_conv2d(jnp.zeros((1, 8, 8, 5)), jnp.zeros((2, 2, 5, 2)))


@pytest.mark.parametrize('stride,ksize,pad,dilation', [
    (2, 5, 2, None), (2, 3, 1, None), (1, 3, 1, None), (2, 1, 0, None),
    (1, 3, 2, (2, 2))])
def test_general_convolution_equals_lax_value_and_gradients(stride, ksize, pad,
                                                            dilation):
  kx, kk, kg = jax.random.split(jax.random.PRNGKey(stride * 10 + ksize), 3)
  x = jax.random.normal(kx, (2, 17, 16, 4))
  kernel = jax.random.normal(kk, (ksize, ksize, 4, 6))
  args = ((stride, stride), ((pad, pad), (pad, pad)))
  kwargs = dict(rhs_dilation=dilation, dimension_numbers=DN,
                precision=lax.Precision.HIGHEST)
  ref = lambda x, k: lax.conv_general_dilated(x, k, *args, **kwargs)
  ours = lambda x, k: conv2d_lib.conv_general_dilated(x, k, *args, **kwargs)
  want, want_vjp = jax.vjp(ref, x, kernel)
  got, got_vjp = jax.vjp(ours, x, kernel)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)
  g = jax.random.normal(kg, want.shape)
  for a, b in zip(jax.jit(got_vjp)(g), want_vjp(g)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_general_convolution_input_gradient_reads_an_hwio_kernel():
  """Autodiff's input gradient labels the kernel's features swapped
  ('01oi'); ours convolves with a transposed kernel labelled '01io'."""
  x = jnp.zeros((1, 16, 16, 4))
  kernel = jnp.zeros((5, 5, 4, 6))
  labels = lambda fn: re.findall(
      r'dim_labels=([0-9a-z_>-]+)',
      jax.jit(jax.grad(lambda x: jnp.sum(fn(x, kernel)))).lower(x).as_text(
          dialect='hlo'))
  conv = lambda f: (lambda x, k: f(x, k, (2, 2), ((2, 2), (2, 2)),
                                   dimension_numbers=DN))
  assert labels(conv(lax.conv_general_dilated)) == ['b01f_01oi->b01f']
  assert labels(conv(conv2d_lib.conv_general_dilated)) == ['b01f_01io->b01f']


def test_general_convolution_passes_other_layouts_through():
  x = jnp.ones((1, 3, 8, 8))
  kernel = jnp.ones((2, 3, 3, 3))
  got = conv2d_lib.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                        dimension_numbers=('NCHW', 'OIHW',
                                                           'NCHW'))
  np.testing.assert_allclose(got, lax.conv_general_dilated(
      x, kernel, (1, 1), 'SAME', dimension_numbers=('NCHW', 'OIHW', 'NCHW')))
