"""Helpers shared by the config files: `get_config(arg)` parsing, common blocks."""

from absl import logging
import ml_collections
from ml_collections import config_dict

from gjscc_jax import channel
from gjscc_jax import data


#: Config arguments renamed to the glossary's names (docs/glossary.md): old
#: -> new; an old name still works, with a one-line warning.
RENAMED_ARGS = {"bcr": "rho"}


def parse_arg(arg, **defaults):
  """Parses a config argument such as `"demo,rho=1/192"` against defaults.

  Tokens are separated by commas. `key=value` sets a key; a bare `key` sets a
  boolean key to True. Values take the type of their default (bool accepts
  true/false/1/0). Keys without a default are an error, so a typo in
  `--config=name:arg` fails loudly instead of being ignored.

  Args:
    arg: The string after the colon in `--config=NAME:ARG`, or None.
    **defaults: Every accepted key with its default value.

  Returns:
    A ConfigDict with one entry per default.
  """
  values = dict(defaults)
  for token in filter(None, (t.strip() for t in (arg or "").split(","))):
    key, sep, raw = token.partition("=")
    key = key.strip()
    if key in RENAMED_ARGS and key not in defaults:
      logging.warning("Config argument %r is deprecated; use %r "
                      "(docs/glossary.md).", key, RENAMED_ARGS[key])
      key = RENAMED_ARGS[key]
    if key not in defaults:
      raise ValueError(
          f"Unknown config argument {key!r} in {arg!r}; valid arguments are "
          f"{', '.join(sorted(defaults))}.")
    default = defaults[key]
    if not sep:
      if not isinstance(default, bool):
        raise ValueError(f"Config argument {key!r} needs a value: {key}=...")
      values[key] = True
    elif isinstance(default, bool):
      if raw.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"Config argument {key}={raw!r} must be true or false.")
      values[key] = raw.lower() in ("true", "1")
    elif default is None:
      values[key] = raw
    else:
      try:
        values[key] = type(default)(raw)
      except ValueError as e:
        raise ValueError(
            f"Config argument {key}={raw!r} is not a valid "
            f"{type(default).__name__}.") from e
  return ml_collections.ConfigDict(values)


# Blocks shared by the training configs (deepjscc_ffhq, generative_ffhq). Each
# `add_*` function sets its fields on `config` in a fixed order, so the
# resulting configs (and their config.json) keep one layout.


def base_config(scheme, data_name, resolution=256):
  """A new config with `scheme`, `seed`, `dtype` and the `data` block."""
  config = ml_collections.ConfigDict()
  config.scheme = scheme
  config.seed = 0
  config.dtype = "float32"  # or 'bfloat16' (params and optimiser stay float32)
  # Recompute activations in the backward pass (per encoder/decoder stage,
  # StyleGAN2 block and LPIPS stage) instead of storing them: less memory,
  # about one more forward pass of compute. Parameters are the same.
  config.remat = False

  config.data = data.default_data_config()
  config.data.name = data_name
  config.data.resolution = resolution
  return config


def latent_channels(rho, downsampling=16):
  """Latent channels C for a bandwidth ratio string such as '1/192'."""
  return channel.latent_channels_for_bcr(channel.parse_ratio(rho),
                                         downsampling=downsampling)


def channel_config():
  """The `channel` block (`gjscc_jax.channel.from_config` builds the
  `Channel`): AWGN by default, the other channels' settings ready.
  docs/channels.md describes every field."""
  return ml_collections.ConfigDict(dict(
      kind="awgn",          # 'awgn' | 'rayleigh' | 'rician' | 'ofdm'
      fading="slow",        # 'slow' (per image) | 'fast' (per symbol) | 'block'
      equalization="mmse",  # 'zf' | 'mmse'
      power=1.0,
      coherence=1,          # fading='block': symbols (OFDM symbols) per draw
      k_factor=4.0,         # rician: K (linear)
      csi="perfect",        # 'perfect' | 'ls' | 'lmmse' (ofdm pilots)
      side_info="snr",      # 'snr' | 'snr+gain' (AF modules, snr_adaptive)
      fft_size=64, subcarriers=52, cyclic_prefix=16, pilot_spacing=4,  # ofdm
      pdp="exponential",    # ofdm: 'exponential' | 'tdl-a' | 'tdl-b' | 'tdl-c'
      taps=8,               # ofdm exponential profile: taps
      delay_spread=1.5))    # ofdm: exponential decay / TDL rms spread, samples


def add_training(config):
  """Batch, steps, Adam with warm-up + cosine, mesh, logging, checkpoints, eval."""
  config.batch_size = 32
  config.total_steps = 200_000
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adam", lr=1e-4, b1=0.9, b2=0.999, eps=1e-8, schedule="cosine",
      warmup_steps=1000, final_lr_fraction=0.1, grad_clip_norm=0.0))
  config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
  config.log_every = 100
  config.checkpoint_every = 5000
  config.keep_checkpoints = 3
  # JAX's persistent compilation cache; None: $JAX_COMPILATION_CACHE_DIR if
  # set, else WORKDIR/compilation_cache.
  config.compilation_cache_dir = config_dict.placeholder(str)

  config.eval = ml_collections.ConfigDict(dict(
      split="test", snrs_db=(-5.0, -3.0, -1.0, 0.0, 1.0, 3.0, 5.0),
      realisations=2, num_images=config_dict.placeholder(int),
      batch_size=32, lpips_nets=("vgg", "alex"), num_examples=8, seed=1))
  return config


def apply_demo(config):
  """The `:demo` settings shared by the training configs.

  The embedded sample data at 64x64, 400 steps of batch 16 at lr 1e-3, and a
  one-realisation SNR sweep with LPIPS-AlexNet only. The model sizes are set
  by each config.
  """
  config.data.name = "sample"
  config.data.resolution = 64
  config.batch_size = 16
  config.total_steps = 400
  config.optimizer.lr = 1e-3
  config.optimizer.warmup_steps = 50
  config.log_every = 25
  config.checkpoint_every = 200
  config.eval.realisations = 1
  config.eval.batch_size = 32
  config.eval.lpips_nets = ("alex",)
  return config


# The matched-prior experiment (`:matched`): every scheme on images drawn
# from one fixed generator G0, which GenerativeJSCC and InverseJSCC also get
# as their prior. docs/matched-prior.md.

#: SNRs of the matched experiment's evaluation.
MATCHED_SNRS_DB = (-5.0, 0.0, 5.0)
#: Test images of the matched experiment.
MATCHED_TEST_IMAGES = 32


def matched_data(data_config):
  """Sets `data_config` to the 'generator' dataset of G0 at 64x64.

  G0 is the seeded random StyleGAN2 of `data_config.generator.random` (the
  defaults: seed 0, 64x64, w_dim 64); images are drawn with fresh noise
  maps and no truncation, 4096 for training and `MATCHED_TEST_IMAGES` for
  the test.
  """
  data_config.name = "generator"
  data_config.resolution = 64
  data_config.random_flip = False  # G0's images, as drawn.
  data_config.generator.train_size = 4096
  data_config.generator.test_size = MATCHED_TEST_IMAGES
  data_config.generator.truncation_psi = 1.0
  data_config.generator.noise_mode = "random"
  return data_config


def apply_matched(config):
  """The `:matched` settings shared by the training configs.

  `apply_demo`'s optimiser and batch on G0's images (`matched_data`), and
  the evaluation of the experiment: SNR -5, 0, 5 dB, one channel
  realisation per image, LPIPS-AlexNet and -VGG. Steps and model sizes are
  set by each config.
  """
  apply_demo(config)
  matched_data(config.data)
  config.checkpoint_every = 250
  config.eval.snrs_db = MATCHED_SNRS_DB
  config.eval.num_images = MATCHED_TEST_IMAGES
  config.eval.lpips_nets = ("alex", "vgg")
  return config
