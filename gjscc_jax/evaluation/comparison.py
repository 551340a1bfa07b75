"""Comparing schemes on one test set and one channel (`experiments.evaluate`).

A comparison puts every run on the same test images (one data config,
split and image count, the `TestSet`) and the same channel (a
`gjscc_jax.channel.Channel`),
and its summary rows in one table. A run is named by `LABEL=SOURCE`:

* a training run (`python -m experiments.train --workdir`, holding
  `config.json`): its checkpoint is swept over the SNRs on the test set and
  channel, whatever it was trained on; a model trained on AWGN and tested
  on Rayleigh fading is a channel mismatch, recorded in its rows'
  `trained_channel`;
* an InverseJSCC output directory (`python -m experiments.invert`, holding
  `run_config.json` and `summary.json`): its InverseJSCC rows are read, not
  recomputed; `DIR:deepjscc` selects the rows of the DeepJSCC
  reconstructions the search started from instead;
* a separation output directory (`python -m experiments.separation`): its
  rows are read (with `--link=ldpc`, the codec + 5G LDPC + QAM envelope);
* `separation:CODEC[:KEY=VALUE,...]`: the separation baseline computed on
  the test set and channel, at every bandwidth ratio of the other runs, or
  at the ratios given as `bcr=` (repeatable); other keys are `headers`,
  `fallback`, `outage`, `realisations` and `exhaustive`
  (`gjscc_jax.separation.evaluate`).

A directory's kind is its `run.json`'s (`gjscc_jax.run_record`; older
directories by their files), read by that kind's entry of `READERS`.

Results read from a directory were computed by another command: `collect`
checks that they used the comparison's test images and channel and raises,
naming what differs, unless `allow_mismatch` (then the difference is
recorded). Every row carries the test `channel` and the `trained_channel`
of its model, and `collect` returns a record of what was used (the
`evaluation.json` of `experiments.evaluate`).
"""

import dataclasses
import json
import os
import re
from typing import Optional

from absl import logging
import jax
import ml_collections

from gjscc_jax import channel as channel_lib
from gjscc_jax.data import config as data_config_lib
from gjscc_jax import results as report
from gjscc_jax import run_record
from gjscc_jax.evaluation import runner
from gjscc_jax.train import runs as runs_lib

#: What a `--run` can name.
KINDS = ("training", "inversejscc", "separation_output", "separation")
SEPARATION_PREFIX = "separation:"
#: Keys of a `separation:CODEC:KEY=VALUE,...` run.
SEPARATION_OPTIONS = ("bcr", "headers", "fallback", "outage", "realisations",
                      "exhaustive")
#: The schemes of an InverseJSCC output directory (`DIR:deepjscc`).
INVERSE_SCHEMES = ("inversejscc", "deepjscc")
#: Data config fields that decide which images a split holds, per dataset.
_IMAGE_FIELDS = {
    "sample": ("sample_train_size", "sample_test_size"),
    "image_folder": ("image_dir", "test_fraction"),
    # G0 and how its images are drawn (not how many training images).
    "generator": ("generator.dir", "generator.sample_seed",
                  "generator.truncation_psi", "generator.noise_mode",
                  "generator.random"),
}


@dataclasses.dataclass
class TestSet:
  """The test images: the first `num_images` of `split` of `data`.

  Attributes:
    data: a data config (`gjscc_jax.data.default_data_config()` fields).
    split: 'test' or 'train'.
    num_images: the first N images; None for the whole split.
  """
  data: ml_collections.ConfigDict
  split: str = "test"
  num_images: Optional[int] = None

  def count(self):
    """The number of images (opens the dataset when `num_images` is None)."""
    if self.num_images is None:
      from gjscc_jax import data as data_lib  # pylint: disable=import-outside-toplevel
      self.num_images = len(data_lib.get_data_source(self.data, self.split))
    return self.num_images

  def identity(self):
    """The fields that decide which images these are (not where they lie)."""
    name = self.data.name
    ident = dict(name=name, resolution=int(self.data.resolution),
                 split=self.split, num_images=self.count())
    for field in _IMAGE_FIELDS.get(name, ()):
      value = self.data
      for key in field.split("."):
        value = value.get(key) if value is not None else None
      ident[field] = value.to_dict() if hasattr(value, "to_dict") else value
    return ident

  def describe(self):
    return (f"{self.data.name} {self.data.resolution}x{self.data.resolution}"
            f", {self.split} split, first {self.count()} images")


@dataclasses.dataclass
class Run:
  """One `--run`: its label, kind, source and what it was computed with.

  Attributes:
    label: the rows' label.
    kind: one of `KINDS`.
    source: the directory, or the `separation:...` spec.
    config: the training config (training), `run_config.json`
      (InverseJSCC and separation outputs), or the spec's options.
    select: the scheme read from an InverseJSCC output.
    test_set: what a directory's results were computed on (None for
      training runs and separation specs).
    channel: the channel the results were computed with (None when unknown).
    trained_channel: the channel the model was trained on ('' for
      separation).
  """
  label: str
  kind: str
  source: str
  config: dict
  select: Optional[str] = None
  test_set: Optional[TestSet] = None
  channel: Optional[channel_lib.Channel] = None
  trained_channel: str = ""


def _read_json(path):
  with open(path) as f:
    return json.load(f)


def _data_config(fields):
  data = data_config_lib.default_data_config()
  for key, value in (fields or {}).items():
    if key in data:
      data[key] = value
  return data


def _channel_of(config_channel):
  return channel_lib.from_config(config_channel)


def parse_separation(label, spec):
  """The `Run` of `separation:CODEC[:KEY=VALUE,...]`."""
  from gjscc_jax import separation  # pylint: disable=import-outside-toplevel
  codec, _, options = spec[len(SEPARATION_PREFIX):].partition(":")
  if codec not in separation.CODECS:
    raise ValueError(f"--run={label}={spec}: unknown codec {codec!r}; choose "
                     f"one of {', '.join(separation.CODECS)}.")
  config = dict(codec=codec, bcr=[])
  for token in filter(None, options.split(",")):
    key, sep, value = token.partition("=")
    if not sep or key not in SEPARATION_OPTIONS:
      raise ValueError(
          f"--run={label}={spec}: {token!r} is not KEY=VALUE with KEY one of "
          f"{', '.join(SEPARATION_OPTIONS)}.")
    if key == "bcr":
      config["bcr"].append(report.format_ratio(channel_lib.parse_ratio(value)))
    elif key == "outage":
      config[key] = float(value)
    elif key == "realisations":
      config[key] = int(value)
    elif key == "exhaustive":
      config[key] = value.lower() in ("1", "true", "yes")
    else:
      config[key] = value
  return Run(label, "separation", spec, config)


def _no_select(value, select):
  if select:
    raise ValueError(f"--run={value}: ':{select}' only selects a scheme of "
                     "an InverseJSCC output directory.")


def _summary_rows(value, source):
  """The rows of a finished output directory's `summary.json`."""
  summary = os.path.join(source, "summary.json")
  if not os.path.exists(summary):
    raise FileNotFoundError(
        f"--run={value}: {source!r} has no summary.json yet (rerun the "
        "command that writes it to finish it).")
  return report.read_rows(summary)


def _read_training(label, source, select, value):
  """A training run: its checkpoint is swept here."""
  _no_select(value, select)
  config = runs_lib.read_config(source)
  return Run(label, "training", source, config,
             trained_channel=_channel_of(config.get("channel")).name)


def _read_separation(label, source, select, value):
  """A separation output directory: its rows are read."""
  _no_select(value, select)
  _summary_rows(value, source)
  settings = _read_json(os.path.join(source, "run_config.json"))
  return Run(label, "separation_output", source, settings,
             test_set=TestSet(_data_config(settings["data"]),
                              settings["split"], settings["num_images"]),
             channel=_channel_of(settings["channel"]))


def _read_inversejscc(label, source, select, value):
  """An InverseJSCC output directory: the rows of `select` are read."""
  rows = _summary_rows(value, source)
  settings = _read_json(os.path.join(source, "run_config.json"))
  count = max((r["n"] for r in rows), default=0)
  select = select or "inversejscc"
  if select not in INVERSE_SCHEMES:
    raise ValueError(f"--run={value}: ':{select}' must be one of "
                     f"{', '.join(INVERSE_SCHEMES)}.")
  split = ("folder " + settings["input_dir"] if settings.get("input_dir")
           else settings.get("split", "test"))
  channel, trained = None, "unknown"
  deepjscc = settings.get("deepjscc_checkpoint") or ""
  if os.path.exists(os.path.join(deepjscc, "config.json")):
    channel = _channel_of(runs_lib.read_config(deepjscc).get("channel"))
    trained = channel.name
  return Run(label, "inversejscc", source, settings, select=select,
             test_set=TestSet(_data_config(settings.get("data")), split,
                              count),
             channel=channel, trained_channel=trained)


#: How each kind of output directory (`run.json`'s `kind`, see
#: `gjscc_jax.run_record`) is read: `reader(label, source, select, value)`
#: returns its `Run`. A new kind of directory adds its reader here.
READERS = {
    run_record.TRAINING: _read_training,
    run_record.SEPARATION: _read_separation,
    run_record.INVERSEJSCC: _read_inversejscc,
}


def parse_run(value):
  """The `Run` of a `LABEL=SOURCE` string (see the module docstring).

  A directory is read by the reader of its kind (`READERS`, keyed by
  `gjscc_jax.run_record.kind_of`).

  Raises:
    ValueError: naming the fix, when SOURCE is none of the accepted kinds.
  """
  label, sep, source = value.partition("=")
  if not sep or not label or not source:
    raise ValueError(f"--run={value!r} must be LABEL=SOURCE (a training "
                     "workdir, an InverseJSCC or separation output directory, "
                     "or separation:CODEC).")
  if source.startswith(SEPARATION_PREFIX):
    return parse_separation(label, source)
  select = None
  if not os.path.isdir(source) and ":" in source:
    source, _, select = source.rpartition(":")
  if not os.path.isdir(source):
    raise FileNotFoundError(f"--run={value}: {source!r} is not a directory.")
  kind, _ = run_record.kind_of(source)
  if kind is None:
    raise FileNotFoundError(
        f"--run={value}: {source!r} is neither a training run (config.json), "
        "nor an InverseJSCC or separation output directory (run.json, or "
        "run_config.json and summary.json; rerun the command that writes it "
        "to finish it).")
  if kind not in READERS:
    raise ValueError(f"--run={value}: {source!r} is a {kind!r} directory, "
                     f"which a comparison cannot read (it reads "
                     f"{', '.join(READERS)}).")
  return READERS[kind](label, source, select, value)


def reference(runs, data_overrides=None, channel_overrides=None, split=None,
              num_images=None):
  """The comparison's `(TestSet, Channel)`.

  Each field is the override when given, else that of the first run that
  has one (training runs at different resolutions need the resolution
  override: a ValueError names them otherwise) (in order: a training run's data, `eval.split`,
  `eval.num_images` and channel; an output directory's), else the default
  (`default_data_config()`, the test split, AWGN).

  Args:
    runs: the `Run`s.
    data_overrides: `{field: value}` of the data config (e.g. `name`,
      `image_dir`, `resolution`, `tfds_dir`); None values are ignored.
    channel_overrides: `{field: value}` of the `Channel` (`kind`,
      `fading`, `equalization`, `k_factor`, ...); None values are ignored.
    split: the split, or None.
    num_images: the first N images, or None.
  """
  base = next((r for r in runs if r.kind == "training" or (
      r.test_set is not None and r.test_set.split in data_config_lib.SPLITS)),
              None)
  if base is None:
    test_set = TestSet(data_config_lib.default_data_config())
  elif base.kind == "training":
    test_set = TestSet(_data_config(base.config.data.to_dict()),
                       base.config.eval.split, base.config.eval.num_images)
  else:
    test_set = TestSet(_data_config(base.test_set.data.to_dict()),
                       base.test_set.split, base.test_set.num_images)
  data_overrides = {k: v for k, v in (data_overrides or {}).items()
                    if v is not None}
  trained_at = {f"{r.label} ({r.source}): {r.config.data.resolution}px": None
                for r in runs if r.kind == "training"}
  resolutions = {r.config.data.resolution for r in runs if r.kind == "training"}
  if len(resolutions) > 1 and "resolution" not in data_overrides:
    raise ValueError(
        "The training runs work at different resolutions ("
        f"{'; '.join(trained_at)}): pass --data.resolution=N to test every "
        "run at N px (the first run's would otherwise apply to all).")
  if set(data_overrides) - {"tfds_dir"} or split is not None:
    test_set.num_images = None  # Other images: the base's count is moot.
  for key, value in data_overrides.items():
    test_set.data[key] = value
  if split is not None:
    test_set.split = split
  if num_images is not None:
    test_set.num_images = num_images
  data_config_lib.validate_data_config(test_set.data)
  data_config_lib.validate_split(test_set.split)

  with_channel = next((r for r in runs if r.kind == "training" or
                       r.channel is not None), None)
  if with_channel is None:
    channel = channel_lib.Channel()
  elif with_channel.kind == "training":
    channel = _channel_of(with_channel.config.get("channel"))
  else:
    channel = with_channel.channel
  channel = channel_lib.from_config(channel, **{
      k: v for k, v in (channel_overrides or {}).items() if v is not None})
  return test_set, channel


def differences(run, test_set, channel):
  """What a directory's results were computed with that the comparison
  does not use: a list of 'field: theirs -> ours' strings (empty if none)."""
  if run.test_set is None:
    return []
  theirs = TestSet(run.test_set.data, run.test_set.split,
                   run.test_set.num_images).identity()
  ours = test_set.identity()
  diffs = [f"{k}: {theirs.get(k)!r} -> {ours.get(k)!r}"
           for k in sorted(set(theirs) | set(ours))
           if theirs.get(k) != ours.get(k)]
  separation = run.kind == "separation_output"
  if run.channel is None:
    logging.warning("%s: the channel of %s is unknown (its DeepJSCC run is "
                    "not readable); assuming %s.", run.label, run.source,
                    channel.name)
  elif run.channel.label(not separation) != channel.label(not separation):
    diffs.append(f"channel: {run.channel.label(not separation)!r} -> "
                 f"{channel.label(not separation)!r}")
  return diffs


def _slug(text):
  return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def _rho_slug(bcr):
  return "rho" + report.format_ratio(bcr).replace("/", "_")


@dataclasses.dataclass
class Settings:
  """How the runs are swept (the SNRs and realisations of every run).

  Attributes:
    snrs_db: test SNRs in dB.
    realisations: channel realisations per image and SNR (learned schemes;
      fading draws of separation under slow fading).
    seed: seed of the channel realisations.
    batch_size: evaluation batch size (a multiple of the devices).
    lpips_nets: LPIPS backbones reported.
    step: checkpoint step of training runs (None: the latest).
    num_examples: reconstructions kept per SNR for image grids.
    perception: an `evaluation.perception.Perception` (DISTS, FID, KID of
      training runs), or None.
  """
  snrs_db: tuple
  realisations: int = 2
  seed: int = 1
  batch_size: int = 32
  lpips_nets: tuple = ("vgg", "alex")
  step: Optional[int] = None
  num_examples: int = 8
  perception: Optional[object] = None


def _loss_columns(config):
  """`lambda_lpips` (the LPIPS weight of a training run's loss, the
  perception-distortion plots' parameter), when its config has one."""
  loss = config.get("loss") or {}
  if "lambda_lpips" not in loss:
    return {}
  return dict(lambda_lpips=float(loss["lambda_lpips"]))


def _evaluate_training(run, test_set, channel, settings, output_dir, mesh,
                       lpips, columns, perception=None):
  overrides = {f"data.{k}": v for k, v in test_set.data.items()
               if k in run.config.data}
  # The whole block: older runs' configs lack the newer channel fields.
  overrides["channel"] = channel.to_config()
  config, scheme, params = runs_lib.load_run(run.source, settings.step,
                                             overrides)
  with config.unlocked():
    ev = config.eval
    ev.split = test_set.split
    ev.num_images = test_set.num_images
    ev.snrs_db = tuple(settings.snrs_db)
    ev.realisations = settings.realisations
    ev.batch_size = settings.batch_size
    ev.seed = settings.seed
    ev.num_examples = settings.num_examples
  out = os.path.join(output_dir, "runs",
                     f"{_slug(run.label)}_{_rho_slug(scheme.bandwidth_ratio)}")
  return runner.evaluate_params(config, scheme, params, mesh, out,
                                label=run.label, lpips=lpips,
                                columns=columns, perception=perception)


def _evaluate_separation(run, bcr, test_set, channel, settings, output_dir,
                         columns):
  from gjscc_jax import separation  # pylint: disable=import-outside-toplevel
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  options = {k: v for k, v in run.config.items() if k not in ("codec", "bcr")}
  options.setdefault("realisations", settings.realisations)
  kwargs = dict(channel=channel,
                lpips_nets=tuple(filter(None, settings.lpips_nets)),
                seed=settings.seed, **options)
  with tqdm(total=test_set.count(), desc=f"{run.label} rho={bcr}",
            unit="img", dynamic_ncols=True) as bar:
    result = separation.evaluate(
        run.config["codec"], test_set.data, test_set.split, test_set.count(),
        bcr, settings.snrs_db, label=run.label,
        num_examples=settings.num_examples, progress=bar.update, **kwargs)
  kwargs.pop("lpips_nets")
  run_settings = separation.run_settings(
      run.config["codec"], test_set.data, test_set.split, test_set.count(),
      bcr, settings.snrs_db, lpips_nets=settings.lpips_nets, **kwargs)
  out = os.path.join(output_dir, "runs",
                     f"{_slug(run.label)}_{_rho_slug(float(channel_lib.parse_ratio(bcr)))}")
  separation.write_outputs(result, out, run_settings)
  return [dict(r, **columns) for r in result.rows]


def _read_rows(run, snrs_db, columns):
  rows = report.read_rows(run.source)
  if run.kind == "inversejscc":
    rows = [r for r in rows if r["scheme"] == run.select]
  kept = [dict(r, label=run.label, **columns) for r in rows
          if float(r["snr_db"]) in snrs_db]
  missing = sorted(set(snrs_db) - {r["snr_db"] for r in kept})
  dropped = sorted({r["snr_db"] for r in rows} - set(snrs_db))
  return kept, missing, dropped


def collect(runs, test_set, channel, settings, output_dir, *, mesh=None,
            allow_mismatch=False):
  """Evaluates or reads every run on the test set and channel.

  Training runs and separation specs are swept (per-run tables, plots and
  image grids go to `output_dir/runs/<label>_rho<p>_<q>/`); output
  directories are checked against the test set and channel, then read.
  Sweeps run on every process (training runs are process-sharded);
  separation specs are computed on process 0 only (their rows are empty
  elsewhere).

  Args:
    runs: the `Run`s (from `parse_run`).
    test_set: the `TestSet` (from `reference`).
    channel: the `gjscc_jax.channel.Channel`.
    settings: the `Settings`.
    output_dir: where per-run outputs go.
    mesh: the device mesh (default: all devices).
    allow_mismatch: read directories computed on other images or another
      channel (recording the differences) instead of raising.

  Returns:
    `(rows, record)`: the summary rows of every run in the order of `runs`
    (with `channel` and `trained_channel` columns), and a JSON-serialisable
    record of the test set, channel, settings and each run.

  Raises:
    ValueError: for a directory computed on other images or another
      channel (naming what differs and the fix), a separation spec without
      a bandwidth ratio, or two runs with one label at one ratio.
  """
  from gjscc_jax import sharding  # pylint: disable=import-outside-toplevel
  snrs = tuple(float(s) for s in settings.snrs_db)
  settings = dataclasses.replace(settings, snrs_db=snrs)
  mesh = sharding.make_mesh() if mesh is None else mesh
  lpips = perception = None
  per_run, records = {}, {}
  for i, run in enumerate(runs):
    if run.kind == "separation":
      continue
    record = dict(label=run.label, kind=run.kind, source=run.source,
                  trained_channel=run.trained_channel)
    if run.kind == "training":
      if lpips is None:
        lpips = runner.lpips_metrics(settings.lpips_nets)
      if perception is None and settings.perception is not None:
        perception = (settings.perception, settings.perception.load_params())
      columns = dict(channel=channel.name,
                     trained_channel=run.trained_channel,
                     **_loss_columns(run.config))
      rows = _evaluate_training(run, test_set, channel, settings, output_dir,
                                mesh, lpips, columns, perception)
      data = run.config.data
      record["trained_on"] = dict(data=data.name, resolution=data.resolution,
                                  channel=run.trained_channel)
    else:
      diffs = differences(run, test_set, channel)
      if diffs and not allow_mismatch:
        raise ValueError(
            f"--run={run.label}={run.source} was computed on other test "
            f"images or another channel than this comparison "
            f"({'; '.join(diffs)}). Recompute it with the comparison's "
            "settings, set --data.*/--channel.* to its settings, or pass "
            "--allow_mismatch to plot it anyway (recorded).")
      separation = run.kind == "separation_output"
      used = run.channel or channel
      columns = dict(channel=used.label(not separation),
                     trained_channel=run.trained_channel)
      rows, missing, dropped = _read_rows(run, snrs, columns)
      record.update(mismatch=diffs, missing_snrs=missing, dropped_snrs=dropped,
                    computed_with=run.config)
      if run.kind == "inversejscc":
        record["scheme"] = run.select
      if missing:
        logging.warning("%s (%s) has no results at SNRs %s.", run.label,
                        run.source, missing)
    record["bcr"] = sorted({report.format_ratio(r["bcr"]) for r in rows})
    per_run[i], records[i] = rows, record

  ratios = sorted({r["bcr"] for rows in per_run.values() for r in rows})
  for i, run in enumerate(runs):
    if run.kind != "separation":
      continue
    bcrs = run.config["bcr"] or [report.format_ratio(b) for b in ratios]
    if not bcrs:
      raise ValueError(
          f"--run={run.label}={run.source}: no bandwidth ratio to compute it "
          "at (no other run gives one); add one, e.g. "
          f"{run.source}{':' if run.source.count(':') < 2 else ','}bcr=1/192.")
    columns = dict(channel=channel.label(receiver=False),
                   trained_channel="")
    rows = []
    if jax.process_index() == 0:
      for bcr in bcrs:
        rows += _evaluate_separation(run, bcr, test_set, channel, settings,
                                     output_dir, columns)
    per_run[i] = rows
    records[i] = dict(label=run.label, kind=run.kind, source=run.source,
                      trained_channel="", bcr=list(bcrs),
                      computed_with=dict(run.config))

  rows = [r for i in range(len(runs)) for r in per_run[i]]
  seen = {}
  for i in range(len(runs)):
    for bcr in {r["bcr"] for r in per_run[i]}:
      key = (runs[i].label, bcr)
      if key in seen and seen[key] != i:
        raise ValueError(
            f"Two runs are labelled {runs[i].label!r} at rho="
            f"{report.format_ratio(bcr)} ({runs[seen[key]].source} and "
            f"{runs[i].source}); give them different labels.")
      seen[key] = i
  record = dict(
      test_set=dict(test_set.identity(), data=test_set.data.to_dict()),
      channel=channel.to_config(), channel_name=channel.name,
      snrs_db=list(snrs), realisations=settings.realisations,
      seed=settings.seed, lpips_nets=list(filter(None, settings.lpips_nets)),
      step=settings.step, confidence_interval=(
          "95% Student t over test images, each image's realisations "
          "averaged first"),
      runs=[records[i] for i in range(len(runs))])
  if settings.perception is not None:
    record["perception"] = dict(
        metrics=list(settings.perception.names),
        inception_weights=settings.perception.inception_weights,
        fid_kid=("once per (run, SNR) over all test images, first channel "
                 "realisation, uint8 reconstructions vs originals; ci95 is "
                 "half the 95% percentile bootstrap interval over images "
                 f"({settings.perception.num_bootstrap} replicates), "
                 "ci_low/ci_high its ends; KID also its std over subsets"),
        computed_for="training runs (swept here); rows read from output "
                     "directories keep the metrics they were computed with")
  return rows, record
