r"""GenerativeJSCC: DeepJSCC encoder + GPEN-style StyleGAN2 decoder, MSE + lambda*LPIPS.

Arguments (`--config=generative_ffhq:ARG`, comma separated):
  rho=1/192     bandwidth ratio rho = k/n; 1/768, 1/384, 1/192 give C = 2, 4, 8
                latent channels at 16x downsampling (rho = C/1536).
  data=ffhq     'ffhq' or 'celebahq' (set --config.data.image_dir to its folder).
  lpips=0.1     lambda of MSE + lambda * LPIPS(VGG); default 0.1, and 0 (MSE,
                as the DeepJSCC demo) for the demo.
  weights=DIR   a converted StyleGAN2 generator (`python -m weights_convert
                stylegan2 ffhq-256.pkl DIR`) for the synthesis network;
                without it the generator starts from random weights.
  generator=finetune   'finetune' or 'frozen' (the synthesis network); the
                default is 'frozen' with `matched`, 'finetune' otherwise.
  injection=concat     'concat' (GPEN), 'add' (maps replace the noise
                inputs) or 'none' (W+ only).
  adversarial   add the non-saturating GAN term with a StyleGAN2
                discriminator and R1 (an ablation; off by default).
  demo          the embedded sample data at 64x64 with a small, randomly
                initialised generator and the narrow Tung encoder of the
                DeepJSCC demo: training, SNR sweep and plots in ~5 minutes
                on 2 CPU cores, no download.
  matched       the matched-prior experiment: images drawn from the seeded
                random StyleGAN2 G0 at 64x64 (data.name='generator'), and
                G0 as the decoder's synthesis network
                (generator.from_data), frozen unless generator=finetune,
                with G0's random noise in every layer besides the maps;
                MSE + 0.1 LPIPS-AlexNet; docs/matched-prior.md.

Paper scale: 256x256 FFHQ (or CelebA-HQ) images, the Tung et al. encoder,
the FFHQ-256 StyleGAN2 (stylegan2-ada-pytorch's `ffhq256` config: channel
base 16384, channel max 512, conv clamp 256) fine-tuned at a tenth of the
learning rate, training SNR uniform in [-5, 5] dB per image, Adam 1e-4,
batch 32. Settings the paper does not state (see
docs/paper-settings.md) are plain config fields.
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None):
  arg = common.parse_arg(
      arg, rho="1/192", data="ffhq", lpips="", weights="", generator="",
      injection="concat", adversarial=False, demo=False, matched=False)
  if not arg.generator:
    arg.generator = "frozen" if arg.matched else "finetune"
  config = common.base_config("generative", arg.data)
  config.model = ml_collections.ConfigDict(dict(
      encoder_arch="tung", num_filters=256, downsampling=16,
      latent_channels=common.latent_channels(arg.rho, downsampling=16),
      encoder_snr_adaptive=False,
      injection=arg.injection,   # 'concat' | 'add' | 'none'
      # GPEN's 'concat' layers (models/generative/synthesis.py): a learned,
      # zero-initialised scale per map ('learned' | 'none'), and no StyleGAN2
      # noise in the layers that get a map.
      injection_scale="learned",
      # Constant factor of the learned scales: their lr multiplier (Adam).
      injection_scale_gain=1.0,
      noise_in_injected_layers=False,
      inject_max_resolution=config_dict.placeholder(int),  # None: every layer
      w_mode="per_layer",        # 'per_layer' (W+) | 'shared' (one w)
      noise_mode="const",        # noise of layers without injection
      # The receiver's 2x up stages: 'resize' (bilinear + conv) or
      # 'subpixel' (conv + pixel shuffle, which learns a checkerboard).
      receiver_upsample="resize",
      receiver_channel_base=8192, receiver_channel_max=512,
      receiver_res_blocks=2, receiver_snr_adaptive=True))
  config.generator = ml_collections.ConfigDict(dict(
      weights=arg.weights,       # converted generator directory ('' = random)
      # The generator that draws the 'generator' dataset (data.generator)
      # as the synthesis network: the matched prior.
      from_data=arg.matched,
      train=arg.generator,       # 'finetune' | 'frozen'
      lr=1e-5,                   # own learning rate when fine-tuned (None: optimizer.lr)
      # Architecture for random initialisation (read from `weights` if set):
      w_dim=512, channel_base=16384, channel_max=512, conv_clamp=256.0))
  config.channel = common.channel_config()
  config.train_snr_db = (-5.0, 5.0)
  # lambda of MSE + lambda * LPIPS: 0.1 (0 for the demo) unless given.
  lambda_lpips = float(arg.lpips) if arg.lpips else (0.0 if arg.demo else 0.1)
  # perceptual='dists' trains with DISTS in LPIPS's place (same lambda).
  config.loss = ml_collections.ConfigDict(dict(lambda_lpips=lambda_lpips,
                                               lpips_net="vgg",
                                               perceptual="lpips"))
  config.adversarial = ml_collections.ConfigDict(dict(
      enabled=arg.adversarial, weight=0.01, r1_gamma=10.0, r1_interval=16,
      lr=2e-3, b1=0.0, b2=0.99, channel_base=16384, channel_max=512))
  common.add_training(config)

  if arg.demo or arg.matched:
    common.apply_demo(config)
    m = config.model
    m.num_filters = 32  # The Tung encoder, narrow (as the DeepJSCC demo's).
    m.receiver_channel_base, m.receiver_channel_max = 512, 64
    m.receiver_res_blocks = 1
    m.inject_max_resolution = 32  # The 64x64 layers keep their noise input.
    g = config.generator
    g.w_dim, g.channel_base, g.channel_max = 128, 1024, 64
    g.lr = None  # A random generator trains at the full learning rate.
    config.adversarial.channel_base, config.adversarial.channel_max = 1024, 64
  if arg.matched:
    common.apply_matched(config)
    config.total_steps = 400
    # The prior is G0 (its architecture comes from the data's generator),
    # frozen by default: fine-tuned at a tenth of the learning rate (as at
    # paper scale) it moved by under 1% in 120 steps (docs/matched-prior.md).
    m.inject_max_resolution = None  # Every layer gets a map (GPEN).
    g.lr = config.optimizer.lr / 10
    # A texture source: G0 drew its images with fresh N(0, 1) noise in
    # every layer, so the decoder adds G0's noise, drawn from the step's
    # key, to the injected layers as well (without it the maps must fake
    # the texture: docs/matched-prior.md).
    m.noise_mode = "random"
    m.noise_in_injected_layers = True
    # The map scales start at 0 and train 10x faster than at gain 1, where
    # they stayed below 0.06 after 300 steps (docs/matched-prior.md).
    m.injection_scale_gain = 10.0
    if not arg.lpips:
      config.loss.lambda_lpips = 0.1
    # LPIPS-AlexNet in the loss: VGG's backward pass would dominate a CPU step.
    config.loss.lpips_net = "alex"
  return config
