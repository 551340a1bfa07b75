r"""Trains a transmission scheme (DeepJSCC, GenerativeJSCC) end to end.

  python -m experiments.train --config=deepjscc_ffhq:demo --output_dir=/tmp/demo
  python -m experiments.train --config=deepjscc_ffhq:rho=1/768 \
      --config.data.image_dir=/data/ffhq --output_dir=runs/deepjscc_768

The loop is `gjscc_jax.train.loop.train`: rerunning with the same --output_dir
resumes from the newest good checkpoint, on any number of processes (a
corrupt one is moved to OUTPUT_DIR/checkpoints/corrupt/); an SNR sweep of the
final model is written to OUTPUT_DIR/eval at the end. SIGTERM or SIGINT
checkpoints the step in flight (or abandons the final sweep) and exits with
status 75; a user error prints one line with its cause and fix and exits
with status 1 (--verbose for the traceback). One training run writes an
output_dir at a time: a second is refused, naming the first
(docs/robustness.md).

Multi-host: start the same command on every host with --distributed (JAX
auto-detects TPU pods and SLURM), or set JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES and JAX_PROCESS_ID (then the flag is not needed).
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import config_cli
from gjscc_jax.evaluation import runner
from gjscc_jax.train.loop import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config: NAME[:ARG] from experiments/configs/, or a path.",
    lock_config=True)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Directory for checkpoints, metrics and plots. "
    "Rerunning with the same output_dir resumes the run (--workdir: its old "
    "name).")
_EVAL = flags.DEFINE_bool("eval_at_end", True, "Run the SNR sweep at the end.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() with cluster "
    "auto-detection (TPU pods, SLURM, ...). Without this flag it is called "
    "only when JAX_COORDINATOR_ADDRESS is set.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _CONFIG.value is None or _OUTPUT_DIR.value is None:
    raise app.UsageError("Pass --config=NAME[:ARG] and --output_dir=DIR "
                         f"(configs: {', '.join(config_cli.available_configs())}).")
  train(_CONFIG.value, _OUTPUT_DIR.value,
        evaluate=runner.evaluate_params if _EVAL.value else None,
        distributed=_DISTRIBUTED.value)


if __name__ == "__main__":
  config_cli.run(main)
