r"""InverseJSCC: restore DeepJSCC reconstructions with a pretrained StyleGAN2.

  python -m experiments.invert --config=inverse_ffhq \
      --config.deepjscc_checkpoint=runs/deepjscc_192 \
      --config.generator_weights=weights/stylegan2_ffhq256 \
      --config.data.name=celebahq --config.data.image_dir=/data/celebahq \
      --config.output_dir=results/inverse_192

Arguments (`--config=inverse_ffhq:ARG`, comma separated):
  operator=deepjscc  the forward operator A: 'deepjscc' (the frozen
                encoder -> channel -> decoder chain) or 'identity' (denoise
                the DeepJSCC output directly).
  demo          embedded sample data at 64x64, a small randomly initialised
                StyleGAN2 (a random prior only demonstrates the mechanics)
                and, unless --config.deepjscc_checkpoint is given, a tiny
                DeepJSCC trained on the spot (`deepjscc_ffhq:demo` for
                `demo_deepjscc_steps` steps, kept in OUTPUT_DIR/deepjscc_demo
                and reused by reruns). A few minutes on 2 CPU cores.
  matched       the matched-prior experiment: G0's test images (data.name=
                'generator' at 64x64, `common.matched_data`) restored with
                G0 itself as the prior (generator_from_data); set
                --config.deepjscc_checkpoint to the deepjscc_ffhq:matched
                run. SNR -5, 0, 5 dB; LPIPS-AlexNet in the search;
                docs/matched-prior.md.

The ILO defaults (`config.ilo`) are those of the official ILO code
(`latent_space='z_proxy'`, rounds of [50, 50, 25, 25] Adam steps at lr 0.1,
MSE + 1.0 * LPIPS(VGG) + 0.01 * geocross, the best iterate by MSE); the
z-proxy fit is cached as gaussian_fit.npz beside the weights or in
OUTPUT_DIR. What each `config.ilo` field does and where we differ from
ILO's code: docs/inverse.md.
`save_latents=True` writes each image's chosen latents, noise maps and
feature map to OUTPUT_DIR/snr_<s>dB/latents/<i>.npz
(gjscc_jax.inverse.latents re-renders them).

The images (config.data, split `split`, or every image in `input_dir`) must
have the DeepJSCC run's resolution; the generator's resolution must be that
times a power of two (its output is area-downsampled).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common
from gjscc_jax import data


def get_config(arg=None):
  arg = common.parse_arg(arg, operator="deepjscc", demo=False, matched=False)
  config = ml_collections.ConfigDict()
  config.scheme = "inversejscc"
  config.seed = 0
  config.deepjscc_checkpoint = config_dict.placeholder(str)
  config.deepjscc_step = config_dict.placeholder(int)
  config.generator_weights = config_dict.placeholder(str)
  # Compute dtype of the StyleGAN2 feature maps: 'float32' or 'bfloat16'
  # (styles, demodulation, the skip image, LPIPS distances, the optimised
  # variables and Adam's state stay float32).
  config.generator_dtype = "float32"
  # Recompute activations in the search's backward pass (per StyleGAN2
  # block, LPIPS stage and DeepJSCC stage) instead of storing them: less
  # memory per image (larger batches, 1024x1024 generators), about one more
  # forward pass of compute. Results are the same.
  config.remat = False
  # The prior is the generator that draws the 'generator' dataset.
  config.generator_from_data = False
  config.output_dir = config_dict.placeholder(str)

  config.data = data.default_data_config()
  config.data.name = "ffhq"
  config.data.resolution = 256
  config.split = "test"
  config.input_dir = config_dict.placeholder(str)
  config.num_images = config_dict.placeholder(int)
  config.snrs_db = (-5.0, -3.0, -1.0, 0.0, 1.0, 3.0, 5.0)
  # Images per process per step; a multiple of the process's devices.
  config.batch_size = 8
  # How the search steps run: 'scan' (one XLA program per batch; the
  # fastest, also on CPU), 'stepwise' (one program per round step,
  # dispatched asynchronously; faster to compile), or 'auto' (= 'scan').
  config.loop = "auto"

  config.operator = ml_collections.ConfigDict(dict(
      kind=arg.operator,       # 'deepjscc' | 'identity'
      channel_noise="fresh",   # 'fresh' every step | 'fixed' per image
      lpips_net="vgg",
      lpips_resolution=256,
      lpips_dtype="float32"))
  config.ilo = ml_collections.ConfigDict(dict(
      steps=(50, 50, 25, 25), learning_rates=0.1, warmup=0.05, rampdown=0.75,
      mse_weight=1.0, lambda_lpips=1.0, geocross_weight=0.01,
      geocross_rounds="first",  # 'first' (ILO's code) | 'all'
      latent_space="z_proxy",   # 'z_proxy' (ILO) | 'w_plus'
      start_block=0,            # ILO's start_layer
      noise_blocks_ahead=2, project_noises=True,
      # None: the space's default (z_proxy: True, as ILO; w_plus: False).
      project_latents=config_dict.placeholder(bool),
      latent_radius=config_dict.placeholder(tuple),
      noise_radius=config_dict.placeholder(tuple),
      feature_radius=config_dict.placeholder(tuple),
      lpips_target="operator",  # 'operator': LPIPS(A(G), x) | 'generator'
      best_by="mse",            # 'mse' | 'lpips' | 'loss' | 'last'
      best_by_draws=1))
  # Write each image's chosen latents (z or W+), noise maps and feature map.
  config.save_latents = False
  config.metrics = ml_collections.ConfigDict(dict(
      lpips_nets=("vgg", "alex"), num_grid_images=8))
  # Added to the labels of the summary rows, e.g. 'rho 1/192', to combine
  # the summaries of several runs in one table or plot.
  config.tag = ""

  config.demo = arg.demo
  config.demo_deepjscc_steps = 300
  config.demo_generator = ml_collections.ConfigDict(dict(
      resolution=64, z_dim=64, w_dim=64, mapping_layers=2, channel_base=2048,
      channel_max=64, seed=0))

  if arg.demo:
    config.data.name = "sample"
    config.data.resolution = 64
    config.num_images = 8
    config.snrs_db = (0.0, 10.0)
    config.ilo.steps = (30, 20, 20)
  if arg.matched:
    common.matched_data(config.data)
    config.generator_from_data = True
    config.num_images = common.MATCHED_TEST_IMAGES
    config.snrs_db = common.MATCHED_SNRS_DB
    config.batch_size = 16
    # LPIPS-AlexNet in the search: VGG's backward pass would dominate.
    config.operator.lpips_net = "alex"
    config.tag = "matched"
  return config
