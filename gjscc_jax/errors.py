"""User errors and the one-line error path of every command line.

A user's mistake (a bad setting, a missing checkpoint, a directory in use,
a full disk) raises an exception whose message names the cause and the fix.
`guarded(main)` turns such an exception into one line on stderr,
`Error: <message> (--verbose shows the traceback)`, and exit status 1;
`--verbose` or `GJSCC_VERBOSE=1` re-raises it with its traceback. A job
stopped by SIGTERM/SIGINT after saving its work (`gjscc_jax.preemption`)
prints what it saved and what to rerun, and exits with status 75.

`experiments.config_cli.run` (the `experiments/` entry points),
`python -m gjscc_jax.data.prepare` and `python -m weights_convert` all
report errors through this module.
"""

import os
import re
import sys


class UserError(RuntimeError):
  """An error whose message names its cause and the user's fix."""


#: Exceptions that report a user's mistake (their message names the fix).
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError,
               IsADirectoryError, PermissionError, FloatingPointError,
               UserError)
#: The line a config file's error ends with in ml_collections' message.
_LAST_ERROR_LINE = re.compile(r"^\w+(Error|Exception): (?P<message>.+)$")


def verbose(argv=None):
  """Whether tracebacks are wanted (`--verbose` or `GJSCC_VERBOSE=1`).

  Args:
    argv: The command line, read when absl's flags are not parsed yet.
  """
  if os.environ.get("GJSCC_VERBOSE", "") not in ("", "0"):
    return True
  from absl import flags  # pylint: disable=import-outside-toplevel
  if argv is not None:
    return any(a in ("--verbose", "-verbose") for a in argv)
  if flags.FLAGS.is_parsed() and "verbose" in flags.FLAGS:
    return bool(flags.FLAGS.verbose)
  return any(a in ("--verbose", "-verbose") for a in sys.argv[1:])


def one_line(error):
  """The message of `error` on one line: a config file's traceback, as
  ml_collections embeds it, is cut to its final error line."""
  text = str(error)
  if "Traceback (most recent call last)" in text:
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    for line in reversed(lines):
      match = _LAST_ERROR_LINE.match(line)
      if match:
        head = text.split("\n", 1)[0].replace(
            "Error whilst parsing config file", "").rstrip(" :")
        text = f"{head}: {match['message']}"
        break
  if isinstance(error, OSError) and error.filename and (
      str(error.filename) not in text):
    text = f"{text}: {error.filename}"
  return " ".join(text.split())


def fail(message):
  """Prints `Error: message` (one line) to stderr and exits with status 1."""
  print(f"Error: {message}", file=sys.stderr, flush=True)
  sys.exit(1)


def guarded(main, extra_errors=()):
  """`main` with the one-line error path (see the module docstring).

  Args:
    main: The command's main function.
    extra_errors: Exception types to report as user errors besides
      `USER_ERRORS` (e.g. a converter's file-format errors).
  """
  from gjscc_jax import preemption  # pylint: disable=import-outside-toplevel

  def run(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except preemption.Preempted as e:
      print(e.message, file=sys.stderr, flush=True)
      raise
    except USER_ERRORS + tuple(extra_errors) as e:
      if verbose():
        raise
      fail(f"{one_line(e)} (--verbose shows the traceback)")

  return run
