"""One writer per output directory, and one kind of output per directory.

A training workdir, an InverseJSCC output directory and a separation output
directory each have a single writer: `DirectoryLock` takes an exclusive
`fcntl.flock` on `DIR/.gjscc-lock` (one file per `jax.process_index()`:
`.gjscc-lock`, `.gjscc-lock.1`, ...) and writes who holds it (host, pid,
start time) into it. A second writer is refused with `DirectoryInUse`, whose
one-line message names the holder.

The kernel drops a flock when its process ends, however it ends (SIGKILL,
a crash, a lost node), so a lock is never left held by a dead process. A
lock file that still names a holder when the lock is taken was left by a
process that died without releasing it: it is taken over, with a warning
naming that process. A clean release empties the file (and removes it, and
the directory, when the directory held nothing else: a run refused before
writing anything leaves nothing behind).

`check_kind` refuses to write one kind of output into a directory that
holds another (e.g. the separation baseline into a training workdir), by
the directory's `run.json` (`gjscc_jax.run_record`).
"""

import datetime
import json
import os
import socket

from absl import logging

from gjscc_jax import errors
from gjscc_jax import run_record

#: Lock file name (process 0; process i > 0 appends `.i`).
LOCK_FILE = ".gjscc-lock"


class DirectoryInUse(errors.UserError):
  """Another live process holds the directory's lock."""


def _describe(holder):
  return (f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, "
          f"started {holder.get('started', '?')}")


class DirectoryLock:
  """An exclusive, crash-safe lock on an output directory.

  Args:
    directory: The output directory (created if missing).
    what: What writes it, for messages ('training run', 'InverseJSCC run').
    process_index: This process's index (`jax.process_index()`); each
      index has its own lock file.

  Use as a context manager, or `acquire()` / `release()`.

  Raises (on acquire):
    DirectoryInUse: naming the holder, when another process holds it.
  """

  def __init__(self, directory, what="run", process_index=0):
    self.directory = os.path.abspath(directory)
    self.what = what
    name = LOCK_FILE if process_index == 0 else f"{LOCK_FILE}.{process_index}"
    self.path = os.path.join(self.directory, name)
    self._fd = None
    self._created = False

  def acquire(self):
    import fcntl  # pylint: disable=import-outside-toplevel
    self._created = not os.path.isdir(self.directory)
    os.makedirs(self.directory, exist_ok=True)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      holder = _read_holder(fd)
      os.close(fd)
      raise DirectoryInUse(
          f"{self.directory} is in use by another {self.what} ({_describe(holder)}; "
          f"lock file {self.path}): wait for it to finish or stop it, or "
          "write to another directory.") from None
    previous = _read_holder(fd)
    if previous:
      message = (f"Taking over the lock of {self.directory} left by a process "
                 f"that is gone ({_describe(previous)}).")
      logging.warning(message)
      print(f"WARNING: {message}", flush=True)
    me = dict(host=socket.gethostname(), pid=os.getpid(),
              started=datetime.datetime.now().isoformat(timespec="seconds"))
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    os.fsync(fd)
    self._fd = fd
    return self

  def release(self):
    if self._fd is None:
      return
    import fcntl  # pylint: disable=import-outside-toplevel
    os.ftruncate(self._fd, 0)
    if self._created and os.listdir(self.directory) == [
        os.path.basename(self.path)]:
      os.remove(self.path)  # Nothing else was written: leave nothing.
      os.rmdir(self.directory)
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()
    return False


def _read_holder(fd):
  try:
    text = os.pread(fd, 4096, 0).decode()
    return json.loads(text) if text.strip() else {}
  except (OSError, ValueError):
    return {"host": "?", "pid": "?", "started": "? (unreadable lock file)"}


#: How each kind of output directory (`run_record`) is called in messages.
KIND_NAMES = {run_record.TRAINING: "training run",
              run_record.INVERSEJSCC: "InverseJSCC output",
              run_record.SEPARATION: "separation output"}


def check_kind(directory, kind, flag="--output_dir"):
  """Raises unless `directory` holds no output yet or holds `kind`.

  Args:
    directory: The output directory.
    kind: The kind about to be written (`run_record.KINDS`).
    flag: The flag that names the directory, for the message.

  Raises:
    ValueError: naming what the directory holds and the fix.
  """
  if not os.path.isdir(directory):
    return
  existing, _ = run_record.kind_of(directory)
  if existing is None and os.path.isdir(os.path.join(directory,
                                                     "checkpoints")):
    existing = run_record.TRAINING  # Killed before its first records.
  if existing is not None and existing != kind:
    raise ValueError(
        f"{directory} holds a {KIND_NAMES.get(existing, existing)}; a "
        "directory holds one kind of output: pass another "
        f"{flag} for the {KIND_NAMES.get(kind, kind)}.")
