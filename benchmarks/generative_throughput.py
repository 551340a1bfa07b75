"""Training throughput of GenerativeJSCC (the `generative_ffhq` train step).

Builds the paper-scale config (`generative_ffhq`, 256x256, Tung encoder,
GPEN-style receiver, FFHQ-256 StyleGAN2 architecture fine-tuned, MSE + 0.1
LPIPS-VGG) with random weights, compiles the trainer's own train step
(`gjscc_jax.train.step.make_train_step`, state donated) on one device and
reports:

* images per second of the full step (forward, backward, Adam), best and
  median of `--repeats` timed steps;
* XLA's FLOP count per image of the compiled step (cost analysis) and the
  achieved GFLOP/s, next to a jitted fp32 matmul's GFLOP/s on this machine;
* the split of the forward FLOPs between the encoder, the receiver trunk and
  the synthesis network, and the step's FLOPs without LPIPS.

Usage::

  python benchmarks/generative_throughput.py                 # batch 4, bcr 1/192
  python benchmarks/generative_throughput.py --batch 8 --bcr 1/768 --repeats 5
  python benchmarks/generative_throughput.py --arg=demo      # the CPU demo step

The machine should be otherwise idle: the load average is printed at the
start and the end.
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.matmul_peak import compiled_flops, matmul_peaks  # noqa: E402 pylint: disable=wrong-import-position


def _timed(fn):
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def forward_split(scheme, params, batch):
  """Forward FLOPs per image of encoder, receiver and synthesis network.

  `params` may be abstract (`jax.ShapeDtypeStruct`s): only compiled.
  """
  import jax
  import jax.numpy as jnp
  model = scheme.model
  res = model.synthesis.img_resolution
  x = jnp.zeros((batch, res, res, 3))
  snr = jnp.zeros((batch,))
  h = res // model.downsampling
  received = jnp.zeros((batch, h, h, model.latent_channels))
  ws, maps = jax.eval_shape(
      lambda p, r: model.apply(p, r, snr, method=lambda m, r, s: m.receiver(r, s)),
      params, received)
  parts = {
      "encoder": (lambda p, x: model.apply(p, x, snr, method="encode"), x),
      "receiver": (lambda p, r: model.apply(
          p, r, snr, method=lambda m, r, s: m.receiver(r, s)), received),
      "synthesis": (lambda p, a: model.apply(
          p, *a, method=lambda m, w, mp: m.synthesis(w, mp)), (ws, maps)),
  }
  out = {}
  for name, (fn, arg) in parts.items():
    compiled = jax.jit(fn).lower(params, arg).compile()
    out[name] = compiled_flops(compiled) / batch / 1e9
  return out


def train_step_benchmark(config, batch, repeats):
  import jax
  import jax.numpy as jnp
  from gjscc_jax.train import loop as train
  from gjscc_jax import schemes
  from gjscc_jax.train import step as step_lib

  config.batch_size = batch
  scheme = schemes.build_scheme(config)
  loss, frozen = train.build_loss(config)
  tx, schedule = scheme.make_optimizer(config.total_steps)
  res = config.data.resolution
  # Random weights; an 'rbg' key compiles the initialiser ~4x faster.
  params = jax.jit(scheme.init)(jax.random.key(0, impl="rbg"),
                                jnp.zeros((batch, res, res, 3)))
  n_params = sum(x.size for x in jax.tree.leaves(params))
  abstract_params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                                 params)  # The step donates the arrays.
  state = step_lib.create_train_state(params, tx, jax.random.PRNGKey(1))
  fn = jax.jit(step_lib.make_train_step(scheme, loss, tx,
                                        tuple(config.train_snr_db), schedule),
               donate_argnums=(0,))
  rng = np.random.default_rng(0)
  images = {"image": rng.integers(0, 256, (batch, res, res, 3), dtype=np.uint8)}
  t = time.perf_counter()
  compiled = fn.lower(state, images, jax.random.PRNGKey(2), frozen).compile()
  compile_s = time.perf_counter() - t
  step_flops = compiled_flops(compiled) / batch
  state, metrics = compiled(state, images, jax.random.PRNGKey(2), frozen)
  jax.block_until_ready(metrics)  # Warm-up.
  times = []
  for i in range(repeats):
    t = time.perf_counter()
    state, metrics = compiled(state, images, jax.random.PRNGKey(3 + i), frozen)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t)
  print(f"  [{config.loss.lambda_lpips=}] compile {compile_s:.0f} s, step "
        f"{min(times):.2f} s best of {times}", flush=True)
  split = forward_split(scheme, abstract_params, batch)
  return dict(
      params_millions=n_params / 1e6, compile_s=compile_s,
      step_s_best=min(times), step_s_median=float(np.median(times)),
      images_per_s_best=batch / min(times),
      images_per_s_median=batch / float(np.median(times)),
      train_step_gflop_per_image=step_flops / 1e9,
      achieved_gflop_s=step_flops * batch / min(times) / 1e9,
      forward_gflop_per_image=split, loss=float(metrics["loss"]))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--arg", default="", help="generative_ffhq config argument")
  parser.add_argument("--bcr", default="1/192")
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--no-lpips-split", action="store_true",
                      help="skip the second measurement without LPIPS")
  parser.add_argument("--json", default=None, help="also write results here")
  args = parser.parse_args(argv)

  import jax
  from experiments.configs import generative_ffhq

  arg = ",".join(a for a in (f"bcr={args.bcr}", args.arg) if a)
  load_start = os.getloadavg()
  result = dict(config=f"generative_ffhq:{arg}", batch=args.batch,
                machine=platform.processor() or platform.machine(),
                cpus=os.cpu_count(), jax=jax.__version__,
                devices=str(jax.devices()[0]))
  config = generative_ffhq.get_config(arg)
  result["resolution"] = config.data.resolution
  result["lambda_lpips"] = config.loss.lambda_lpips
  result["step"] = train_step_benchmark(config, args.batch, args.repeats)
  if not args.no_lpips_split and config.loss.lambda_lpips > 0:
    config = generative_ffhq.get_config(arg + ",lpips=0")
    no_lpips = train_step_benchmark(config, args.batch, args.repeats)
    result["step_without_lpips"] = {
        k: no_lpips[k] for k in ("images_per_s_best", "train_step_gflop_per_image")}
  result["matmul_gflop_s"] = matmul_peaks(with_torch=False)["jax"]
  result["load_average_start_end"] = [load_start[0], os.getloadavg()[0]]

  s = result["step"]
  print(f"GenerativeJSCC train step, {result['config']}, "
        f"{result['resolution']}x{result['resolution']}, batch {args.batch}, "
        f"{s['params_millions']:.1f}M params, on {result['devices']} "
        f"({result['cpus']} CPUs)")
  print(f"  images/s: {s['images_per_s_best']:.3f} best, "
        f"{s['images_per_s_median']:.3f} median  (compile {s['compile_s']:.0f} s)")
  print(f"  XLA FLOPs per image (train step): "
        f"{s['train_step_gflop_per_image']:.1f} GFLOP; achieved "
        f"{s['achieved_gflop_s']:.1f} GFLOP/s vs jitted fp32 matmul "
        f"{result['matmul_gflop_s']:.1f} GFLOP/s")
  print("  forward GFLOP per image: " + ", ".join(
      f"{k} {v:.2f}" for k, v in s["forward_gflop_per_image"].items()))
  if "step_without_lpips" in result:
    w = result["step_without_lpips"]
    print(f"  without LPIPS: {w['images_per_s_best']:.3f} images/s, "
          f"{w['train_step_gflop_per_image']:.1f} GFLOP per image")
  print(f"  load average start/end: {result['load_average_start_end']}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  main()
