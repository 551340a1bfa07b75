"""The real programs lower for GPU and TPU from this CPU, in the right shape.

For the DeepJSCC and GenerativeJSCC train steps (float32 and bfloat16) and
the InverseJSCC search (ILO with the DeepJSCC operator and LPIPS), lowered
with `jit(f).trace(...).lower(lowering_platforms=(p,))` over an abstract
('data', 'fsdp') mesh:

* they lower for 'cuda' and 'tpu';
* nothing of the XLA:CPU routes of `gjscc_jax.ops` is in them (the routes'
  name scope is in the CPU lowering, which shows that the check can fail);
* no grouped convolutions, no float64, no host callbacks;
* bfloat16 appears exactly when the config asks for it.

Compiled for the 8 fake CPU devices: the InverseJSCC search has no
collective (images never interact), and the FSDP train step all-gathers
kernels and all-reduces only parameter-shaped gradients, never activations.
"""

import re

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from experiments.configs import deepjscc_ffhq
from experiments.configs import generative_ffhq
from gjscc_jax import schemes
from gjscc_jax import sharding
from gjscc_jax.inverse import forward_operators
from gjscc_jax.inverse import generator as generator_lib
from gjscc_jax.inverse import ilo
from gjscc_jax.inverse import search
from gjscc_jax.losses import lpips as lpips_lib
from gjscc_jax.losses import PerceptualLoss
from gjscc_jax.ops import conv2d
from gjscc_jax.train import loop
from gjscc_jax.train import step as step_lib

PLATFORMS = ("cuda", "tpu")
BATCH = 8
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter",
               "collective-permute", "all-to-all")


def _abstract_mesh(data=2, fsdp=4):
  auto = jax.sharding.AxisType.Auto
  return jax.sharding.AbstractMesh((data, fsdp), ("data", "fsdp"),
                                   axis_types=(auto, auto))


def _spec(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def _train_step(config, mesh, min_size=2**18):
  """The jitted train step of `gjscc_jax.train.loop.train`, and its abstract
  arguments (the state's parameters FSDP-sharded from `min_size`)."""
  scheme = schemes.build_scheme(config)
  loss, frozen = loop.build_loss(config)
  tx, schedule = scheme.make_optimizer(config.total_steps)
  res = config.data.resolution
  dummy = jnp.zeros((1, res, res, 3), jnp.float32)
  state = jax.eval_shape(lambda k: step_lib.create_train_state(
      scheme.init(k, dummy), tx, k), jax.random.key(0))
  state_sh = sharding.param_shardings(state, mesh, min_size)
  repl = NamedSharding(mesh, P())
  fn = jax.jit(
      step_lib.make_train_step(scheme, loss, tx, tuple(config.train_snr_db),
                               schedule),
      in_shardings=(state_sh, NamedSharding(mesh, P(sharding.BATCH_AXES)),
                    repl, repl),
      out_shardings=(state_sh, repl), donate_argnums=(0,))
  args = (state, {"image": jax.ShapeDtypeStruct((BATCH, res, res, 3),
                                                jnp.uint8)},
          jax.ShapeDtypeStruct((2,), jnp.uint32), _spec(frozen))
  return fn, args, state


def _deepjscc_config(dtype):
  config = deepjscc_ffhq.get_config("demo")
  config.dtype = dtype
  config.loss.lambda_lpips = 0.1  # LPIPS in the step, as paper-scale runs.
  config.batch_size = BATCH
  return config


def _generative_config(dtype):
  config = generative_ffhq.get_config("demo,lpips=0.1")
  config.dtype = dtype
  config.batch_size = BATCH
  return config


def _inverse_search(dtype, mesh):
  """The InverseJSCC search (ILO, A = DeepJSCC, LPIPS-VGG) and its
  abstract arguments, at 32x32 with the small DeepJSCC (cheap to compile)."""
  config = _deepjscc_config(dtype)
  config.data.resolution = 32
  config.model.arch, config.model.downsampling = "small", 4
  config.model.num_filters = 16
  scheme = schemes.build_scheme(config)
  res = config.data.resolution
  dj_params = jax.eval_shape(scheme.init, jax.random.key(0),
                             jnp.zeros((1, res, res, 3)))
  module, gen_variables = generator_lib.random_stylegan2(
      resolution=res, z_dim=16, w_dim=16, channel_base=256, channel_max=16,
      w_avg_samples=64)
  layered = generator_lib.from_stylegan2(module)
  loss = PerceptualLoss(1.0, dtype=jnp.dtype(dtype), check_inputs=False)
  lpips_params = jax.eval_shape(
      lpips_lib.LPIPS("vgg").init, jax.random.key(0),
      jnp.zeros((1, res, res, 3)), jnp.zeros((1, res, res, 3)))["params"]
  terms = forward_operators.DataTerms(
      "deepjscc", loss, generator_resolution=res, image_resolution=res,
      reconstruct=scheme.reconstruct)
  # ILO's default search space, 'z_proxy', maps z through the fitted proxy.
  proxy = dict(mean=jax.ShapeDtypeStruct((layered.w_dim,), jnp.float32),
               std=jax.ShapeDtypeStruct((layered.w_dim,), jnp.float32))
  frozen = dict(generator=_spec(gen_variables), deepjscc=dj_params,
                lpips=lpips_params, latent_proxy=proxy)
  targets = jax.eval_shape(
      terms.prepare_targets, frozen,
      jax.ShapeDtypeStruct((BATCH, res, res, 3), jnp.float32),
      jax.ShapeDtypeStruct((BATCH,), jnp.float32),
      jax.eval_shape(lambda: jax.random.split(jax.random.PRNGKey(0), BATCH)))
  keys = jax.eval_shape(lambda: jax.random.split(jax.random.PRNGKey(1), BATCH))
  find = search.inverter(layered, ilo.ILOConfig(steps=(2, 2)), terms, mesh,
                         loop="scan")
  return find, (frozen, targets, keys)


PROGRAMS = {
    "deepjscc_step": lambda dtype, mesh: _train_step(
        _deepjscc_config(dtype), mesh)[:2],
    "generative_step": lambda dtype, mesh: _train_step(
        _generative_config(dtype), mesh)[:2],
    "inverse_search": _inverse_search,
}


@pytest.fixture(scope="module", params=[
    (name, dtype) for name in PROGRAMS for dtype in ("float32", "bfloat16")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def lowered(request):
  """`{platform: lowered text with debug info}` of one program."""
  name, dtype = request.param
  fn, args = PROGRAMS[name](dtype, _abstract_mesh())
  traced = fn.trace(*args)
  texts = {p: traced.lower(lowering_platforms=(p,)).as_text(debug_info=True)
           for p in ("cpu",) + PLATFORMS}
  return name, dtype, texts


def test_lowers_for_accelerators_without_cpu_routes(lowered):
  name, _, texts = lowered
  if name != "generative_step":  # Its demo sizes take no CPU route.
    assert conv2d.CPU_ROUTE_SCOPE in texts["cpu"]
  for platform in PLATFORMS:
    assert conv2d.CPU_ROUTE_SCOPE not in texts[platform], platform


def test_no_grouped_convolutions_f64_or_host_callbacks(lowered):
  _, _, texts = lowered
  for platform in PLATFORMS:
    text = texts[platform]
    assert "stablehlo.convolution" in text
    groups = re.findall(r"(?:feature|batch)_group_count = (\d+)", text)
    assert groups and set(groups) == {"1"}, platform
    assert "f64" not in text and "complex<f64>" not in text, platform
    targets = set(re.findall(r"custom_call @([\w.]+)", text))
    assert not [t for t in targets if "callback" in t], (platform, targets)


def test_bf16_exactly_where_configured(lowered):
  _, dtype, texts = lowered
  for platform in PLATFORMS:
    assert ("bf16" in texts[platform]) == (dtype == "bfloat16"), platform


def _collectives(compiled_text):
  """`{op: [result type strings]}` of the collectives in compiled HLO."""
  found = {}
  for line in compiled_text.splitlines():
    for op in COLLECTIVES:
      match = re.search(r"= (.*?) " + op + r"(?:-start)?\(", line)
      if match:
        found.setdefault(op, []).append(match.group(1))
  return found


def _shapes(type_string):
  return {tuple(int(d) for d in dims.split(",") if d)
          for dims in re.findall(r"\w+\[([\d,]*)\]", type_string)}


def test_inverse_search_has_no_collectives_on_8_devices():
  mesh = sharding.make_mesh()
  assert mesh.size == 8
  find, args = _inverse_search("float32", mesh)
  text = find.trace(*args).lower().compile().as_text()
  assert "convolution" in text
  assert _collectives(text) == {}


def test_fsdp_step_gathers_kernels_and_reduces_only_gradients():
  mesh = sharding.make_mesh(data=1, fsdp=8)
  config = _deepjscc_config("float32")
  config.loss.lambda_lpips = 0.0
  config.model.arch, config.model.downsampling = "small", 4
  fn, args, state = _train_step(config, mesh, min_size=4096)
  param_shapes = {tuple(x.shape) for x in jax.tree.leaves(state.params)}
  kernels = {s for s in param_shapes if len(s) == 4}
  found = _collectives(fn.trace(*args).lower().compile().as_text())
  gathered = set().union(*map(_shapes, found.get("all-gather", [])))
  assert gathered and gathered <= kernels, gathered - kernels
  reduced = set().union(*map(_shapes, found.get("all-reduce", [])))
  activations = {s for s in reduced if s not in param_shapes and s != ()}
  assert not activations, activations
