"""Evaluating trained runs: load a run directory, sweep it, write the report."""

import json
import os

from absl import logging
import jax
import ml_collections

from gjscc_jax import data as data_lib
from gjscc_jax.evaluation import report
from gjscc_jax.evaluation import sweep as sweep_lib
from gjscc_jax.train import checkpointing
from gjscc_jax.train import schemes
from gjscc_jax.train import step as step_lib


def load_run(workdir, step=None):
  """(config, scheme, params) of the training run in `workdir`.

  Raises clear errors when the directory is not a training run, or when its
  checkpoint does not fit the config it was written with.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"{workdir!r} is not a training run directory: it has no config.json. "
        "Pass the --workdir given to python -m experiments.train.")
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  scheme = schemes.build_scheme(config)
  tx, _ = scheme.make_optimizer(config.total_steps)
  res = config.data.resolution
  dummy = jax.ShapeDtypeStruct((1, res, res, 3), "float32")
  abstract = jax.eval_shape(
      lambda k, x: step_lib.create_train_state(scheme.init(k, x), tx, k),
      jax.random.PRNGKey(0), dummy)
  repl = jax.sharding.NamedSharding(
      jax.make_mesh((jax.device_count(),), ("d",),
                    axis_types=(jax.sharding.AxisType.Auto,)), jax.sharding.PartitionSpec())
  abstract = checkpointing.abstract_with_shardings(
      abstract, jax.tree.map(lambda _: repl, abstract))
  try:
    params = checkpointing.restore_params(workdir, abstract, step)
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(
        f"The checkpoint in {workdir!r} does not match its config.json "
        f"(scheme {config.scheme!r}): {e}") from e
  return config, scheme, params


def lpips_metrics(nets):
  """{'lpips_vgg': (loss, params), ...} for the requested LPIPS backbones."""
  from gjscc_jax.losses import PerceptualLoss
  losses, params = {}, {}
  for net in filter(None, nets):  # `--config.eval.lpips_nets=` gives ('',).
    loss = PerceptualLoss(lambda_lpips=1.0, net=net)
    losses[f"lpips_{net}"] = loss
    params[f"lpips_{net}"] = loss.load_params()
  return losses, params


def evaluate_params(config, scheme, params, mesh, output_dir, *, label,
                    eval_config=None, lpips=None):
  """Sweeps `params` over `config.eval` SNRs; writes CSV/JSON, plots, grids.

  Returns:
    The summary rows (see `report.summarize`).
  """
  ev = eval_config or config.eval
  losses, lpips_params = lpips if lpips is not None else lpips_metrics(ev.lpips_nets)
  batches = data_lib.eval_batches(config.data, ev.split, ev.batch_size,
                                  num_images=ev.get("num_images"))
  result = sweep_lib.sweep(
      scheme, params, batches, list(ev.snrs_db), key=jax.random.PRNGKey(ev.seed),
      realisations=ev.realisations, lpips_losses=losses, lpips_params=lpips_params,
      mesh=mesh, num_examples=ev.num_examples)
  rows = report.summarize(result, scheme=scheme.name, label=label,
                          bcr=scheme.bandwidth_ratio)
  if jax.process_index() == 0:
    report.write_tables(rows, output_dir)
    report.plot_metrics(rows, output_dir)
    report.save_grid(result.originals,
                     {f"{s:g} dB": r for s, r in result.examples.items()},
                     os.path.join(output_dir, f"grid_{label}.png"),
                     title=f"{label}: rho={scheme.bandwidth_ratio:.5f}")
    print(report.format_table(rows, "psnr"), flush=True)
    logging.info("Evaluation written to %s", output_dir)
  return rows
