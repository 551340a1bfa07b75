"""GenerativeJSCC: shapes and rho, config errors, and converted official
StyleGAN2 weights in the decoder (oracle: NVIDIA's code).

Training behaviour (gradients, optimiser groups, frozen generator, sharding)
is in test_generative_train.py; the adversarial ablation in
test_generative_adversarial.py.
"""

import copy
import os
import pickle
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import generative_ffhq
from gjscc_jax.models.generative import synthesis as generative_synthesis
from gjscc_jax.models.stylegan2 import synthesis as stylegan2_synthesis
from gjscc_jax import schemes

# A tiny variant of the demo: 16x16 images, 4x downsampling (4x4 latents),
# narrow networks; every jitted function compiles in seconds on a CPU.
TINY = {
    "data.resolution": 16, "data.sample_train_size": 16,
    "data.sample_test_size": 8, "model.encoder_arch": "small",
    "model.num_filters": 8, "model.downsampling": 4,
    "model.latent_channels": 4, "model.receiver_channel_base": 32,
    "model.receiver_channel_max": 8, "model.receiver_res_blocks": 0,
    "generator.w_dim": 16, "generator.channel_base": 64,
    "generator.channel_max": 16, "adversarial.channel_base": 32,
    "adversarial.channel_max": 8, "loss.lambda_lpips": 0.0, "batch_size": 8,
    "log_every": 1, "eval.batch_size": 8, "eval.snrs_db": (-5.0, 5.0),
    "eval.num_examples": 4, "eval.lpips_nets": (),
}
RES = 16


def tiny_config(arg="demo", **overrides):
  """The demo config with `TINY` and `overrides` ('a.b' keys) applied."""
  config = generative_ffhq.get_config(arg)
  for key, value in {**TINY, **overrides}.items():
    node = config
    *path, leaf = key.split(".")
    for name in path:
      node = node[name]
    node[leaf] = value
  return config


@pytest.mark.parametrize("bcr,channels", [("1/768", 2), ("1/384", 4), ("1/192", 8)])
def test_paper_scale_shapes_and_bandwidth_ratio(bcr, channels):
  """rho = k / n = C / 1536 at 256x256 with the 16x Tung encoder."""
  config = generative_ffhq.get_config(f"bcr={bcr}")
  scheme = schemes.build_scheme(config)
  x = jax.ShapeDtypeStruct((2, 256, 256, 3), jnp.float32)
  snr = jax.ShapeDtypeStruct((2,), jnp.float32)
  params = jax.eval_shape(scheme.init, jax.random.PRNGKey(0), x)
  recon = jax.eval_shape(scheme.reconstruct, params, x, snr, jax.random.PRNGKey(0))
  latents = jax.eval_shape(
      lambda p, x: scheme.model.apply(p, x, jnp.zeros(2), method="encode"), params, x)
  assert recon.shape == (2, 256, 256, 3) and recon.dtype == jnp.float32
  assert latents.shape == (2, 16, 16, channels)
  k = np.prod(latents.shape[1:]) // 2  # complex channel uses per image
  assert scheme.bandwidth_ratio == pytest.approx(k / (256 * 256 * 3))
  assert scheme.bandwidth_ratio == pytest.approx(channels / 1536)
  # The decoder is the 256x256 StyleGAN2 (14 W+ rows) fed by the receiver.
  synthesis = params["params"]["synthesis"]
  blocks = [k for k in synthesis if not k.startswith("inject_scale_")]
  assert sorted(blocks, key=lambda b: int(b[1:])) == [
      f"b{4 * 2**i}" for i in range(7)]
  # GPEN's learned map scales (one scalar per injected layer, all 13).
  assert {k for k in synthesis if k not in blocks} == {
      f"inject_scale_{l}" for l in range(13)}
  assert params["params"]["receiver"]["w_out"]["kernel"].shape == (512, 14 * 512)


def init_key(seed=0):
  """An 'rbg' key: its RNG compiles ~4x faster than threefry's on CPU."""
  return jax.random.key(seed, impl="rbg")


@pytest.fixture(scope="module")
def tiny_params():
  """Initial variables of the tiny config (concat injection), 8 images."""
  scheme = schemes.build_scheme(tiny_config())
  return jax.jit(scheme.init)(init_key(), jnp.zeros((8, RES, RES, 3)))


def changes(before, after):
  """Per leaf, the largest absolute change."""
  return jax.tree.map(
      lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))), after, before)


def test_config_arguments_and_errors():
  assert generative_ffhq.get_config("bcr=1/768").model.latent_channels == 2
  assert generative_ffhq.get_config("bcr=1/384").model.latent_channels == 4
  config = generative_ffhq.get_config("generator=frozen,injection=add,lpips=0.5")
  assert (config.generator.train, config.model.injection,
          config.loss.lambda_lpips) == ("frozen", "add", 0.5)
  with pytest.raises(ValueError, match="valid arguments are"):
    generative_ffhq.get_config("demo,injecton=add")
  with pytest.raises(ValueError, match="generator.train"):
    schemes.build_scheme(tiny_config(**{"generator.train": "thaw"})).make_optimizer(10)
  with pytest.raises(ValueError, match="injection"):
    schemes.build_scheme(tiny_config(**{"model.injection": "mul"}))
  # A frozen converted generator could never learn unscaled 'concat' maps
  # (their kernel slices start at zero); learned scales (the default) can.
  with pytest.raises(ValueError, match="injection_scale=learned"):
    schemes.build_scheme(tiny_config(**{
        "generator.train": "frozen", "model.injection": "concat",
        "model.injection_scale": "none",
        "generator.weights": "/converted/ffhq256"}))
  schemes.build_scheme(tiny_config(**{
      "generator.train": "frozen", "model.injection": "concat",
      "generator.weights": "/converted/ffhq256"}))
  with pytest.raises(ValueError, match="injection_scale"):
    schemes.build_scheme(tiny_config(**{"model.injection_scale": "zero"}))
  with pytest.raises(ValueError, match="multiple of downsampling"):
    schemes.build_scheme(tiny_config(**{"data.resolution": 18}))
  # Evaluating a run whose weights are gone works (architecture from the
  # config); starting one does not.
  scheme = schemes.build_scheme(tiny_config(**{"generator.weights": "/nonexistent"}))
  with pytest.raises(FileNotFoundError, match="weights_convert stylegan2"):
    scheme.load_pretrained({})


# --- Converted official weights (oracle: NVIDIA's StyleGAN2) ------------------

def _official_generator(res, seed=0):
  torch = pytest.importorskip("torch")
  draggan = pytest.importorskip("draggan")
  sys.path.insert(0, os.path.join(os.path.dirname(draggan.__file__), "stylegan2"))
  from training import networks as official  # pylint: disable=import-outside-toplevel
  torch.manual_seed(seed)
  g = official.Generator(
      z_dim=16, c_dim=0, w_dim=16, img_resolution=res, img_channels=3,
      mapping_kwargs=dict(num_layers=2),
      synthesis_kwargs=dict(channel_base=64, channel_max=16, num_fp16_res=0,
                            conv_clamp=256))
  with torch.no_grad():  # Every parameter matters: non-zero biases/strengths.
    for name, p in g.named_parameters():
      if name.endswith(("bias", "noise_strength")):
        p.add_(torch.randn_like(p) * 0.5)
    g.mapping.w_avg.copy_(torch.randn_like(g.mapping.w_avg))
  return g.eval()


@pytest.fixture(scope="module")
def official_weights(tmp_path_factory):
  """An official 16x16 generator, pickled as a training snapshot and converted."""
  from weights_convert import stylegan2 as convert_lib
  g = _official_generator(RES)
  tmp = tmp_path_factory.mktemp("official")
  with open(tmp / "snapshot.pkl", "wb") as f:
    pickle.dump(dict(G=None, D=None, G_ema=copy.deepcopy(g).requires_grad_(False),
                     augment_pipe=None), f)
  convert_lib.convert(str(tmp / "snapshot.pkl"), str(tmp / "converted"))
  return g, str(tmp / "converted")


def _pretrained(path, injection, params=None, **overrides):
  """Scheme with `path` grafted by `load_pretrained` onto fresh `params`."""
  config = tiny_config(**{"generator.weights": path, "model.injection": injection,
                          **overrides})
  scheme = schemes.build_scheme(config)
  if params is None:
    params = jax.jit(scheme.init)(init_key(), jnp.zeros((8, RES, RES, 3)))
  return scheme, scheme.load_pretrained(params)


def _synthesis(scheme, params, ws, maps):
  return jax.jit(lambda p, ws, maps: scheme.model.apply(
      p, ws, maps, method=lambda m, w, mp: m.synthesis(w, mp, noise_mode="const")))(
          params, ws, maps)


def _official_image(g, ws, quiet_layers=()):
  """The official synthesis (const noise) with the noise of `quiet_layers` off."""
  import torch  # pylint: disable=import-outside-toplevel
  g = copy.deepcopy(g)
  layers = [g.synthesis.b4.conv1] + [
      getattr(getattr(g.synthesis, f"b{r}"), c) for r in (8, 16)
      for c in ("conv0", "conv1")]
  with torch.no_grad():
    for l in quiet_layers:
      layers[l].noise_strength.zero_()
    image = g.synthesis(torch.from_numpy(ws), noise_mode="const")
  return image.numpy().transpose(0, 2, 3, 1)


def _maps(scheme, batch, layers):
  """Random maps for `layers` (None for the others), at each layer's width."""
  channels = scheme.model.synthesis.layer_channels()
  shapes = stylegan2_synthesis.noise_shapes(RES)
  return [jax.random.normal(jax.random.PRNGKey(l), (batch, h, w, c))
          if l in layers else None
          for l, ((h, w), c) in enumerate(zip(shapes, channels))]


def test_converted_official_weights_reproduce_the_generator(official_weights):
  g_official, path = official_weights
  ws = np.random.RandomState(0).randn(2, 6, 16).astype(np.float32)
  expected = _official_image(g_official, ws)
  tol = dict(atol=1e-5 * np.abs(expected).max())

  with jax.default_matmul_precision("highest"):
    # Injection off: the decoder is the plain generator.
    scheme, params = _pretrained(path, "none")
    np.testing.assert_allclose(_synthesis(scheme, params, ws, None), expected, **tol)
    np.testing.assert_allclose(params["params"]["receiver"]["w_offset"],
                               g_official.mapping.w_avg.numpy())
    # 'concat' without scales, noise kept in injected layers: the grafted
    # decoder's extra input slices are zero, so it starts as the plain
    # generator whatever the injected maps are.
    scheme, params = _pretrained(path, "concat", **{
        "model.injection_scale": "none", "model.noise_in_injected_layers": True})
    ours = _synthesis(scheme, params, ws, _maps(scheme, 2, range(5)))
    np.testing.assert_allclose(ours, expected, **tol)
    torgb = params["params"]["synthesis"]["b16"]["torgb"]["weight"]
    assert torgb.shape[2] == 2 * 4 and not np.any(np.asarray(torgb[:, :, 4:]))


@pytest.mark.parametrize("noise_in_injected_layers", [False, True])
def test_zero_scales_give_the_converted_generator_exactly(
    official_weights, noise_in_injected_layers):
  """GPEN's injection: learned scales at 0, no noise in injected layers.

  Maps go to the layers at 4x4 and 8x8 (layers 0-2); the 16x16 layers get
  none. With the scales at 0 the decoder is the converted generator, whose
  injected layers add no noise (`noise_in_injected_layers=False`, GPEN's
  layer) or their stored noise (`True`), while the kernel slices that read
  the maps keep their random initial values. Non-zero scales change the
  image, and the image's gradient reaches the scales at 0.
  """
  g_official, path = official_weights
  ws = np.random.RandomState(0).randn(2, 6, 16).astype(np.float32)
  quiet = () if noise_in_injected_layers else (0, 1, 2)
  expected = _official_image(g_official, ws, quiet)
  tol = dict(atol=1e-5 * np.abs(expected).max())
  with jax.default_matmul_precision("highest"):
    scheme, params = _pretrained(path, "concat", **{
        "model.inject_max_resolution": 8,
        "model.noise_in_injected_layers": noise_in_injected_layers})
    synthesis = params["params"]["synthesis"]
    assert sorted(k for k in synthesis if k.startswith("inject_scale")) == [
        "inject_scale_0", "inject_scale_1", "inject_scale_2"]
    assert all(float(synthesis[f"inject_scale_{l}"]) == 0 for l in range(3))
    # The slices reading the maps are not zeroed (the scales gate them).
    assert np.all(np.asarray(synthesis["b8"]["torgb"]["weight"][:, :, 8:]) != 0)
    assert np.all(np.asarray(synthesis["b8"]["conv0"]["weight"][:, :, 16:]) != 0)
    maps = _maps(scheme, 2, (0, 1, 2))
    np.testing.assert_allclose(_synthesis(scheme, params, ws, maps), expected, **tol)

    def image_sum(scales):
      p = {**params["params"], "synthesis": {**synthesis, **{
          f"inject_scale_{l}": scales[l] for l in range(3)}}}
      return jnp.sum(_synthesis(scheme, {**params, "params": p}, ws, maps) *
                     jnp.asarray(expected))

    grads = jax.grad(image_sum)(jnp.zeros(3))
    assert np.all(np.abs(np.asarray(grads)) > 1e-3), grads
    scaled = _synthesis(scheme, {**params, "params": {**params["params"], "synthesis": {
        **synthesis, "inject_scale_1": jnp.float32(0.5)}}}, ws, maps)
    assert np.abs(np.asarray(scaled) - expected).max() > 1e-2


def test_weights_of_another_resolution_are_refused(official_weights):
  _, path = official_weights
  config = tiny_config(**{"generator.weights": path, "data.resolution": 32})
  with pytest.raises(ValueError, match="data.resolution=32"):
    schemes.build_scheme(config)


def test_graft_names_what_does_not_fit():
  target = {"b4": {"conv1": {"weight": jnp.zeros((3, 3, 8, 8))}}}
  with pytest.raises(ValueError, match="missing.*b4/conv1/weight"):
    generative_synthesis.graft_synthesis(target, {"b4": {}})
  with pytest.raises(ValueError, match="incompatible shapes"):
    generative_synthesis.graft_synthesis(
        target, {"b4": {"conv1": {"weight": jnp.zeros((3, 3, 16, 8))}}})
