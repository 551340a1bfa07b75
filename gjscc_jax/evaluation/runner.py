"""Evaluating a trained scheme: sweep it over SNRs, write the report.

Runs are loaded with `gjscc_jax.train.runs.load_run`.
"""

import os

from absl import logging
import jax
import numpy as np

from gjscc_jax import data as data_lib
from gjscc_jax import generated_data
from gjscc_jax import sharding
from gjscc_jax import results as report
from gjscc_jax.evaluation import sweep as sweep_lib


def lpips_metrics(nets):
  """{'lpips_vgg': (loss, params), ...} for the requested LPIPS backbones."""
  from gjscc_jax.losses import PerceptualLoss
  losses, params = {}, {}
  for net in filter(None, nets):  # `--config.eval.lpips_nets=` gives ('',).
    # Scored images are uint8 originals and clipped reconstructions: in
    # range by construction, so no run-time value check.
    loss = PerceptualLoss(lambda_lpips=1.0, net=net, check_inputs=False)
    losses[f"lpips_{net}"] = loss
    params[f"lpips_{net}"] = loss.load_params()
  return losses, params


def evaluate_params(config, scheme, params, mesh, output_dir, *, label,
                    eval_config=None, lpips=None, columns=None,
                    perception=None):
  """Sweeps `params` over `config.eval` SNRs; writes CSV/JSON, plots, grids.

  Besides `summary.csv`/`.json`, the metric plots and `grid_<label>.png`,
  `output_dir/per_image.npz` holds every image's values (`write_per_image`),
  so two schemes swept on the same images can be compared image by image.

  Args:
    config: the run's config (`data`, `eval`).
    scheme: its `schemes.Scheme`.
    params: its parameters.
    mesh: the device mesh.
    output_dir: where process 0 writes the summary, plots and grid.
    label: the rows' label.
    eval_config: the sweep's settings (default `config.eval`).
    lpips: `(losses, params)` from `lpips_metrics` (default: built from
      `eval.lpips_nets`).
    columns: optional extra columns of every row (e.g. the test channel).
    perception: optional `(Perception, params)` (`evaluation.perception`):
      DISTS rows per image, FID/KID rows once per SNR over all images.

  Returns:
    The summary rows (see `report.summarize`); `n` is the number of test
    images, each image's channel realisations averaged first.
  """
  ev = eval_config or config.eval
  losses, lpips_params = lpips if lpips is not None else lpips_metrics(ev.lpips_nets)
  generated_data.ensure_prepared(config.data)  # 'generator' data only.
  shard_index, shard_count = sharding.process_shard(mesh, ev.batch_size)
  batches = data_lib.eval_batches(config.data, ev.split, ev.batch_size,
                                  num_images=ev.get("num_images"),
                                  shard_index=shard_index,
                                  shard_count=shard_count)
  result = sweep_lib.sweep(
      scheme, params, batches, list(ev.snrs_db), key=jax.random.PRNGKey(ev.seed),
      realisations=ev.realisations, lpips_losses=losses, lpips_params=lpips_params,
      mesh=mesh, num_examples=ev.num_examples,
      perception=perception[0] if perception else None,
      perception_params=perception[1] if perception else None)
  rows = report.summarize(result, scheme=scheme.name, label=label,
                          bcr=scheme.bandwidth_ratio, **(columns or {}))
  if result.features:
    rows += perception[0].rows(result.features, result.original_features,
                               scheme=scheme.name, label=label,
                               bcr=float(scheme.bandwidth_ratio),
                               **(columns or {}))
  if jax.process_index() == 0:
    report.write_tables(rows, output_dir)
    write_per_image(result, output_dir)
    report.plot_metrics(rows, output_dir)
    report.save_grid(result.originals,
                     {f"{s:g} dB": r for s, r in result.examples.items()},
                     os.path.join(output_dir, f"grid_{label}.png"),
                     title=f"{label}: rho={report.format_ratio(scheme.bandwidth_ratio)}")
    print(report.format_table(rows, "psnr"), flush=True)
    logging.info("Evaluation written to %s", output_dir)
  return rows


def write_per_image(result, output_dir):
  """Writes `output_dir/per_image.npz` of a `sweep.SweepResult`.

  Keys: `snrs_db` float64 `(S,)` ascending, `indices` int32 `(N,)` (the
  images' positions in their split), and per metric `m` a float64 `(S, N)`
  array of each image's value averaged over its channel realisations
  (`report.per_image`), row `s` at `snrs_db[s]`; `originals` uint8
  `(k, H, W, 3)`, the first k test images, and `examples` uint8
  `(S, k, H, W, 3)`, their reconstructions (first realisation), for image
  grids across schemes.

  Returns:
    The file's path.
  """
  snrs = sorted(result.values)
  metrics = list(result.values[snrs[0]])
  arrays = {m: np.stack([report.per_image(result.values[s][m]) for s in snrs])
            for m in metrics}
  path = os.path.join(output_dir, "per_image.npz")
  np.savez(path, snrs_db=np.asarray(snrs, np.float64),
           indices=np.asarray(result.indices, np.int32),
           originals=np.asarray(result.originals, np.uint8),
           examples=np.stack([np.asarray(result.examples[s], np.uint8)
                              for s in snrs]), **arrays)
  return path
