"""FIR resampling against a direct numpy transcription of ``upfirdn2d``.

The reference follows the official definition literally (insert zeros, pad,
correlate with the flipped 2-D filter times gain) and the transposed
convolution as a scatter-add, so it shares no code or trick with the
phase-decomposed implementation under test.
"""

import jax
import numpy as np
import pytest

from gjscc_jax.models.stylegan2 import resampling
from gjscc_jax.ops import upsample_conv

_A = np.array([1., 3., 3., 1.])
_F = np.outer(_A, _A) / _A.sum()**2


def upfirdn2d_reference(x, up, pad0, pad1, gain):
  """NHWC upfirdn2d with the [1,3,3,1] filter (flip irrelevant: symmetric)."""
  b, h, w, c = x.shape
  z = np.zeros((b, h * up, w * up, c), x.dtype)
  z[:, ::up, ::up] = x
  z = np.pad(z, ((0, 0), (pad0, pad1), (pad0, pad1), (0, 0)))
  f = _F[::-1, ::-1] * gain
  out_h, out_w = z.shape[1] - 3, z.shape[2] - 3
  y = np.zeros((b, out_h, out_w, c), np.float64)
  for i in range(4):
    for j in range(4):
      y += f[i, j] * z[:, i:i + out_h, j:j + out_w]
  return y


def transposed_conv_reference(x, kernel):
  """True stride-2 transposed conv: t[2m + p] += x[m] * kernel[p] (full)."""
  b, h, w, _ = x.shape
  k = kernel.shape[0]
  t = np.zeros((b, 2 * h + k - 2, 2 * w + k - 2, kernel.shape[-1]))
  for p in range(k):
    for q in range(k):
      t[:, p:p + 2 * h:2, q:q + 2 * w:2] += np.einsum('bhwi,io->bhwo', x,
                                                      kernel[p, q])
  return t


@pytest.fixture(scope='module')
def rng():
  return np.random.RandomState(0)


@pytest.mark.parametrize('size', [(1, 1), (4, 4), (5, 3)])
def test_upsample_2x_matches_upfirdn2d(rng, size):
  x = rng.randn(2, *size, 3).astype(np.float32)
  want = upfirdn2d_reference(x, up=2, pad0=2, pad1=1, gain=4)
  got = np.asarray(resampling.upsample_2x(x))
  assert got.shape == (2, 2 * size[0], 2 * size[1], 3)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_upsample_2x_preserves_constants_in_the_interior():
  got = np.asarray(resampling.upsample_2x(np.ones((1, 6, 6, 1), np.float32)))
  np.testing.assert_allclose(got[:, 1:-1, 1:-1], 1.0, rtol=1e-7)
  np.testing.assert_allclose(got[0, 0, 0, 0], 0.75 * 0.75, rtol=1e-7)


@pytest.mark.parametrize('form', ['library', 'phases', 'transposed'])
@pytest.mark.parametrize('size', [(1, 1), (4, 4), (3, 5)])
def test_upsample_conv_2x_matches_transposed_conv_then_fir(rng, size, form):
  """Both platform forms (and the library's choice here) against the
  direct definition: zero insertion, full convolution, then upfirdn2d."""
  fn = dict(library=resampling.upsample_conv_2x,
            phases=upsample_conv.phases,
            transposed=upsample_conv.transposed)[form]
  x = rng.randn(2, *size, 5).astype(np.float32)
  kernel = rng.randn(3, 3, 5, 4).astype(np.float32)
  t = transposed_conv_reference(x.astype(np.float64), kernel)  # 2H + 1
  want = upfirdn2d_reference(t, up=1, pad0=1, pad1=1, gain=4)
  with jax.default_matmul_precision('highest'):
    got = np.asarray(fn(x, kernel))
  assert got.shape == (2, 2 * size[0], 2 * size[1], 4)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_upsample_conv_forms_have_the_same_gradients(rng):
  x = rng.randn(2, 3, 5, 4).astype(np.float32)
  kernel = rng.randn(3, 3, 4, 6).astype(np.float32)
  probe = rng.randn(2, 6, 10, 6).astype(np.float32)
  grads = []
  with jax.default_matmul_precision('highest'):
    for fn in (upsample_conv.phases, upsample_conv.transposed):
      loss = lambda x, k, fn=fn: jax.numpy.sum(fn(x, k) * probe)
      grads.append(jax.grad(loss, argnums=(0, 1))(x, kernel))
  for a, b in zip(*grads):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('platform, dilated', [('cpu', False), ('cuda', True),
                                               ('tpu', True)])
def test_upsample_conv_form_per_platform(platform, dilated):
  """Accelerators get the one transposed (lhs-dilated) convolution, the
  CPU the phase convolutions."""
  x = jax.ShapeDtypeStruct((2, 8, 8, 16), np.float32)
  k = jax.ShapeDtypeStruct((3, 3, 16, 16), np.float32)
  text = jax.jit(resampling.upsample_conv_2x).trace(x, k).lower(
      lowering_platforms=(platform,)).as_text()
  convs = [line for line in text.splitlines() if 'convolution' in line]
  assert len(convs) == (1 if dilated else 4), convs
  assert any('lhs_dilate = [2, 2]' in c for c in convs) == dilated, convs


def test_upsample_conv_2x_kernel_orientation_matters(rng):
  # A flipped kernel gives a different result (guards the orientation).
  x = rng.randn(1, 4, 4, 2).astype(np.float32)
  kernel = rng.randn(3, 3, 2, 2).astype(np.float32)
  a = resampling.upsample_conv_2x(x, kernel)
  b = resampling.upsample_conv_2x(x, kernel[::-1, ::-1])
  assert np.abs(np.asarray(a) - np.asarray(b)).max() > 0.1


def test_upsample_conv_2x_rejects_other_kernel_sizes():
  with pytest.raises(ValueError, match='3x3 kernel'):
    resampling.upsample_conv_2x(np.zeros((1, 2, 2, 1), np.float32),
                                np.zeros((1, 1, 1, 1), np.float32))
