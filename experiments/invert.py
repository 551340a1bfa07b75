r"""InverseJSCC over a dataset: restore DeepJSCC outputs with a StyleGAN2 prior.

  python -m experiments.invert --config=inverse_ffhq \
      --config.deepjscc_checkpoint=runs/deepjscc_192 \
      --config.generator_weights=weights/stylegan2_ffhq256 \
      --config.output_dir=results/inverse_192
  python -m experiments.invert --config=inverse_ffhq:demo \
      --config.output_dir=/tmp/inverse_demo

For every image of `config.data` (split `config.split`, or every image in
`config.input_dir`) and every SNR of `config.snrs_db`: transmit it with the
trained DeepJSCC, run the ILO search for the StyleGAN2 image that explains
the received reconstruction, and score both against the original. Written to
`config.output_dir` (see `gjscc_jax.inverse.outputs`): per image the
restored and received PNGs and a JSON record (PSNR, SSIM, LPIPS of both, the
search history); at the end `summary.csv`/`.json` (mean and 95% confidence
interval per SNR, scheme and metric), one plot per metric vs SNR with both
schemes, the mean objective per step (`convergence.png`) and image grids.

Reruns skip finished images, so a killed job loses at most the batches in
flight; SIGTERM or SIGINT finishes and writes the batch in flight and exits
with status 75. Inputs are checked in the order a user fixes them (DeepJSCC
checkpoint, generator weights, then data); an error prints one line with its
cause and fix and exits with status 1 (--verbose for the traceback). Multi-host: start the same command once per host, with --distributed
on TPU pods and SLURM (cluster auto-detection), or with JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES and JAX_PROCESS_ID set. Each process restores its own images on its own devices and
writes them; the summary is gathered to process 0 with a collective.

The demo without --config.deepjscc_checkpoint first trains a tiny DeepJSCC
(`deepjscc_ffhq:demo`, `demo_deepjscc_steps` steps) with the training loop
of `python -m experiments.train`, in this process, into
OUTPUT_DIR/deepjscc_demo; reruns reuse it (or resume it, if it was stopped).
"""

import os

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from experiments import config_cli
from experiments.configs import deepjscc_ffhq
from gjscc_jax import sharding
from gjscc_jax.inverse import batch_run
from gjscc_jax.train import loop

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config: NAME[:ARG] from experiments/configs/, or a path.",
    lock_config=True)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() with cluster "
    "auto-detection (TPU pods, SLURM, ...). Without this flag it is called "
    "only when JAX_COORDINATOR_ADDRESS is set.")


def demo_deepjscc_config(config):
  """The `deepjscc_ffhq:demo` training config of the demo's DeepJSCC."""
  steps = config.demo_deepjscc_steps
  train_config = deepjscc_ffhq.get_config("demo")
  train_config.total_steps = steps
  train_config.checkpoint_every = steps
  train_config.log_every = max(1, min(25, steps))
  train_config.optimizer.warmup_steps = max(1, min(50, steps // 10))
  train_config.data.name = config.data.name
  train_config.data.resolution = config.data.resolution
  if config.data.tfds_dir:
    train_config.data.tfds_dir = config.data.tfds_dir
  return train_config


def train_demo_deepjscc(config, workdir):
  """Trains `deepjscc_ffhq:demo` briefly with the project's training loop,
  in this process (a stop signal stops it as it stops training: the step
  in flight is checkpointed and a rerun resumes it; a finished one is only
  restored)."""
  if jax.process_count() > 1:
    raise ValueError("The demo trains its DeepJSCC in one process; pass "
                     "--config.deepjscc_checkpoint for multi-process runs.")
  train_config = demo_deepjscc_config(config)
  print(f"Demo: training a tiny DeepJSCC for {train_config.total_steps} steps "
        f"in {workdir} (reused by reruns).", flush=True)
  loop.train(train_config, workdir, eval_at_end=False)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  # Before anything touches devices.
  sharding.maybe_initialize_distributed(force=_DISTRIBUTED.value)
  if config.demo and not config.deepjscc_checkpoint and config.output_dir:
    workdir = os.path.join(config.output_dir, "deepjscc_demo")
    train_demo_deepjscc(config, workdir)
    with config.unlocked():
      config.deepjscc_checkpoint = workdir
  batch_run.run(config)


if __name__ == "__main__":
  config_cli.run(main)
