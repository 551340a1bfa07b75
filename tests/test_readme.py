"""README.md's set-up commands stay the ones CI and newcomers actually run."""

import json
import os
import re
import subprocess
import sys

import pytest

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


def _python_blocks(text):
  return [b for b in re.findall(r"```python\n(.*?)```", text, re.S)]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
  """An untrained DeepJSCC run at 16x16 on 8 sample images, its data built."""
  from gjscc_jax import data  # pylint: disable=import-outside-toplevel
  from gjscc_jax.train import runs  # pylint: disable=import-outside-toplevel
  from tests import _helpers  # pylint: disable=import-outside-toplevel
  root = tmp_path_factory.mktemp("readme")
  workdir = root / "run"
  _helpers.untrained_deepjscc_run(str(workdir), root / "tfds", 16)
  config = json.loads((workdir / "config.json").read_text())
  config["data"].update(sample_train_size=8, sample_test_size=8)
  (workdir / "config.json").write_text(json.dumps(config))
  next(data.eval_batches(runs.read_config(str(workdir)).data, "test", 8))
  return workdir


def test_readme_python_example_runs_on_a_trained_run(small_run, capsys):
  """The README's API example, executed as written on a small run directory
  in place of the quick start's `runs/demo`: it loads the run, sends the
  first test images over the channel and prints one PSNR per image, which
  must be what `metrics.psnr` of the printed tensors gives, and the channel
  must act (another SNR gives another reconstruction)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  blocks = _python_blocks(_read("README.md"))
  assert len(blocks) == 1, "README.md should hold one ```python example"
  code = blocks[0]
  assert '"runs/demo"' in code  # The quick start's run directory.
  capsys.readouterr()
  namespace = {}
  exec(compile(code.replace('"runs/demo"', repr(str(small_run))),  # pylint: disable=exec-used
               "README.md", "exec"), namespace)
  images, received = namespace["images"], namespace["received"]
  assert received.shape == images.shape == (8, 16, 16, 3)
  assert np.all(np.abs(np.asarray(received)) <= 1.0)
  printed = capsys.readouterr().out
  expected = np.asarray(namespace["metrics"].psnr(images, received))
  assert np.isfinite(expected).all()
  shown = np.array(printed.replace("[", " ").replace("]", " ").split(), float)
  np.testing.assert_allclose(shown, expected, rtol=1e-4)
  scheme, params = namespace["scheme"], namespace["params"]
  other = scheme.reconstruct(params, images, jnp.full((8,), -5.0),
                             jax.random.PRNGKey(0))
  assert not np.allclose(other, received)


def test_quickstart_figure_command_draws_curves_and_both_schemes(small_run,
                                                                 tmp_path):
  """The README's figure command, on the small run and a one-curve summary:
  it writes a PNG of the layout it promises (curves, then an original and
  one column per SNR for DeepJSCC and the codec, per image)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  command = [b for b in _bash_blocks(_read("README.md"))
             if "experiments.quickstart_figure" in b][0]
  assert "--run=runs/demo" in command and "--comparison=" in command
  rows = [dict(scheme="deepjscc", label="DeepJSCC", bcr=1 / 12, snr_db=s,
               metric="psnr", mean=10.0 + s / 10, ci95=0.5, n=8)
          for s in (-5.0, 5.0)]
  (tmp_path / "summary.json").write_text(json.dumps(rows))
  out = tmp_path / "quickstart.png"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.quickstart_figure",
       f"--run={small_run}", f"--comparison={tmp_path}", f"--out={out}",
       "--snrs_db=-5,5", "--num_images=1"],
      cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with Image.open(out) as image:
    width, height = image.size
  assert width > 2 * height  # Curves on the left, two image rows beside.
