"""StyleGAN2 (Karras et al. 2020) in Flax, numerically matching NVIDIA's code.

Modules: `resampling` (FIR up- and down-sampling), `layers` (equalised-lr
dense, modulated conv, ToRGB), `mapping`, `synthesis` (block/layer indexing
and partial runs), `generator`, `loading` (converted-weights directories),
`random_init` (a small random generator: demo prior, synthetic data),
`discriminator` (the residual discriminator and GAN losses of
GenerativeJSCC's adversarial ablation).
"""

from gjscc_jax.models.stylegan2.generator import (CONFIG_FIELDS, Generator,
                                                  generator_from_config, w_avg)
from gjscc_jax.models.stylegan2.layers import (FullyConnected, SynthesisLayer,
                                               ToRGB, bias_act,
                                               modulated_conv2d)
from gjscc_jax.models.stylegan2.loading import load_stylegan2, save_stylegan2
from gjscc_jax.models.stylegan2.mapping import (MappingNetwork,
                                                normalize_2nd_moment, truncate)
from gjscc_jax.models.stylegan2.random_init import (RANDOM_FIELDS,
                                                    random_stylegan2)
from gjscc_jax.models.stylegan2.synthesis import (SynthesisBlock,
                                                  SynthesisNetwork)

__all__ = [
    'CONFIG_FIELDS', 'FullyConnected', 'Generator', 'MappingNetwork',
    'SynthesisBlock', 'SynthesisLayer', 'SynthesisNetwork', 'ToRGB',
    'RANDOM_FIELDS', 'bias_act', 'generator_from_config', 'load_stylegan2',
    'modulated_conv2d', 'normalize_2nd_moment', 'random_stylegan2',
    'save_stylegan2', 'truncate', 'w_avg',
]
