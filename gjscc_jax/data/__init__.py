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

The trainer calls `get_data_source`, `train_loader` (and pins
`train_stream_spec` in checkpoints) and `eval_batches` with a config from
`default_data_config()`; images are converted to the model range
with `gjscc_jax.pixels.from_uint8` inside the jitted step.

The names below are resolved on first use (PEP 562): importing this package,
or `gjscc_jax.data.config` for `default_data_config`, does not import the
data stack (tensorflow-datasets, grain, array_record), so configs, models,
losses and the InverseJSCC search import without it.
"""

import importlib

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "DATASET_NAMES": "config",
    "SPLITS": "config",
    "default_data_config": "config",
    "eval_batches": "pipeline",
    "train_loader": "pipeline",
    "train_stream_spec": "pipeline",
    "TrainStream": "pipeline",
    "get_builder": "sources",
    "get_data_source": "sources",
    "prepare": "sources",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name not in _EXPORTS:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
  value = getattr(module, name)
  globals()[name] = value
  return value


def __dir__():
  return sorted(set(globals()) | set(_EXPORTS))
