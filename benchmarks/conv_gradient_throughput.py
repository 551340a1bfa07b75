"""Convolution throughput by pass: forward, input gradient, kernel gradient.

Why CPU *training* (DeepJSCC, GenerativeJSCC with a trained or fine-tuned
generator) runs far below the matmul peak while the StyleGAN2 and LPIPS passes
that only need input gradients (InverseJSCC, the synthesis benchmark) run
near it: XLA:CPU's kernel-gradient convolution is several times slower than
its forward convolution. This script measures, in one run and for the same
layer shapes (NHWC, fp32, batch 4; the shapes of the Tung DeepJSCC encoder,
VGG16 and the StyleGAN2 synthesis at 256x256):

* XLA (jitted ``lax.conv_general_dilated`` and its VJPs), and
* PyTorch (``torch.nn.functional.conv2d`` and ``torch.autograd.grad``), when
  torch imports,

the GFLOP/s of the forward convolution, of the input gradient alone and of the
kernel gradient alone (each counts the FLOPs of one convolution,
``2 * B * Ho * Wo * K * k * k * C``), next to an fp32 matmul in each
library (`benchmarks.matmul_peak`). Usage::

  python -m benchmarks.conv_gradient_throughput [--repeats 5]

The machine should be otherwise idle: the load average is printed.
"""

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np


from benchmarks.matmul_peak import matmul_peaks  # noqa: E402 pylint: disable=wrong-import-position

#: (batch, height, width, in channels, out channels, kernel, stride, where).
SHAPES = (
    (4, 256, 256, 3, 64, 5, 2, 'DeepJSCC encoder, first strided conv'),
    (4, 128, 128, 64, 64, 3, 1, 'VGG16 / DeepJSCC 3x3 at 128x128'),
    (4, 128, 128, 64, 128, 3, 2, 'DeepJSCC residual block, stride 2'),
    (4, 64, 64, 256, 256, 3, 1, 'StyleGAN2 conv1 at 64x64'),
    (4, 32, 32, 512, 512, 3, 1, 'StyleGAN2 / VGG16 conv at 32x32'),
)


def _best_time(fn, repeats):
  fn()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def xla_passes(x, k, stride, repeats):
  """Seconds for (forward, input gradient, kernel gradient) under XLA."""
  pad = k.shape[0] // 2

  def conv(x, k):
    return jax.lax.conv_general_dilated(
        x, k, (stride, stride), ((pad, pad), (pad, pad)),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  g = jnp.ones(jax.eval_shape(conv, x, k).shape, x.dtype)
  fwd = jax.jit(conv)
  dx = jax.jit(lambda x, k, g: jax.vjp(lambda x: conv(x, k), x)[1](g)[0])
  dk = jax.jit(lambda x, k, g: jax.vjp(lambda k: conv(x, k), k)[1](g)[0])
  return tuple(_best_time(lambda f=f, a=a: jax.block_until_ready(f(*a)),
                          repeats)
               for f, a in ((fwd, (x, k)), (dx, (x, k, g)), (dk, (x, k, g))))


def torch_passes(x, k, stride, repeats):
  """The same three passes in PyTorch (NCHW), or None without torch."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  pad = k.shape[0] // 2
  tx = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
  tk = torch.from_numpy(np.asarray(k).transpose(3, 2, 0, 1).copy())
  conv = lambda a, b: torch.nn.functional.conv2d(a, b, stride=stride,
                                                 padding=pad)
  with torch.no_grad():
    g = torch.ones_like(conv(tx, tk))

  def fwd():
    with torch.no_grad():
      conv(tx, tk)

  def grad(wrt_input):
    a = tx.clone().requires_grad_(wrt_input)
    b = tk.clone().requires_grad_(not wrt_input)
    out = conv(a, b)
    torch.autograd.grad(out, a if wrt_input else b, g)

  return tuple(_best_time(f, repeats)
               for f in (fwd, lambda: grad(True), lambda: grad(False)))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args(argv)
  os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
  load_start = os.getloadavg()
  peaks = matmul_peaks()
  rows = []
  for b, h, w, cin, cout, ksize, stride, where in SHAPES:
    kx, kk = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (b, h, w, cin), jnp.float32)
    k = jax.random.normal(kk, (ksize, ksize, cin, cout), jnp.float32) * 0.05
    ho, wo = -(-h // stride), -(-w // stride)
    gflop = 2 * b * ho * wo * cout * ksize * ksize * cin / 1e9
    for name, passes in (('XLA', xla_passes(x, k, stride, args.repeats)),
                         ('PyTorch', torch_passes(x, k, stride,
                                                  args.repeats))):
      if passes is not None:
        rows.append((where, f'{b}x{h}x{w}x{cin}->{cout}, {ksize}x{ksize}/'
                     f'{stride}', name, *(gflop / t for t in passes)))
  load_end = os.getloadavg()
  print(f'\nConvolution GFLOP/s by pass, fp32, {os.cpu_count()} CPUs, jax '
        f'{jax.__version__}; 2048^2 fp32 matmul: ' +
        ', '.join(f'{k} {v:.0f}' for k, v in peaks.items()) + ' GFLOP/s; '
        f'load average at start {load_start[0]:.2f}, at end '
        f'{load_end[0]:.2f}; best of {args.repeats}.\n')
  print('| layer | shape | library | forward | input gradient | '
        'kernel gradient |')
  print('|---|---|---|---|---|---|')
  for where, shape, name, fwd, dx, dk in rows:
    print(f'| {where} | {shape} | {name} | {fwd:.0f} | {dx:.0f} | {dk:.0f} |')
  return 0


if __name__ == '__main__':
  sys.exit(main())
