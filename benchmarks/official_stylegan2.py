"""The official StyleGAN2 peer of the benchmarks: a random NVIDIA Generator.

Imports NVIDIA's code from the ``draggan`` package (``pip install
torch==2.13.0; pip install --no-deps draggan``; never copied into this
repository) and builds a randomly initialised, eval-mode ``Generator``
(fp32 throughout, no ``conv_clamp``) that both our converter and the official
code can run, seeded so that every benchmark run sees the same weights.
"""

import os
import sys


def import_official_code():
  """Puts NVIDIA's code inside the `draggan` wheel on `sys.path`, once.

  Its modules (`training`, `torch_utils`, `dnnlib`) import each other as
  top-level packages, so they are importable only from their own folder;
  this is the one place the benchmarks say so.
  """
  import draggan  # pylint: disable=import-outside-toplevel
  path = os.path.join(os.path.dirname(draggan.__file__), 'stylegan2')
  if path not in sys.path:
    sys.path.insert(0, path)


def random_official_generator(resolution, channel_base, mapping_layers, *,
                              inversion=False):
  """A random official Generator (eval mode) and its state dict as numpy.

  Official initialisation leaves biases at their constants and the noise
  strengths at 0; every parameter of at most one dimension gets a N(0, 0.1^2)
  perturbation so that biases (and noise) take part in the computation.

  Args:
    resolution: Output resolution (a power of two).
    channel_base: Synthesis channel base (16384 or 32768 in official configs).
    mapping_layers: Depth of the mapping network.
    inversion: Make the generator behave like a trained one for a latent
      search: noise strengths 0.1 (noise maps matter), toRGB weights scaled
      by 1/4 (images roughly in [-1, 1]), ``w_avg`` the mean w of 2048 random
      z, and no parameter requiring gradients.

  Returns:
    ``(generator, {name: numpy array})``.
  """
  import torch  # pylint: disable=import-outside-toplevel
  import_official_code()
  from training.networks import Generator  # pylint: disable=import-outside-toplevel,import-error
  torch.manual_seed(0)
  g = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution,
                img_channels=3, mapping_kwargs=dict(num_layers=mapping_layers),
                synthesis_kwargs=dict(channel_base=channel_base,
                                      channel_max=512, num_fp16_res=0,
                                      conv_clamp=None)).eval()
  with torch.no_grad():
    for name, p in g.named_parameters():
      if inversion and name.endswith('noise_strength'):
        p.fill_(0.1)
      elif p.ndim <= 1:
        p.add_(torch.randn_like(p) * 0.1)
    if inversion:
      for name, p in g.named_parameters():
        if name.endswith('torgb.weight'):
          p.mul_(0.25)
      z = torch.randn(2048, 512)
      g.mapping.w_avg.copy_(g.mapping(z, None)[:, 0].mean(0))
  if inversion:
    for p in g.parameters():
      p.requires_grad_(False)
  state = {k: v.detach().numpy() for k, v in g.state_dict().items()}
  return g, state
