"""Image datasets and grain input pipelines (uint8 NHWC images out).

Datasets are TFDS `array_record` files prepared without TensorFlow and read
with random access:

* 'sample': crops of the photos inside scikit-image's wheel; builds offline in
  seconds (tests, CPU demo).
* 'celebahq' (27k/3k by index), 'ffhq' (60k/10k by index), 'image_folder'
  (seeded test fraction): prepared once from the user's folder of images.
* 'generator': images sampled from a fixed StyleGAN2 (a converted one or a
  seeded random one), prepared by `gjscc_jax.generated_data.prepare` (the
  data layer does not import model code).

The trainer calls `get_data_source`, `train_loader` and `eval_batches` with a
config from `default_data_config()`; images are converted to the model range
with `gjscc_jax.pixels.from_uint8` inside the jitted step.
"""

from gjscc_jax.data.config import DATASET_NAMES
from gjscc_jax.data.config import default_data_config
from gjscc_jax.data.config import SPLITS
from gjscc_jax.data.pipeline import eval_batches
from gjscc_jax.data.pipeline import train_loader
from gjscc_jax.data.sources import get_builder
from gjscc_jax.data.sources import get_data_source
from gjscc_jax.data.sources import prepare

__all__ = [
    "DATASET_NAMES",
    "SPLITS",
    "default_data_config",
    "eval_batches",
    "get_builder",
    "get_data_source",
    "prepare",
    "train_loader",
]
