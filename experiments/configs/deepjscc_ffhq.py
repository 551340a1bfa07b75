r"""DeepJSCC baseline (Tung et al. ResNet + attention + GDN) on FFHQ / CelebA-HQ.

Arguments (`--config=deepjscc_ffhq:ARG`, comma separated):
  rho=1/192     bandwidth ratio rho = k/n; 1/768, 1/384, 1/192 give C = 2, 4, 8
                latent channels at 16x downsampling (rho = C/1536); the
                default is 1/12 with `quickstart`.
  data=ffhq     'ffhq' or 'celebahq' (set --config.data.image_dir to its folder).
  lpips         train with MSE + lambda*LPIPS (lambda = 0.1) instead of MSE.
  demo          the embedded sample data at 64x64 with a narrow network (N = 32):
                a complete run (training, SNR sweep, plots) in about 3 minutes
                on 2 CPU cores, no download.
  quickstart    the README's quick start: the demo's data and training at
                rho = 1/12 (1024 channel uses per 64x64 image), where images
                stay recognisable, with the small (Bourtsoulatze) network at
                4x downsampling (N = 64, rho = C/96), 600 steps, swept at
                -5 ... 15 dB: a few minutes on 2 CPU cores.
  matched       the matched-prior experiment's baseline: images drawn from
                the seeded random StyleGAN2 G0 at 64x64 (data.name=
                'generator', `common.matched_data`), the demo's network,
                MSE; docs/matched-prior.md.

Paper scale: 256x256 images, N = 256 filters, training SNR uniform in
[-5, 5] dB per image, Adam 1e-4. Settings the paper does not state (marked
inferred in docs/paper-settings.md) are plain config fields.
"""

import ml_collections

from experiments.configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, rho=None, data="ffhq", lpips=False, demo=False,
                         matched=False, quickstart=False)
  rho = arg.rho or ("1/12" if arg.quickstart else "1/192")
  config = common.base_config("deepjscc", arg.data)
  config.model = ml_collections.ConfigDict(dict(
      arch="tung", num_filters=256, snr_adaptive=False, downsampling=16,
      latent_channels=common.latent_channels(rho, downsampling=16)))
  config.channel = common.channel_config()
  config.train_snr_db = (-5.0, 5.0)
  config.loss = ml_collections.ConfigDict(dict(
      lambda_lpips=0.1 if arg.lpips else 0.0, lpips_net="vgg",
      perceptual="lpips"))
  common.add_training(config)

  if arg.demo or arg.matched:
    common.apply_demo(config)
    config.model.num_filters = 32  # The Tung architecture, narrow.
  if arg.quickstart:
    common.apply_demo(config)
    config.model.update(arch="small", num_filters=64, downsampling=4,
                        latent_channels=common.latent_channels(
                            rho, downsampling=4))
    config.total_steps = 600
    config.eval.snrs_db = (-5.0, 0.0, 5.0, 10.0, 15.0)
  if arg.matched:
    common.apply_matched(config)
    # The experiment (python -m experiments.matched_prior) sets the steps
    # of both schemes, at equal steps and at equal XLA FLOPs
    # (docs/matched-prior.md).
    config.total_steps = 2300
  return config
