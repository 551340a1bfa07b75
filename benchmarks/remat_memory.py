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
  generator, `--ilo-batch` images, MSE + LPIPS-VGG (at most 256x256),
  A = identity; its residuals are those of one image's step (the search
  keeps one step's per image at a time).

XLA:CPU does not realise remat's savings: it drops the optimisation
barriers that keep the recomputation apart, and its common-subexpression
elimination then merges the recomputed forward pass back into the original
one. So on CPU ``temp`` barely moves and ``residuals`` shows the effect;
GPU and TPU keep the barriers.

  python -m benchmarks.remat_memory                       # 256x256, batch 4
  python -m benchmarks.remat_memory --resolution 1024 --channel-base 32768 \\
      --batch 1 --only stylegan2,ilo --dtype bfloat16 --no-compile
"""

import argparse
import os
import time

import jax
import jax.extend.core as jex_core
import jax.numpy as jnp


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
  inputs = (variables["params"], ws, variables["buffers"])
  return label, (loss, 2), inputs, (jax.grad(loss, (0, 1)), inputs)


def lpips_case(args, remat):
  loss = PerceptualLoss(1.0, net="vgg", check_inputs=False, remat=remat)
  params = jax.eval_shape(loss.load_params)
  x = jax.ShapeDtypeStruct((args.batch, 256, 256, 3), jnp.float32)

  def value(x, y, params):
    return jnp.mean(loss.lpips(params, x, y))

  label = f"LPIPS-VGG value+grad, {args.batch}x256x256"
  inputs = (x, x, params)
  return label, (value, 1), inputs, (jax.value_and_grad(value), inputs)


def ilo_case(args, remat):
  g = generator(args, remat)
  variables = jax.eval_shape(g.init, jax.random.key(0),
                             jnp.zeros((1, 512), jnp.float32))
  layered = generator_lib.from_stylegan2(g)
  res = min(args.resolution, 256)
  terms = forward_operators.DataTerms(
      "identity", PerceptualLoss(1.0, check_inputs=False, remat=remat),
      generator_resolution=args.resolution, image_resolution=res)
  config = ilo.ILOConfig(steps=(2,) * min(4, layered.num_blocks),
                         latent_space="w_plus")
  n = args.ilo_batch
  frozen = dict(generator=variables,
                lpips=jax.eval_shape(terms.loss.load_params))
  received = jax.ShapeDtypeStruct((n, res, res, 3), jnp.float32)
  keys = jax.eval_shape(lambda: jax.random.split(jax.random.PRNGKey(0), n))
  targets = jax.eval_shape(terms.prepare_targets, frozen, received,
                           jax.ShapeDtypeStruct((n,), jnp.float32), keys)
  start = jax.eval_shape(lambda v: ilo.initial_variables(
      layered, config, dict(generator=v), jax.random.PRNGKey(0)), variables)

  def objective(ws, noises, frozen, target, key):
    """One image's round-0 step objective (what `jax.grad` differentiates)."""
    image = layered.synthesize_one(frozen["generator"], ws, noises)
    t = terms(frozen, image, target, key)
    return t["mse"] + t["lpips"]

  def batched(ws, noises, frozen, targets, keys):
    return jnp.sum(jax.vmap(objective, (0, 0, None, 0, 0))(
        ws, noises, frozen, targets, keys))

  def per_image(ws, noises, frozen, targets, keys):
    """Residual bytes of the vmapped step, batch 2 minus batch 1: what each
    image adds (the frozen networks' own residuals are shared)."""
    sizes = []
    for k in (1, 2):
      take = lambda a, k=k: jax.ShapeDtypeStruct((k,) + a.shape[1:], a.dtype)
      sizes.append(residual_bytes(
          batched, 2, *jax.tree.map(take, (ws, noises)), frozen,
          *jax.tree.map(take, (targets, keys))))
    return sizes[1] - sizes[0]

  stack = lambda a: jax.ShapeDtypeStruct((n,) + a.shape, a.dtype)
  inputs = (jax.tree.map(stack, start.latents), jax.tree.map(stack, start.noises),
            frozen, targets, keys)
  label = (f"ILO search {args.resolution}px ({args.dtype}), {n} images, "
           "MSE + LPIPS-VGG; residuals per image")
  return (label, per_image, inputs,
          (search.batch_inverter(layered, config, terms),
           (frozen, targets, keys)))


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
  parser.add_argument("--no-compile", action="store_true",
                      help="residuals only (XLA:CPU takes minutes to compile "
                      "the large programs)")
  args = parser.parse_args()
  print(f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}), "
        f"jax {jax.__version__}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  print(f"| program | remat | temp (MiB) | residuals (MiB) | compile (s) |")
  print("|---|---|---:|---:|---:|")
  for name in args.only.split(","):
    for remat in (False, True):
      label, value_fn, inputs, (program, program_inputs) = CASES[name](
          args, remat)
      residuals = (value_fn(*inputs) if callable(value_fn) else
                   residual_bytes(*value_fn, *inputs)) / MIB
      temp, seconds = "", ""
      if not args.no_compile:
        start = time.perf_counter()
        temp = f"{temp_bytes(program, *program_inputs) / MIB:.1f}"
        seconds = f"{time.perf_counter() - start:.0f}"
      print(f"| {label} | {'on' if remat else 'off'} | {temp} | "
            f"{residuals:.1f} | {seconds} |", flush=True)


if __name__ == "__main__":
  main()
