"""Fault injection: die or get preempted as a real job would, at a chosen point.

The resume tests start a run with one of these variables set to `n`; the
run signals itself when its counter reaches `n`, and the test then checks
what survived and that a restart resumes exactly:

* `KILL_AFTER_STEP` (`GJSCC_FAULT_KILL_AFTER_STEP`): training SIGKILLs
  itself (no clean-up, no atexit, no flushing) right after the checkpoint
  of step `n` is committed;
* `KILL_AFTER_BATCHES` (`GJSCC_FAULT_KILL_AFTER_BATCHES`): inversion
  SIGKILLs itself right after the outputs of its `n`-th batch are written;
* `TERM_AFTER_STEP` (`GJSCC_FAULT_TERM_AFTER_STEP`): training sends itself
  SIGTERM right after dispatching step `n`, as a scheduler's preemption
  notice would arrive while that step computes;
* `TERM_AFTER_BATCHES` (`GJSCC_FAULT_TERM_AFTER_BATCHES`): inversion sends
  itself SIGTERM right after dispatching its `n`-th batch;
* `TERM_AT_EVAL_BATCH` (`GJSCC_FAULT_TERM_AT_EVAL_BATCH`): an evaluation
  sweep sends itself SIGTERM as it starts its `n`-th batch.
"""

import os
import signal
from typing import Callable

KILL_AFTER_STEP = "GJSCC_FAULT_KILL_AFTER_STEP"
KILL_AFTER_BATCHES = "GJSCC_FAULT_KILL_AFTER_BATCHES"
TERM_AFTER_STEP = "GJSCC_FAULT_TERM_AFTER_STEP"
TERM_AFTER_BATCHES = "GJSCC_FAULT_TERM_AFTER_BATCHES"
TERM_AT_EVAL_BATCH = "GJSCC_FAULT_TERM_AT_EVAL_BATCH"

_SIGNALS = {KILL_AFTER_STEP: signal.SIGKILL, KILL_AFTER_BATCHES: signal.SIGKILL,
            TERM_AFTER_STEP: signal.SIGTERM, TERM_AFTER_BATCHES: signal.SIGTERM,
            TERM_AT_EVAL_BATCH: signal.SIGTERM}


def kill_point(variable: str) -> int:
  """The count at which to act, from `$variable`; -1 (never) when unset."""
  return int(os.environ.get(variable, "-1"))


def maybe_kill(variable: str, count: int,
               before: Callable[[], None] | None = None) -> None:
  """Signals this process if `count` equals the value of `$variable`.

  Args:
    variable: One of the variables above; it picks the signal (SIGKILL for
      `KILL_*`, SIGTERM for `TERM_*`).
    count: The caller's counter (steps done, batches written).
    before: Called first, e.g. to wait for an asynchronous checkpoint.
  """
  if count != kill_point(variable):
    return
  if before is not None:
    before()
  os.kill(os.getpid(), _SIGNALS[variable])
