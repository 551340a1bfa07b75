"""Memory of gradients with and without remat, and with a bf16 generator.

For each program below, compiled for the default backend from abstract
inputs (nothing runs, nothing is allocated), it prints

* ``temp``: XLA's scratch memory of the compiled program
  (``compiled.memory_analysis().temp_size_in_bytes``): the activations kept
  for the backward pass live here;
* ``residuals``: the bytes JAX's autodiff keeps from the forward pass for
  the backward pass (the leaves of ``jax.vjp``'s function), which is what
  ``remat`` controls, independent of the backend;

with ``remat`` off and on (and, with ``--dtype bfloat16``, the StyleGAN2
synthesis in bf16):

* ``stylegan2``: `Generator.synthesize` forward + backward (gradients for
  the parameters and W+), `--resolution`, `--channel-base`, `--batch`;
* ``lpips``: LPIPS-VGG value and gradient with respect to the image,
  `--batch` x 256 x 256;
* ``ilo``: InverseJSCC's whole batch search (`search.inverter`, one XLA
  program, a `lax.scan` of value-and-gradient steps per round) on that
  generator, `--ilo-batch` images, MSE + LPIPS-VGG, A = identity.

XLA:CPU does not realise remat's savings: it drops the optimisation
barriers that keep the recomputation apart, and its common-subexpression
elimination then merges the recomputed forward pass back into the original
one. So on CPU ``temp`` barely moves and ``residuals`` shows the effect;
GPU and TPU keep the barriers.

  python benchmarks/remat_memory.py                       # 256x256, batch 4
  python benchmarks/remat_memory.py --resolution 1024 --channel-base 32768 \\
      --batch 1 --only stylegan2 --dtype bfloat16
"""

import argparse
import os
import sys
import time

import jax
import jax.extend.core as jex_core
import jax.numpy as jnp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from gjscc_jax.inverse import forward_operators  # noqa: E402 pylint: disable=wrong-import-position
from gjscc_jax.inverse import generator as generator_lib  # noqa: E402 pylint: disable=wrong-import-position
from gjscc_jax.inverse import ilo  # noqa: E402 pylint: disable=wrong-import-position
from gjscc_jax.inverse import search  # noqa: E402 pylint: disable=wrong-import-position
from gjscc_jax.losses import PerceptualLoss  # noqa: E402 pylint: disable=wrong-import-position
from gjscc_jax.models import stylegan2  # noqa: E402 pylint: disable=wrong-import-position

MIB = 2**20


def nbytes(tree):
  return sum(x.size * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def residual_bytes(fn, num_diff, *args):
  """Bytes of the residuals `jax.vjp` of `fn` with respect to its first
  `num_diff` arguments keeps, not counting the inputs themselves."""
  def residuals(*a):
    diff, rest = a[:num_diff], a[num_diff:]
    vjp = jax.vjp(lambda *d: fn(*d, *rest), *diff)[1]
    return jax.tree.leaves(vjp)
  closed = jax.make_jaxpr(residuals)(*args)
  inputs = set(closed.jaxpr.invars)
  return sum(v.aval.size * v.aval.dtype.itemsize for v in closed.jaxpr.outvars
             if isinstance(v, jex_core.Var) and v not in inputs)


def temp_bytes(fn, *args):
  compiled = jax.jit(fn).lower(*args).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def generator(args, remat):
  return stylegan2.Generator(
      z_dim=512, w_dim=512, img_resolution=args.resolution,
      channel_base=args.channel_base, channel_max=512, conv_clamp=256,
      dtype=jnp.dtype(args.dtype), remat=remat)


def stylegan2_case(args, remat):
  g = generator(args, remat)
  variables = jax.eval_shape(g.init, jax.random.key(0),
                             jnp.zeros((1, 512), jnp.float32))
  ws = jax.ShapeDtypeStruct((args.batch, g.num_ws, 512), jnp.float32)

  def loss(params, ws, buffers):
    image = g.apply({"params": params, "buffers": buffers}, ws,
                    method=g.synthesize)
    return jnp.mean(jnp.square(image))

  label = (f"StyleGAN2 {args.resolution}px (base {args.channel_base}, "
           f"{args.dtype}) fwd+bwd, batch {args.batch}")
  return (label, (loss, 2), (variables["params"], ws, variables["buffers"]),
          jax.grad(loss, (0, 1)))


def lpips_case(args, remat):
  loss = PerceptualLoss(1.0, net="vgg", check_inputs=False, remat=remat)
  params = jax.eval_shape(loss.load_params)
  x = jax.ShapeDtypeStruct((args.batch, 256, 256, 3), jnp.float32)

  def value(x, y, params):
    return jnp.mean(loss.lpips(params, x, y))

  label = f"LPIPS-VGG value+grad, {args.batch}x256x256"
  return (label, (value, 1), (x, x, params), jax.value_and_grad(value))


def ilo_case(args, remat):
  g = generator(args, remat)
  variables = jax.eval_shape(g.init, jax.random.key(0),
                             jnp.zeros((1, 512), jnp.float32))
  layered = generator_lib.from_stylegan2(g)
  res = min(args.resolution, 256)
  terms = forward_operators.DataTerms(
      "identity", PerceptualLoss(1.0, check_inputs=False, remat=remat),
      generator_resolution=args.resolution, image_resolution=res)
  config = ilo.ILOConfig(steps=(2,) * min(4, layered.num_blocks))
  n = args.ilo_batch
  frozen = dict(generator=variables,
                lpips=jax.eval_shape(terms.loss.load_params))
  received = jax.ShapeDtypeStruct((n, res, res, 3), jnp.float32)
  keys = jax.eval_shape(lambda: jax.random.split(jax.random.PRNGKey(0), n))
  targets = jax.eval_shape(terms.prepare_targets, frozen, received,
                           jax.ShapeDtypeStruct((n,), jnp.float32), keys)
  fn = search.batch_inverter(layered, config, terms)
  label = (f"ILO search {args.resolution}px ({args.dtype}), {n} images, "
           "MSE + LPIPS-VGG")
  # The search's own backward passes are inside the program: no residuals
  # to report for the program as a whole.
  return label, None, (frozen, targets, keys), fn


CASES = {"stylegan2": stylegan2_case, "lpips": lpips_case, "ilo": ilo_case}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--resolution", type=int, default=256)
  parser.add_argument("--channel-base", type=int, default=16384)
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--ilo-batch", type=int, default=2)
  parser.add_argument("--dtype", default="float32",
                      choices=("float32", "bfloat16"))
  parser.add_argument("--only", default=",".join(CASES),
                      help="comma-separated subset of " + ", ".join(CASES))
  args = parser.parse_args()
  print(f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}), "
        f"jax {jax.__version__}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  print(f"| program | remat | temp (MiB) | residuals (MiB) | compile (s) |")
  print("|---|---|---:|---:|---:|")
  for name in args.only.split(","):
    for remat in (False, True):
      label, value_fn, inputs, program = CASES[name](args, remat)
      residuals = ("" if value_fn is None else
                   f"{residual_bytes(*value_fn, *inputs) / MIB:.1f}")
      start = time.perf_counter()
      temp = temp_bytes(program, *inputs) / MIB
      print(f"| {label} | {'on' if remat else 'off'} | {temp:.1f} | "
            f"{residuals} | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
  main()
