"""Progress bar and metric writers (JSON lines and TensorBoard) for training.

Only process 0 writes files and draws the bar, so multi-host runs stay quiet.
"""

import json
import os
import sys
import time

import jax
import numpy as np


def _scalar(value):
  value = np.asarray(value)
  return value.item() if value.size == 1 else value.tolist()


class MetricWriter:
  """Appends metrics to `metrics.jsonl` and TensorBoard event files.

  TensorBoard files are written by tensorboardX (no TensorFlow needed); view
  them with `tensorboard --logdir WORKDIR/tensorboard`.

  Args:
    workdir: The run directory.
    enabled: Whether to write (default: on process 0 only).
    resume_step: The step the run (re)starts from: records of later steps
      (and the final sweep's of this step), written before a kill and about
      to be recomputed, are dropped from `metrics.jsonl` first
      (`truncate_records`), so each step appears once.
  """

  def __init__(self, workdir, enabled=None, resume_step=None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._jsonl = self._tb = None
    if not self.enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "metrics.jsonl")
    if resume_step is not None and os.path.exists(path):
      truncate_records(path, resume_step)
    self._jsonl = open(path, "a")
    try:
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
    except ImportError:  # Optional: JSON lines are always written.
      self._tb = None

  def write(self, step, metrics, prefix="train"):
    if not self.enabled:
      return
    metrics = {k: _scalar(v) for k, v in metrics.items()}
    record = dict(step=int(step), time=time.time(), split=prefix, **metrics)
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for name, value in metrics.items():
        if isinstance(value, (int, float)):
          self._tb.add_scalar(f"{prefix}/{name}", value, int(step))
      self._tb.flush()

  def close(self):
    if self._jsonl is not None:
      self._jsonl.close()
    if self._tb is not None:
      self._tb.close()


def truncate_records(path, last_step):
  """Keeps the records of `path` up to `last_step`, atomically (a temporary
  file renamed over it): training records of steps <= `last_step`, others
  (the final sweep's) of steps < `last_step`, as a resumed run rewrites
  those; a torn last line is dropped too."""
  kept, dropped = [], 0
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
        step = int(record["step"])
        keep = step < last_step or (step == last_step and
                                    record.get("split") == "train")
      except (ValueError, KeyError, TypeError):
        keep = False
      if keep:
        kept.append(line if line.endswith("\n") else line + "\n")
      else:
        dropped += 1
  if not dropped:
    return
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    f.writelines(kept)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


class ProgressBar:
  """A tqdm bar over training steps with ETA, steps/s and the last metrics."""

  def __init__(self, total, initial=0, enabled=None, desc="train"):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._bar = None
    if self.enabled:
      from tqdm import tqdm
      self._bar = tqdm(total=total, initial=initial, desc=desc, unit="step",
                       dynamic_ncols=True, file=sys.stderr, mininterval=1.0)

  def update(self, n=1):
    if self._bar is not None:
      self._bar.update(n)

  def show(self, metrics):
    if self._bar is not None:
      shown = {k: f"{_scalar(v):.4g}" for k, v in metrics.items()
               if np.asarray(v).size == 1}
      self._bar.set_postfix(shown, refresh=False)

  def close(self):
    if self._bar is not None:
      self._bar.close()
