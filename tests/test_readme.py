"""README.md's set-up commands stay the ones CI and newcomers actually run."""

import os
import re

from experiments import config_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*path):
  with open(os.path.join(REPO, *path)) as f:
    return f.read()


def _bash_blocks(text):
  return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, re.S)]


def test_ci_runs_exactly_the_readme_test_command():
  readme_test = [b for b in _bash_blocks(_read("README.md")) if "pytest" in b][0]
  ci_lines = [l.strip() for l in _read(".ci", "run").splitlines()]
  assert readme_test in ci_lines


def test_readme_demo_command_names_an_existing_config():
  demo = _bash_blocks(_read("README.md"))[0]
  value = re.search(r"--config=(\S+)", demo).group(1)
  assert os.path.exists(config_cli.resolve_config_value(value).partition(":")[0])
