"""`remat`: the same variables, values and gradients, fewer saved activations.

For every network with a `remat` option (StyleGAN2 synthesis, LPIPS,
DeepJSCC, GenerativeJSCC through the trainer's step) the variables are
identical with and without it (names, shapes and dtypes, so checkpoints
and converted weights load either way), and so are the outputs
and gradients (to float rounding). That remat takes effect is measured on
what it controls: the bytes autodiff keeps from the forward pass for the
backward pass (the activations among the residuals of `jax.vjp`), which
must shrink. (XLA:CPU
undoes remat when it compiles: it drops the optimisation barriers and merges
the recomputation back into the forward pass, so a CPU program's scratch
memory does not show the saving; `python -m benchmarks.remat_memory` prints both
measures for any backend.)
"""

import jax
import jax.extend.core as jex_core
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from gjscc_jax import schemes
from gjscc_jax.losses import PerceptualLoss
from gjscc_jax.losses import lpips as lpips_lib
from gjscc_jax.models.deepjscc import DeepJSCC
from gjscc_jax.models.stylegan2 import Generator
from gjscc_jax.train import loop as train
from gjscc_jax.train import step as step_lib
from tests.test_generative import RES, init_key, tiny_config


BATCH = 2


def activation_bytes(fn, *args):
  """Bytes of the activations `jax.vjp(fn, *args)` keeps for the backward
  pass: its residuals of shape (BATCH, H, W, C), inputs not counted (no
  kernel here has a leading size of 2)."""
  closed = jax.make_jaxpr(lambda *a: jax.tree.leaves(jax.vjp(fn, *a)[1]))(
      *args)
  inputs = set(closed.jaxpr.invars) | set(closed.jaxpr.constvars)
  return sum(v.aval.size * v.aval.dtype.itemsize for v in closed.jaxpr.outvars
             if isinstance(v, jex_core.Var) and v not in inputs
             and v.aval.ndim == 4 and v.aval.shape[0] == BATCH)


def assert_same_variables(a, b):
  """Same paths, shapes and dtypes (of `jax.eval_shape(init, ...)` trees)."""
  flat_a = traverse_util.flatten_dict(a, sep="/")
  flat_b = traverse_util.flatten_dict(b, sep="/")
  assert flat_a.keys() == flat_b.keys()
  for k in flat_a:
    assert (flat_a[k].shape, flat_a[k].dtype) == (flat_b[k].shape,
                                                  flat_b[k].dtype), k


def assert_close_trees(a, b, rtol=1e-5, atol=1e-6):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a),
                          jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol,
                               err_msg=jax.tree_util.keystr(path))


def _compile(fn, *args):
  """jit with XLA's backend optimisations off: tiny programs build faster."""
  return jax.jit(fn).lower(*args).compile(
      compiler_options={"xla_backend_optimization_level": 0})


def test_stylegan2_synthesis():
  """Random noise, a start block > 0 with features and skip image: the
  image and the gradients for parameters, W+ and features agree."""
  kw = dict(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=2,
            channel_base=128, channel_max=16)
  plain, rematted = Generator(**kw), Generator(**kw, remat=True)
  z = jnp.ones((1, 16))
  variables = _compile(plain.init, jax.random.key(0), z)(jax.random.key(0), z)
  assert_same_variables(jax.eval_shape(rematted.init, jax.random.key(0), z),
                        jax.eval_shape(plain.init, jax.random.key(0), z))
  ws = jax.random.normal(jax.random.key(1), (BATCH, plain.num_ws, 16))
  x = jax.random.normal(jax.random.key(2), (BATCH, 4, 4, 16))

  def loss(g):
    def fn(params, ws, x):
      image = g.apply({**variables, "params": params}, ws,
                      method=g.synthesize, noise_mode="random",
                      key=jax.random.key(3), start_block=1, x=x)
      return jnp.mean(jnp.square(image - 0.5)), image
    return fn

  args = (variables["params"], ws, x)
  out = [_compile(jax.value_and_grad(loss(g), (0, 1, 2), has_aux=True),
                  *args)(*args) for g in (plain, rematted)]
  assert_close_trees(out[1], out[0])
  saved = [activation_bytes(lambda *a, g=g: loss(g)(*a)[0], *args)
           for g in (plain, rematted)]
  print(f"StyleGAN2 activations kept: {saved[0]} -> {saved[1]} bytes")
  assert saved[1] < saved[0] / 4


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_lpips(net):
  """Value and image gradient of LPIPS with its real weights, against a
  prepared target (as InverseJSCC's steps): with remat the backward pass
  keeps exactly the scaled input image and the five raw taps."""
  size = 32 if net == "vgg" else 48
  x, y = jax.random.uniform(jax.random.key(0), (2, BATCH, size, size, 3),
                            minval=-1, maxval=1)
  plain = PerceptualLoss(1.0, net=net)
  rematted = PerceptualLoss(1.0, net=net, remat=True)
  params = plain.load_params()
  assert_same_variables(
      *[jax.eval_shape(loss.model.init, jax.random.key(0), x, y)
        for loss in (plain, rematted)])
  target = plain.prepare_target(params, y)

  def value(loss):
    return lambda x, t, p: jnp.sum(loss.lpips(p, x, t))

  out = [_compile(jax.value_and_grad(value(loss)), x, target, params)(
      x, target, params) for loss in (plain, rematted)]
  assert_close_trees(out[1], out[0], rtol=1e-5, atol=1e-7)
  saved = [activation_bytes(lambda x, loss=loss: value(loss)(x, target,
                                                             params), x)
           for loss in (plain, rematted)]
  taps = jax.eval_shape(lambda x: plain.model.apply(  # Shapes of the taps.
      {"params": params}, x, method=lpips_lib.LPIPS.features), x)
  print(f"LPIPS-{net} activations kept: {saved[0]} -> {saved[1]} bytes")
  assert saved[1] == x.nbytes + sum(t.size * t.dtype.itemsize for t in taps)
  assert saved[1] < saved[0] / 2


def _random_params(shapes, seed=0):
  """Generic parameters of the right shapes (kernels ~ 1/sqrt(fan_in))."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
  rng = np.random.default_rng(seed)
  values = []
  for path, leaf in leaves:
    fan_in = max(int(np.prod(leaf.shape[:-1])), 1)
    scale = 1 / np.sqrt(fan_in) if path[-1].key == "kernel" else 0.1
    values.append(jnp.asarray(
        np.abs(rng.normal(size=leaf.shape)) * 0.2 + 0.5
        if path[-1].key in ("beta", "gamma") else
        rng.normal(size=leaf.shape) * scale, jnp.float32))
  return jax.tree_util.tree_unflatten(treedef, values)


@pytest.mark.parametrize("arch", ["tung", "small"])
def test_deepjscc(arch):
  """Encoder -> channel -> decoder (SNR-adaptive, so the AF modules are
  inside the stages): the reconstruction, and for the small architecture
  the parameter gradients too (the Tung network's gradient program takes
  minutes to compile on CPU; its forward checks the stage wiring)."""
  kw = dict(arch=arch, num_filters=8, latent_channels=4, snr_adaptive=True,
            downsampling=16 if arch == "tung" else 4)
  plain, rematted = DeepJSCC(**kw), DeepJSCC(**kw, remat=True)
  images = jax.random.uniform(jax.random.key(0), (BATCH, 32, 32, 3),
                              minval=-1, maxval=1)
  snr, key = jnp.array([-3.0, 7.0]), jax.random.key(1)
  shapes = [jax.eval_shape(m.init, jax.random.key(0), images, snr, key)
            for m in (plain, rematted)]
  assert_same_variables(*shapes)
  params = _random_params(shapes[0])

  def loss(model):
    return lambda p: jnp.mean(jnp.square(
        model.apply(p, images, snr, key) - images))

  fn = loss if arch == "tung" else lambda m: jax.value_and_grad(loss(m))
  out = [_compile(fn(m), params)(params) for m in (plain, rematted)]
  assert_close_trees(out[1], out[0])
  saved = [activation_bytes(loss(m), params) for m in (plain, rematted)]
  print(f"DeepJSCC-{arch} activations kept: {saved[0]} -> {saved[1]} bytes")
  assert saved[1] < saved[0] / 2


def test_generative_train_step():
  """One trainer step of the tiny GenerativeJSCC ('concat' injection,
  fine-tuned generator): `config.remat` reaches the encoder, the synthesis
  network and the loss's LPIPS, and the step is the same."""
  configs = [tiny_config(remat=remat) for remat in (False, True)]
  built = [schemes.build_scheme(c) for c in configs]
  images = jnp.zeros((BATCH, RES, RES, 3))
  params = _compile(built[0].init, init_key(), images)(init_key(), images)
  assert_same_variables(jax.eval_shape(built[1].init, init_key(), images),
                        jax.eval_shape(built[0].init, init_key(), images))
  assert built[1].model.synthesis.remat and built[1].model.encoder.remat
  batch = {"image": np.random.default_rng(0).integers(
      0, 256, (BATCH, RES, RES, 3), dtype=np.uint8)}
  out = []
  for config, scheme in zip(configs, built):
    loss, frozen = train.build_loss(config)
    assert loss.remat == config.remat
    tx, _ = scheme.make_optimizer(config.total_steps)
    state = step_lib.create_train_state(params, tx, jax.random.PRNGKey(1))
    step = step_lib.make_train_step(scheme, loss, tx, (-5.0, 5.0))
    args = (state, batch, jax.random.PRNGKey(2), frozen)
    new_state, metrics = _compile(step, *args)(*args)
    out.append((new_state.params, metrics["loss"], metrics["grad_norm"]))
  assert_close_trees(out[1], out[0], rtol=1e-5, atol=1e-7)


def test_remat_setting_must_be_a_bool():
  assert not schemes.remat_enabled(ml_collections.ConfigDict())
  assert schemes.remat_enabled(ml_collections.ConfigDict({"remat": True}))
  with pytest.raises(ValueError, match="remat"):
    schemes.remat_enabled(ml_collections.ConfigDict({"remat": "false"}))
