"""Fault injection: die as a pre-empted job would, at a chosen point.

The resume tests start a run with one of these variables set to `n`; the
run SIGKILLs itself (no clean-up, no atexit, no flushing) when its counter
reaches `n`, and the test then checks that a restart resumes exactly:

* `KILL_AFTER_STEP` (`GJSCC_FAULT_KILL_AFTER_STEP`): training, right after
  the checkpoint of step `n` is committed;
* `KILL_AFTER_BATCHES` (`GJSCC_FAULT_KILL_AFTER_BATCHES`): inversion, right
  after the outputs of its `n`-th batch are written.
"""

import os
import signal
from typing import Callable

KILL_AFTER_STEP = "GJSCC_FAULT_KILL_AFTER_STEP"
KILL_AFTER_BATCHES = "GJSCC_FAULT_KILL_AFTER_BATCHES"


def kill_point(variable: str) -> int:
  """The count at which to die, from `$variable`; -1 (never) when unset."""
  return int(os.environ.get(variable, "-1"))


def maybe_kill(variable: str, count: int,
               before: Callable[[], None] | None = None) -> None:
  """SIGKILLs this process if `count` equals the value of `$variable`.

  Args:
    variable: `KILL_AFTER_STEP` or `KILL_AFTER_BATCHES`.
    count: The caller's counter (steps done, batches written).
    before: Called first, e.g. to wait for an asynchronous checkpoint.
  """
  if count != kill_point(variable):
    return
  if before is not None:
    before()
  os.kill(os.getpid(), signal.SIGKILL)
