"""What an output directory holds: its `run.json`.

Every command that writes an output directory (a training run, an
InverseJSCC run, a separation run) also writes one small `run.json`:

  {"kind": "training", "version": 1,
   "produced_by": {"module": "gjscc_jax.train.loop", "gjscc_jax": "0.1.0"},
   ...}

`kind` names what the directory is, `version` the layout of that kind's
files (raise it when a kind's files change incompatibly), `produced_by`
the code that wrote it; a kind may add fields of its own (e.g. a
separation run's link). A reader of results (`gjscc_jax.evaluation.
comparison`) asks `kind_of(directory)` and dispatches on the answer
through one table, instead of guessing from the files present.

Directories written before `run.json` existed are still recognised, here
and only here, by the rule used until then (`legacy_kind`).
"""

import json
import os

import gjscc_jax

#: The file name.
RUN_FILE = "run.json"
#: The kinds written today.
TRAINING = "training"
INVERSEJSCC = "inversejscc"
SEPARATION = "separation"
KINDS = (TRAINING, INVERSEJSCC, SEPARATION)
#: The layout version of a kind's directory when none is given.
VERSION = 1


def record(kind, module, version=VERSION, **fields):
  """The `run.json` content of a `kind` directory written by `module`."""
  return dict(fields, kind=kind, version=int(version),
              produced_by=dict(module=module, gjscc_jax=gjscc_jax.__version__))


def write(directory, kind, module, version=VERSION, **fields):
  """Writes `directory/run.json` atomically (`record`); returns its path.

  Args:
    directory: the output directory (created).
    kind: what it is (`KINDS`, or a kind another module adds).
    module: the module that writes the directory, e.g. `__name__`.
    version: the layout version of this kind's files.
    **fields: JSON-serialisable fields of the kind (e.g. `link`).
  """
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, RUN_FILE)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(record(kind, module, version, **fields), f, indent=1,
              sort_keys=True)
  os.replace(tmp, path)
  return path


def read(directory):
  """The `run.json` of `directory` as a dict, or None when it has none."""
  path = os.path.join(directory, RUN_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def legacy_kind(directory):
  """The kind of a directory written before `run.json`, from its files.

  `config.json`: a training run; `run_config.json` with `scheme:
  'separation'`: a separation run; `run_config.json` with an `ilo` entry:
  an InverseJSCC run; otherwise None.
  """
  if os.path.exists(os.path.join(directory, "config.json")):
    return TRAINING
  path = os.path.join(directory, "run_config.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    settings = json.load(f)
  if settings.get("scheme") == SEPARATION:
    return SEPARATION
  if "ilo" in settings:
    return INVERSEJSCC
  return None


def kind_of(directory):
  """`(kind, record)` of an output directory; `(None, None)` if unknown.

  The kind is `run.json`'s; without one, `legacy_kind` and the record of
  `record(kind, 'unknown', version=0)`.
  """
  found = read(directory)
  if found is not None:
    return found.get("kind"), found
  kind = legacy_kind(directory)
  if kind is None:
    return None, None
  return kind, record(kind, "unknown", version=0)
