"""The glossary's names (docs/glossary.md), and the old names still working
with a one-line warning."""

import logging

from experiments import config_cli
from experiments.configs import deepjscc_ffhq
from experiments.configs import generative_ffhq


def test_old_flag_names_become_the_new_ones_with_a_warning(caplog):
  argv = ["prog", "--workdir=/tmp/x", "--snrs", "0,10", "--bcr=1/48",
          "--verbose", "--snrs_dbx=1"]
  with caplog.at_level(logging.WARNING):
    renamed = config_cli.rename_flags(
        argv, {"output_dir", "snrs_db", "rho", "verbose"})
  assert renamed == ["prog", "--output_dir=/tmp/x", "--snrs_db", "0,10",
                     "--rho=1/48", "--verbose", "--snrs_dbx=1"]
  warnings = [r.getMessage() for r in caplog.records]
  assert len(warnings) == 3 and "--workdir is deprecated; use --output_dir" in (
      warnings[0])
  # Where an entry point still defines the old name (or not the new one),
  # nothing is renamed.
  assert config_cli.rename_flags(argv, {"snrs", "workdir"}) == argv


def test_config_argument_bcr_is_rho_with_a_warning(caplog):
  for module in (deepjscc_ffhq, generative_ffhq):
    with caplog.at_level(logging.WARNING):
      old = module.get_config("demo,bcr=1/384")
    assert "'bcr' is deprecated; use 'rho'" in caplog.text
    new = module.get_config("demo,rho=1/384")
    assert old.to_dict() == new.to_dict()
    assert new.to_dict() != module.get_config("demo,rho=1/192").to_dict()
