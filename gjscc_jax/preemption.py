"""Stopping cleanly when the scheduler says so (SIGTERM) or the user (Ctrl-C).

SLURM, Kubernetes and Cloud TPU send SIGTERM some seconds before they kill
a job. Inside a `PreemptionGuard`, SIGTERM and SIGINT do not stop the
process; they set a flag that the job polls at its safe points (after a
train step, before an inversion batch). The job then finishes the work in
flight, writes it (a checkpoint of that step, the batch's outputs), waits
for it to reach the disk, and raises `Preempted`, which ends the process
with `EXIT_CODE` (75, EX_TEMPFAIL: "try again later"). Rerunning the same
command resumes. A second SIGINT aborts at once (KeyboardInterrupt).

Several processes (`jax.distributed`) must stop at the same step, or the
checkpoint (a collective) would hang. A coordinated guard therefore leaves
SIGTERM to JAX's preemption service, which tells every process, and stops
at the first step all processes reach after the notice
(`jax.experimental.multihost_utils.reached_preemption_sync_point`); SIGINT
is forwarded to it as SIGTERM. Independent processes (inversion) use
uncoordinated guards.

Work that has no safe point to poll (an evaluation sweep, a codec search)
runs under `abandon_on_signal(what, saved)`: the first SIGTERM/SIGINT
abandons the unit in flight at once and raises `Preempted` with one line
saying what was saved and what to rerun.
"""

import contextlib
import signal
import threading

from absl import logging
import jax

#: Exit status of a job that stopped for a preemption notice after saving.
EXIT_CODE = 75
#: The signals a guard turns into a stop request.
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(SystemExit):
  """Raised once a stop request has been honoured and the work is saved.

  A `SystemExit` with `code == EXIT_CODE`, so an uncaught one ends the
  process with that status; `message` says what was saved.
  """

  def __init__(self, message: str):
    super().__init__(EXIT_CODE)
    self.message = message

  def __str__(self):
    return self.message


class PreemptionGuard:
  """Context manager turning SIGTERM / SIGINT into a polled stop request.

  Args:
    coordinated: All `jax.distributed` processes must stop at the same
      poll (training). Has no effect in a single process.

  Use::

    with PreemptionGuard(coordinated=True) as guard:
      for step in ...:
        ...
        if guard.reached(step):
          save(step); raise Preempted(...)
  """

  def __init__(self, coordinated: bool = False):
    self.coordinated = (coordinated and jax.process_count() > 1
                        and jax.config.jax_enable_preemption_service)
    self.signal_name = None
    self._previous = {}

  def _on_signal(self, signum, frame):
    del frame
    if self.signal_name is not None and signum == signal.SIGINT:
      signal.signal(signal.SIGINT, signal.default_int_handler)
      raise KeyboardInterrupt  # Twice: stop now.
    self.signal_name = signal.Signals(signum).name
    logging.warning("%s received: stopping after the work in flight is "
                    "saved (SIGINT again to abort at once).", self.signal_name)
    print(f"{self.signal_name} received: finishing the work in flight and "
          "saving it; then exiting.", flush=True)

  def _forward_to_jax(self, signum, frame):
    del frame
    self.signal_name = signal.Signals(signum).name
    signal.raise_signal(signal.SIGTERM)  # JAX's preemption notifier.

  def __enter__(self):
    if threading.current_thread() is not threading.main_thread():
      logging.warning("PreemptionGuard outside the main thread: signals are "
                      "not handled.")
      return self
    if self.coordinated:
      self._previous[signal.SIGINT] = signal.signal(signal.SIGINT,
                                                    self._forward_to_jax)
    else:
      for signum in SIGNALS:
        self._previous[signum] = signal.signal(signum, self._on_signal)
    return self

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous.clear()
    return False

  @property
  def requested(self) -> bool:
    """Whether this process received a stop signal (uncoordinated use)."""
    return self.signal_name is not None

  def reached(self, step: int) -> bool:
    """Whether to stop after `step`; call it once per step.

    Coordinated, every process gets True at the same step: the first one
    all of them reach after any of them received SIGTERM.
    """
    if self.coordinated:
      from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
      return multihost_utils.reached_preemption_sync_point(step)
    return self.requested


@contextlib.contextmanager
def abandon_on_signal(what: str, saved: str):
  """SIGTERM/SIGINT inside the block raise `Preempted` at once.

  For work without a safe point to finish (a sweep, a search): the unit in
  flight is abandoned (results are written only when the block completes).

  Args:
    what: What the block does, e.g. 'the end-of-training evaluation'.
    saved: What is saved and what to rerun, e.g. 'the checkpoint of step 6
      is committed; rerun the same command to evaluate it.'
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return

  def on_signal(signum, frame):
    del frame
    name = signal.Signals(signum).name
    for s, handler in previous.items():  # A second signal: default action.
      signal.signal(s, handler)
    message = f"Stopped by {name} during {what}: {saved}"
    logging.warning(message)
    raise Preempted(message)

  previous = {s: signal.signal(s, on_signal) for s in SIGNALS}
  try:
    yield
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
