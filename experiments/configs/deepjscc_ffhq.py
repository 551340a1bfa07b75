r"""DeepJSCC baseline (Tung et al. ResNet + attention + GDN) on FFHQ / CelebA-HQ.

Arguments (`--config=deepjscc_ffhq:ARG`, comma separated):
  bcr=1/192     bandwidth ratio rho = k/n; 1/768, 1/384, 1/192 give C = 2, 4, 8
                latent channels at 16x downsampling (rho = C/1536).
  data=ffhq     'ffhq' or 'celebahq' (set --config.data.image_dir to its folder).
  lpips         train with MSE + lambda*LPIPS (lambda = 0.1) instead of MSE.
  demo          the embedded sample data at 64x64 with a narrow network (N = 32):
                a complete run (training, SNR sweep, plots) in about 3 minutes
                on 2 CPU cores, no download.

Paper scale: 256x256 images, N = 256 filters, training SNR uniform in
[-5, 5] dB per image, Adam 1e-4. Settings the paper does not state (marked
inferred in ../shared/reference/paper-notes.md) are plain config fields.
"""

import ml_collections

from experiments.configs import common
from gjscc_jax import channel
from gjscc_jax import data


def get_config(arg=None):
  arg = common.parse_arg(arg, bcr="1/192", data="ffhq", lpips=False, demo=False)
  config = ml_collections.ConfigDict()
  config.scheme = "deepjscc"
  config.seed = 0
  config.dtype = "float32"  # or 'bfloat16' (params and optimiser stay float32)

  config.data = data.default_data_config()
  config.data.name = arg.data
  config.data.resolution = 256

  config.model = ml_collections.ConfigDict(dict(
      arch="tung", num_filters=256, snr_adaptive=False, downsampling=16,
      latent_channels=channel.latent_channels_for_bcr(
          channel.parse_ratio(arg.bcr), downsampling=16)))
  config.channel = ml_collections.ConfigDict(dict(
      kind="awgn",          # 'awgn' | 'rayleigh'
      fading="slow",        # rayleigh: 'slow' (one h per image) | 'fast' (per symbol)
      equalization="mmse",  # rayleigh: 'zf' | 'mmse' (perfect CSI)
      power=1.0))
  config.train_snr_db = (-5.0, 5.0)
  config.loss = ml_collections.ConfigDict(dict(
      lambda_lpips=0.1 if arg.lpips else 0.0, lpips_net="vgg"))

  config.batch_size = 32
  config.total_steps = 200_000
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adam", lr=1e-4, b1=0.9, b2=0.999, eps=1e-8, schedule="cosine",
      warmup_steps=1000, final_lr_fraction=0.1, grad_clip_norm=0.0))
  config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
  config.log_every = 100
  config.checkpoint_every = 5000
  config.keep_checkpoints = 3

  config.eval = ml_collections.ConfigDict(dict(
      split="test", snrs_db=(-5.0, -3.0, -1.0, 0.0, 1.0, 3.0, 5.0),
      realisations=2, num_images=ml_collections.config_dict.placeholder(int),
      batch_size=32, lpips_nets=("vgg", "alex"), num_examples=8, seed=1))

  if arg.demo:
    config.data.name = "sample"
    config.data.resolution = 64
    config.model.num_filters = 32  # The Tung architecture, narrow.
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
