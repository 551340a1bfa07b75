"""The 'generative' scheme: GenerativeJSCC for the project's trainer.

`build(config)` maps the config onto
`gjscc_jax.models.generative.build_generative_jscc` and supplies what the
trainer asks of a scheme (`base.Scheme`):

* `init` / `reconstruct`: the model's variables are the trained pytree,
  `{'params': {encoder, receiver, synthesis}, 'buffers': {...},
  ['discriminator': ...]}`. Buffers (StyleGAN2's stored noise) never train.
* `load_pretrained`: for a fresh run, grafts the converted StyleGAN2 weights
  named by `config.generator.weights` (or, with `generator.from_data`, the
  generator that draws the 'generator' dataset: the matched prior) onto the
  synthesis network and sets the W+ offset to the generator's `w_avg`;
  without weights it says loudly that the generator starts from random
  weights.
* `make_optimizer`: `optax.multi_transform` over parameter groups: the
  encoder and receiver use `config.optimizer` (and so do the decoder's
  map scales `inject_scale_*`, `model.injection_scale='learned'`, and the
  *grafted slices*, which are not part of the generator); the synthesis
  network is frozen (`generator.train='frozen'`: no update, no optimiser state, no
  weight gradients) or fine-tuned with the same settings at its own learning
  rate `generator.lr` (default: `optimizer.lr`); the discriminator of the
  adversarial ablation uses Adam(`adversarial.lr`, b1, b2).
  The grafted slices (`grafted_masks`) are the parts of the synthesis
  arrays that a plain StyleGAN2 of the same architecture does not have:
  with 'concat' injection, the kernel input slices and style-affine
  outputs that read the injected maps. A converted generator never brought
  them (GPEN's prior was trained with them), so they train with the
  receiver in every mode, element-wise inside arrays whose other elements
  are frozen or fine-tuned (`split_by_mask`).
* `extra_loss` (only with `adversarial.enabled`): the non-saturating GAN
  term `weight * softplus(-D(x_hat))` for the model plus the discriminator's
  own loss and lazy R1 (`r1_gamma / 2 * ||grad D(x)||^2` every
  `r1_interval` steps, scaled by the interval). The terms are summed into
  one objective with stop-gradients placed so that each part only moves its
  own parameters: the model gets the gradient of the generator term, the
  discriminator those of its loss and R1 (simultaneous updates).
"""

import os

from absl import logging
import ml_collections
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from gjscc_jax import channel as channel_lib
from gjscc_jax import generated_data
from gjscc_jax.models import generative as generative_lib
from gjscc_jax.models import stylegan2
from gjscc_jax.models.stylegan2 import discriminator as disc_lib
from gjscc_jax.schemes import optimizer as optimizer_lib
from gjscc_jax.schemes import base

GENERATOR_TRAINING = ("finetune", "frozen")


def data_generator(config):
  """`(Generator, variables)` of the generator that draws the data.

  For `generator.from_data`: the StyleGAN2 of the 'generator' dataset
  (`config.data.generator`: its converted `dir`, or its seeded random
  StyleGAN2), so that the decoder's prior is the data's source by
  construction (the matched-prior experiment).

  Raises:
    ValueError: if the data are not drawn from a generator.
  """
  if config.data.name != "generator":
    raise ValueError(
        "generator.from_data=True takes the prior from the 'generator' "
        f"dataset, but data.name={config.data.name!r}: set "
        "--config.data.name=generator, or --config.generator.from_data=False "
        "with --config.generator.weights=DIR.")
  return generated_data.load_generator(config.data.generator)


def _generator_architecture(config, module=None):
  """StyleGAN2 synthesis fields, from the converted weights when given.

  `module` (the data's generator, `generator.from_data`) takes precedence.
  A run whose weights directory is gone (evaluating or resuming elsewhere)
  falls back to the config's fields; a fresh run still needs the directory
  (`load_pretrained` reads it), and restoring a checkpoint checks shapes.
  """
  g = config.generator
  arch = dict(w_dim=g.w_dim, channel_base=g.channel_base,
              channel_max=g.channel_max, conv_clamp=g.conv_clamp)
  if module is not None:
    if module.img_resolution != config.data.resolution:
      raise ValueError(
          f"The data's generator is {module.img_resolution}x"
          f"{module.img_resolution} but data.resolution="
          f"{config.data.resolution}: set them equal.")
    return {k: getattr(module, k) for k in arch}
  if not g.get("weights"):
    return arch
  if not os.path.isdir(g.weights):
    logging.warning("generator.weights=%r not found: StyleGAN2 architecture "
                    "from the config (%s).", g.weights, arch)
    return arch
  saved = stylegan2.loading.read_config(g.weights)
  res = config.data.resolution
  if saved["img_resolution"] != res or saved["img_channels"] != 3:
    raise ValueError(
        f"generator.weights={g.weights!r} is a {saved['img_resolution']}x"
        f"{saved['img_resolution']} generator with {saved['img_channels']} "
        f"channels, but data.resolution={res} (RGB): convert a generator of "
        "the training resolution, or set data.resolution to match.")
  from_file = {k: saved[k] for k in arch}
  differ = {k: (arch[k], v) for k, v in from_file.items() if arch[k] != v}
  if differ:
    logging.info("Generator architecture taken from %s (config values "
                 "overridden: %s)", g.weights, differ)
  return from_file


def build_model(config, generator_module=None):
  """The `GenerativeJSCC` module described by `config` (the synthesis
  network shaped like `generator_module` when given)."""
  m = config.model
  arch = _generator_architecture(config, generator_module)
  return generative_lib.build_generative_jscc(
      img_resolution=config.data.resolution,
      latent_channels=m.latent_channels, encoder_arch=m.encoder_arch,
      num_filters=m.num_filters, downsampling=m.downsampling,
      encoder_snr_adaptive=m.encoder_snr_adaptive,
      channel=channel_lib.from_config(config.channel),
      w_dim=arch["w_dim"], synthesis_channel_base=arch["channel_base"],
      synthesis_channel_max=arch["channel_max"], conv_clamp=arch["conv_clamp"],
      injection=m.injection,
      injection_scale=m.get("injection_scale", "learned"),
      injection_scale_gain=m.get("injection_scale_gain", 1.0),
      # Runs saved before the option existed used sub-pixel stages.
      receiver_upsample=m.get("receiver_upsample", "subpixel"),
      noise_in_injected_layers=m.get("noise_in_injected_layers", False),
      inject_max_resolution=m.inject_max_resolution,
      w_mode=m.w_mode, receiver_channel_base=m.receiver_channel_base,
      receiver_channel_max=m.receiver_channel_max,
      receiver_res_blocks=m.receiver_res_blocks,
      receiver_snr_adaptive=m.receiver_snr_adaptive, noise_mode=m.noise_mode,
      dtype=base.compute_dtype(config), remat=base.remat_enabled(config))


def graft_pretrained(params, generator_variables, zero_new_inputs=True):
  """Puts converted StyleGAN2 variables into GenerativeJSCC's variables.

  Args:
    params: the scheme's variables (`{'params', 'buffers', ...}`).
    generator_variables: `load_stylegan2(path)[1]`.

  Returns:
    `params` with the synthesis network's parameters and noise buffers
    grafted (`generative_lib.graft_synthesis`, with `zero_new_inputs`
    for unscaled 'concat' maps) and the receiver's W+
    offset set to the generator's `w_avg`.
  """
  p, b = dict(params["params"]), dict(params["buffers"])
  p["synthesis"] = generative_lib.graft_synthesis(
      p["synthesis"], generator_variables["params"]["synthesis"],
      zero_new_inputs=zero_new_inputs)
  b["synthesis"] = generative_lib.graft_synthesis(
      b["synthesis"], generator_variables["buffers"]["synthesis"])
  receiver = dict(p["receiver"])
  receiver["w_offset"] = jnp.asarray(stylegan2.w_avg(generator_variables),
                                     receiver["w_offset"].dtype)
  p["receiver"] = receiver
  return {**params, "params": p, "buffers": b}


def grafted_masks(model):
  """`{path: float32 mask}` of the synthesis arrays wider than StyleGAN2's.

  `path` is the '/'-joined key of a synthesis parameter (e.g.
  `'b8/conv0/weight'`); its mask is 1 on the elements outside the leading
  slice that a plain synthesis network (`injection='none'`, same
  architecture) has, i.e. where `graft_synthesis` writes nothing. Arrays
  of the plain shape are absent.
  """
  synthesis = model.synthesis
  plain = synthesis.clone(injection="none", parent=None)
  ws = jax.ShapeDtypeStruct((1, synthesis.num_ws, synthesis.w_dim),
                            jnp.float32)
  res = synthesis.img_resolution
  images = jax.ShapeDtypeStruct((1, res, res, 3), jnp.float32)
  snr = jax.ShapeDtypeStruct((1,), jnp.float32)
  key = jax.random.PRNGKey(0)
  wide = jax.eval_shape(lambda x, s: model.init(key, x, s, key), images, snr)
  narrow = jax.eval_shape(lambda w: plain.init(key, w), ws)
  wide = traverse_util.flatten_dict(wide["params"]["synthesis"], sep="/")
  narrow = traverse_util.flatten_dict(narrow["params"], sep="/")
  masks = {}
  for name, leaf in wide.items():
    if name not in narrow or narrow[name].shape == leaf.shape:
      continue
    mask = np.ones(leaf.shape, np.float32)
    mask[tuple(slice(0, n) for n in narrow[name].shape)] = 0.0
    masks[name] = mask
  return masks


def _synthesis_name(path):
  """'b8/conv0/weight' of a `('params', 'synthesis', ...)` tree path."""
  return "/".join(str(p.key) for p in path[2:])


def split_by_mask(inside, outside, masks):
  """A transformation applying `inside` where a mask is 1, `outside` elsewhere.

  For leaves of `('params', 'synthesis', ...)` named in `masks`
  (`grafted_masks`): each of the two inner transformations sees the
  gradient with the other's elements zeroed and keeps its own state, and
  the update is `mask * inside + (1 - mask) * outside`. Element-wise
  optimisers (Adam) thus train the two parts of one array as if they were
  separate arrays.
  """

  def mask_tree(tree):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: jnp.asarray(masks[_synthesis_name(path)]), tree)

  def init(params):
    return inside.init(params), outside.init(params)

  def update(updates, state, params=None):
    m = mask_tree(updates)
    u_in, s_in = inside.update(
        jax.tree.map(lambda g, k: g * k, updates, m), state[0], params)
    u_out, s_out = outside.update(
        jax.tree.map(lambda g, k: g * (1 - k), updates, m), state[1], params)
    merged = jax.tree.map(lambda a, b, k: a * k + b * (1 - k), u_in, u_out, m)
    return merged, (s_in, s_out)

  return optax.GradientTransformation(init, update)


def _labels(params, generator_label, grafted=()):
  """Optimiser group of every leaf: 'default', 'generator', 'frozen', 'discriminator'."""

  def label(path, _):
    top = path[0].key
    if top == "buffers":
      return "frozen"
    if top == "discriminator":
      return "discriminator"
    if top == "params" and path[1].key == "synthesis":
      # The map scales are the decoder's own, not the generator's: they
      # train with the receiver, also when the generator is frozen.
      if generative_lib.is_injection_scale(path[-1].key):
        return "default"
      if _synthesis_name(path) in grafted:
        return "grafted"
      return generator_label
    return "default"

  return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(config, total_steps, masks=None):
  """`(tx, schedule)`: multi_transform over the groups (module docstring).

  `masks`: `grafted_masks(model)`, the grafted slices (None or {}: none).
  """
  mode = config.generator.train
  if mode not in GENERATOR_TRAINING:
    raise ValueError(f"generator.train={mode!r} must be one of {GENERATOR_TRAINING}.")
  tx, schedule = optimizer_lib.make_optimizer(config.optimizer, total_steps)
  transforms = {"default": tx, "frozen": optax.set_to_zero()}
  if mode == "finetune":
    g_opt = ml_collections.ConfigDict(config.optimizer.to_dict())
    if config.generator.get("lr") is not None:
      g_opt.lr = config.generator.lr
    transforms["generator"] = optimizer_lib.make_optimizer(g_opt, total_steps)[0]
  adv = config.get("adversarial")
  if adv is not None and adv.enabled:
    transforms["discriminator"] = optax.adam(adv.lr, b1=adv.b1, b2=adv.b2)
  generator_label = "generator" if mode == "finetune" else "frozen"
  masks = masks or {}
  if masks:
    transforms["grafted"] = split_by_mask(tx, transforms[generator_label],
                                          masks)
  return optax.multi_transform(
      transforms, lambda params: _labels(params, generator_label, masks)), schedule


def _adversarial_loss(config, discriminator):
  """The `extra_loss` of the adversarial ablation (module docstring)."""
  adv = config.adversarial
  sg = jax.lax.stop_gradient

  def logits(d_params, images):
    return discriminator.apply({"params": d_params}, images)

  def extra_loss(params, images, recon, key, step):
    del key
    d_params = params["discriminator"]
    g_term = disc_lib.generator_loss(logits(sg(d_params), recon))
    d_term = disc_lib.discriminator_loss(logits(d_params, images),
                                         logits(d_params, sg(recon)))
    r1 = jax.lax.cond(
        step % adv.r1_interval == 0,
        lambda: disc_lib.r1_penalty(lambda x: logits(d_params, x), images),
        lambda: jnp.zeros((), jnp.float32))
    total = (adv.weight * g_term + d_term +
             0.5 * adv.r1_gamma * adv.r1_interval * r1)
    return total, dict(adv_generator=g_term, adv_discriminator=d_term, r1=r1)

  return extra_loss


def build(config) -> base.Scheme:
  """Builds the GenerativeJSCC `Scheme` from `config` (module docstring)."""
  from_data = bool(config.generator.get("from_data"))
  if from_data and config.generator.get("weights"):
    raise ValueError("Set either generator.weights or generator.from_data, "
                     "not both.")
  prior = data_generator(config) if from_data else None
  model = build_model(config, prior[0] if prior else None)
  dtype = base.compute_dtype(config)
  res = config.data.resolution
  frozen = config.generator.train == "frozen"
  scaled = config.model.get("injection_scale", "learned") == "learned"
  if (frozen and config.model.injection == "concat" and not scaled
      and (config.generator.get("weights") or from_data)):
    raise ValueError(
        "generator.train='frozen' with model.injection='concat', "
        "model.injection_scale='none' and converted weights would ignore the "
        "injected feature maps: their kernel slices start at zero and a "
        "frozen generator never updates them. Use "
        "--config.model.injection_scale=learned (GPEN's zero-initialised "
        "scales, trained with the receiver), --config.model.injection=add "
        "or --config.generator.train=finetune.")
  adv = config.get("adversarial")
  adversarial = adv is not None and adv.enabled
  discriminator = None
  if adversarial:
    discriminator = disc_lib.Discriminator(
        img_resolution=res, channel_base=adv.channel_base,
        channel_max=adv.channel_max, dtype=dtype)
  sg = jax.lax.stop_gradient
  masks = grafted_masks(model)

  def trained_slices(name, value):
    """A frozen array whose grafted slice still gets its gradient."""
    if name not in masks:
      return sg(value)
    m = jnp.asarray(masks[name], value.dtype)
    return sg(value) + m * (value - sg(value))

  def init(key, images):
    model_key, d_key, channel_key = jax.random.split(key, 3)
    snr = jnp.zeros(images.shape[:1], jnp.float32)
    variables = dict(model.init(model_key, images, snr, channel_key))
    if adversarial:
      variables["discriminator"] = discriminator.init(d_key, images)["params"]
    return variables

  def reconstruct(params, images, snr_db, key):
    p = params["params"]
    if frozen:  # No gradients for the frozen generator's weights, but the
      # map scales and the grafted slices train (they are the decoder's own).
      flat = traverse_util.flatten_dict(p["synthesis"], sep="/")
      p = {**p, "synthesis": traverse_util.unflatten_dict({
          k: v if generative_lib.is_injection_scale(k)
          else trained_slices(k, v) for k, v in flat.items()}, sep="/")}
    variables = {"params": p, "buffers": sg(params["buffers"])}
    return model.apply(variables, images, snr_db, key)

  def load_pretrained(params):
    path = config.generator.get("weights")
    if prior is not None:
      generator_variables = prior[1]
      logging.info("Synthesis network initialised from the data's generator "
                   "(%s)", config.generator.train)
    elif not path:
      logging.warning(
          "generator.weights is not set: the StyleGAN2 synthesis network of "
          "GenerativeJSCC starts from RANDOM weights (fine for the CPU demo; "
          "for paper-scale runs convert the official FFHQ generator with "
          "`python -m weights_convert stylegan2 SRC DST` and pass "
          "--config.generator.weights=DST).")
      return params
    else:
      _, generator_variables = stylegan2.load_stylegan2(path)
      logging.info("Synthesis network initialised from %s (%s)", path,
                   config.generator.train)
    grafted = graft_pretrained(params, generator_variables,
                               zero_new_inputs=not scaled)
    shardings = jax.tree.map(lambda x: x.sharding, params)
    return jax.device_put(grafted, shardings)

  def make(total_steps):
    return make_optimizer(config, total_steps, masks)

  return base.Scheme(
      "generative", model, init, reconstruct, make, dtype,
      base.channel_ratio(model.channel, config.data.resolution,
                         model.latent_channels, model.downsampling),
      load_pretrained=load_pretrained,
      extra_loss=_adversarial_loss(config, discriminator) if adversarial else None)

