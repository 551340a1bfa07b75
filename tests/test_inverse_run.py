"""Tests of the InverseJSCC batch runs: outputs, reruns, kills, two processes.

Everything is tiny: 16x16 images of the embedded sample dataset, an
untrained small DeepJSCC run directory (written with the trainer's own
checkpointing, no training step), the random demo StyleGAN2 at 16x16, two
ILO rounds of a few steps, no LPIPS. What is tested is the machinery: every
output written once and atomically, finished images skipped, a killed run
completed by a rerun with the same results, and two `jax.distributed`
processes splitting the images and gathering one summary.
"""

import csv
import functools
import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import inverse_ffhq
from gjscc_jax import faults
from gjscc_jax import metrics
from gjscc_jax import pixels
from gjscc_jax import preemption
from gjscc_jax.inverse import batch_run
from gjscc_jax.inverse import forward_operators
from gjscc_jax.inverse import latent_proxy
from gjscc_jax.inverse import latents as latents_lib
from gjscc_jax.inverse import outputs
from gjscc_jax.inverse import work
from gjscc_jax.losses import PerceptualLoss
from gjscc_jax.train import runs
from tests._helpers import restored_params
from tests._helpers import untrained_deepjscc_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RES, NUM_IMAGES, SNRS = 16, 6, (0.0, 10.0)

#: Overrides of `inverse_ffhq:demo`, as (dotted key, value) pairs.
_OVERRIDES = (
    ("data.resolution", RES), ("num_images", NUM_IMAGES), ("snrs_db", SNRS),
    ("batch_size", 8), ("ilo.steps", (3, 2)), ("ilo.lambda_lpips", 0.0),
    ("metrics.lpips_nets", ()), ("demo_generator.resolution", RES),
    ("demo_generator.z_dim", 16), ("demo_generator.w_dim", 16),
    ("demo_generator.channel_base", 256), ("demo_generator.channel_max", 16),
    ("save_latents", True))


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
  root = tmp_path_factory.mktemp("inverse_run")
  tfds_dir = str(root / "tfds")
  deepjscc = str(root / "deepjscc")
  untrained_deepjscc_run(deepjscc, tfds_dir, RES)
  return root, tfds_dir, deepjscc


def _config(setting, output_dir, **extra):
  _, tfds_dir, deepjscc = setting
  config = inverse_ffhq.get_config("demo")
  for key, value in _OVERRIDES + tuple(extra.items()):
    *path, name = key.split(".")
    node = config
    for part in path:
      node = node[part]
    node[name] = value
  config.data.tfds_dir = tfds_dir
  config.deepjscc_checkpoint = deepjscc
  config.output_dir = str(output_dir)
  return config


def _flags(setting, output_dir):
  """The command line that means `_config(setting, output_dir)`."""
  _, tfds_dir, deepjscc = setting
  flags = ["--config=inverse_ffhq:demo", f"--config.output_dir={output_dir}",
           f"--config.deepjscc_checkpoint={deepjscc}",
           f"--config.data.tfds_dir={tfds_dir}"]
  for key, value in _OVERRIDES:
    if isinstance(value, tuple):
      value = "(" + "".join(f"{v!r}," for v in value) + ")"
    flags.append(f"--config.{key}={value}")
  return flags


def _run_cli(flags, env_extra=None, devices=8):
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env.update(env_extra or {})
  return subprocess.Popen(
      [sys.executable, "-m", "experiments.invert", *flags], cwd=REPO, env=env,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _records(output_dir):
  store = outputs.OutputStore(str(output_dir))
  found = {}
  for snr in SNRS:
    folder = os.path.join(str(output_dir), outputs.snr_dirname(snr), "records")
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
      if name.endswith(".json"):
        index = int(name[:-5])
        found[(index, snr)] = store.read_record(snr, index)
  return found


def _mtimes(output_dir):
  return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
          for d, _, files in os.walk(str(output_dir)) for f in files
          if "/snr_" in d}


@pytest.fixture(scope="module")
def first_run(setting):
  output_dir = setting[0] / "single"
  rows = batch_run.run(_config(setting, output_dir))
  return output_dir, rows


def test_run_writes_every_output_once(setting, first_run):
  output_dir, rows = first_run
  records = _records(output_dir)
  assert sorted(records) == sorted((i, s) for i in range(NUM_IMAGES)
                                   for s in SNRS)
  store = outputs.OutputStore(str(output_dir))
  source = work.ImageSource(_config(setting, output_dir).data, "test")
  for (index, snr), record in records.items():
    assert record["image_index"] == index and record["snr_db"] == snr
    assert len(record["history"]["objective"]) == 5
    original = pixels.from_uint8(source.load(index)[0])[None]
    for kind, scheme in (("restored", "inverse"), ("received", "deepjscc")):
      image = pixels.from_uint8(store.read_image(snr, index, kind))[None]
      # The PNG holds the scored image (up to 8-bit rounding).
      assert float(metrics.psnr(image, original)[0]) == pytest.approx(
          record[scheme]["psnr"], abs=0.1)
  # The saved latents re-render the restored PNG exactly; the z_proxy fit
  # is cached in the run directory and its provenance pinned.
  config = _config(setting, output_dir)
  layered, gen_variables = batch_run.load_generator(config)
  for (index, snr), record in records.items():
    saved = latents_lib.read(store.latents_path(snr, index))
    assert str(saved["latent_space"]) == "z_proxy"
    np.testing.assert_array_equal(
        latents_lib.restored(layered, gen_variables, saved),
        store.read_image(snr, index, "restored"))
    assert 0 <= record["best_step"] < 5 and record["best"] == pytest.approx(
        min(record["history"]["score"]), rel=1e-6)
  with open(os.path.join(str(output_dir), outputs.RUN_CONFIG)) as f:
    pinned = json.load(f)
  _, info = latent_proxy.read(os.path.join(str(output_dir),
                                           latent_proxy.FILE_NAME))
  assert pinned["latent_proxy"] == info
  assert info["samples"] == latent_proxy.PROXY_SAMPLES
  # No temporary files are left behind.
  assert not [p for p in _mtimes(output_dir) if ".tmp" in p]
  with open(os.path.join(str(output_dir), "summary.csv")) as f:
    summary = list(csv.DictReader(f))
  for scheme in ("inversejscc", "deepjscc"):
    for snr in SNRS:
      psnr = [r for r in summary if r["scheme"] == scheme and r["metric"] ==
              "psnr" and float(r["snr_db"]) == snr]
      assert len(psnr) == 1 and int(psnr[0]["n"]) == NUM_IMAGES
      values = [rec["inverse" if scheme == "inversejscc" else "deepjscc"]
                ["psnr"] for (i, s), rec in records.items() if s == snr]
      assert float(psnr[0]["mean"]) == pytest.approx(np.mean(values))
  for name in ("psnr_vs_snr.png", "convergence.png", "grid_snr_0dB.png"):
    assert os.path.exists(os.path.join(str(output_dir), name))
  assert rows == json.load(open(os.path.join(str(output_dir),
                                             "summary.json")))


def test_rerun_skips_finished_images(setting, first_run, capsys):
  output_dir, rows = first_run
  before = _mtimes(output_dir)
  again = batch_run.run(_config(setting, output_dir))
  assert "12 of 12 image-SNR pairs already done; 0 to go" in (
      capsys.readouterr().out)
  assert _mtimes(output_dir) == before
  assert again == rows


def test_rerun_with_other_settings_is_refused(setting, first_run):
  output_dir, rows = first_run
  with pytest.raises(ValueError, match="other settings.*seed"):
    batch_run.run(_config(setting, output_dir, seed=1))
  with open(os.path.join(str(output_dir), "run_config.json")) as f:
    assert json.load(f)["generator_dtype"] == "float32"
  with pytest.raises(ValueError, match="other settings.*generator_dtype"):
    batch_run.run(_config(setting, output_dir, generator_dtype="bfloat16"))
  # remat changes memory, not results: the finished run stays valid.
  assert batch_run.run(_config(setting, output_dir, remat=True)) == rows


def test_killed_run_is_completed_by_a_rerun(setting, first_run):
  output_dir = setting[0] / "killed"
  proc = _run_cli(_flags(setting, output_dir),
                  {faults.KILL_AFTER_BATCHES: "1"})
  log, _ = proc.communicate(timeout=600)
  assert proc.returncode == -9, log
  done = _records(output_dir)
  # The first batch at least; the second was in flight (being computed or
  # written by the writer threads) and may be partly written.
  assert 8 <= len(done) <= 12
  store = outputs.OutputStore(str(output_dir))
  finished = [store.record_path(snr, index) for index, snr in done] + [
      store.image_path(snr, index, kind) for index, snr in done
      for kind in ("restored", "received")]
  before = {p: t for p, t in _mtimes(output_dir).items() if p in finished}
  assert len(before) == 3 * len(done)  # A record only after its PNGs.
  batch_run.run(_config(setting, output_dir))
  after = _mtimes(output_dir)
  assert all(after[p] == t for p, t in before.items())
  records = _records(output_dir)
  assert len(records) == 12
  # Per-image keys: the same results as the uninterrupted run.
  for key, record in _records(first_run[0]).items():
    assert records[key]["inverse"] == record["inverse"]
    assert records[key]["history"] == record["history"]


def test_sigterm_writes_the_batch_in_flight_and_bad_records_are_redone(
    setting, first_run, capsys):
  output_dir = setting[0] / "terminated"
  # SIGTERM arrives while the first batch computes: it is finished and
  # written, the second is never started, and the run exits with 75.
  proc = _run_cli(_flags(setting, output_dir),
                  {faults.TERM_AFTER_BATCHES: "1"})
  log, _ = proc.communicate(timeout=600)
  assert proc.returncode == preemption.EXIT_CODE, log
  assert "Stopped by SIGTERM" in log and "Traceback" not in log
  done = _records(output_dir)
  assert len(done) == 8
  # A record that does not read back (a half-synced copy) is recomputed.
  bad = outputs.OutputStore(str(output_dir)).record_path(SNRS[0], 0)
  assert (0, SNRS[0]) in done
  with open(bad, "w") as f:
    f.write('{"image_index": 0, "inverse": {"psnr": ')
  # Nor is an intact record whose restored PNG is truncated (every rerun
  # used to crash on it, with a traceback naming no file).
  store = outputs.OutputStore(str(output_dir))
  assert (1, SNRS[0]) in done
  truncated = store.image_path(SNRS[0], 1, "restored")
  data = open(truncated, "rb").read()
  with open(truncated, "wb") as f:
    f.write(data[:len(data) // 2])
  capsys.readouterr()
  batch_run.run(_config(setting, output_dir))
  out = capsys.readouterr().out
  assert f"WARNING: unreadable output {truncated} " in out
  assert "6 of 12 image-SNR pairs already done; 6 to go" in out
  assert store.read_image(SNRS[0], 1, "restored").shape == (RES, RES, 3)
  records = _records(output_dir)
  assert len(records) == 12
  for key, record in _records(first_run[0]).items():
    assert records[key]["inverse"] == record["inverse"], key


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_split_the_images(setting, first_run):
  output_dir = setting[0] / "two_processes"
  port = _free_port()
  procs = [_run_cli(_flags(setting, output_dir), dict(
      JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
      JAX_PROCESS_ID=str(p))) for p in range(2)]
  logs = [p.communicate(timeout=600)[0] for p in procs]
  for proc, log in zip(procs, logs):
    assert proc.returncode == 0, log
  records = _records(output_dir)
  assert sorted(records) == sorted((i, s) for i in range(NUM_IMAGES)
                                   for s in SNRS)
  for (index, _), record in records.items():
    assert record["process_index"] == index % 2
  # Process 0 wrote the summary of both processes' images (a collective).
  with open(os.path.join(str(output_dir), "summary.csv")) as f:
    summary = list(csv.DictReader(f))
  assert {int(r["n"]) for r in summary} == {NUM_IMAGES}
  # The same per-image results as one process (per-image keys; the batches
  # differ, so up to float reassociation).
  for key, record in _records(first_run[0]).items():
    for metric, value in record["inverse"].items():
      assert records[key]["inverse"][metric] == pytest.approx(value, rel=1e-3)


def test_deepjscc_operator_is_the_frozen_chain(setting):
  _, scheme, params = runs.load_run(setting[2])
  terms = {noise: forward_operators.DataTerms(
      "deepjscc", PerceptualLoss(check_inputs=False), generator_resolution=
      2 * RES, image_resolution=RES, channel_noise=noise,
      reconstruct=scheme.reconstruct) for noise in ("fresh", "fixed")}
  frozen = dict(deepjscc=params)
  image = jax.random.uniform(jax.random.PRNGKey(0), (2 * RES, 2 * RES, 3),
                             minval=-1, maxval=1)
  received = jnp.zeros((1, RES, RES, 3))
  keys = jax.random.split(jax.random.PRNGKey(1), 3)

  @functools.partial(jax.jit, static_argnums=0)
  def mse_of(noise, key):
    target = terms[noise].prepare_targets(frozen, received, jnp.full(1, 3.0),
                                          keys[2][None])
    target = jax.tree.map(lambda a: a[0], target)
    return terms[noise](frozen, image, target, key)["mse"]

  # A(G): area-downsample 2x, then encoder -> AWGN at 3 dB -> decoder.
  small = image.reshape(RES, 2, RES, 2, 3).mean((1, 3))
  for noise, key in (("fresh", keys[0]), ("fixed", keys[2])):
    chain = scheme.reconstruct(params, small[None], jnp.full(1, 3.0), key)
    assert float(mse_of(noise, keys[0])) == pytest.approx(
        float(jnp.mean(jnp.square(chain))), rel=1e-5)
  assert float(mse_of("fresh", keys[0])) != float(mse_of("fresh", keys[1]))
  assert float(mse_of("fixed", keys[0])) == float(mse_of("fixed", keys[1]))


def test_folder_source_crops_resizes_and_names(tmp_path):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  (tmp_path / "sub").mkdir()
  for name, size in (("b.png", (40, 24)), ("sub/a.jpg", (16, 16))):
    Image.fromarray(rng.integers(0, 256, size[::-1] + (3,), np.uint8)).save(
        tmp_path / name)
  (tmp_path / "notes.txt").write_text("not an image")
  config = inverse_ffhq.get_config().data
  config.resolution = 8
  source = work.ImageSource(config, input_dir=str(tmp_path))
  assert len(source) == 2
  names = [source.load(i)[1] for i in range(2)]
  assert names == ["b.png", "a.jpg"]  # Sorted by path.
  assert all(source.load(i)[0].shape == (8, 8, 3) for i in range(2))
  with pytest.raises(FileNotFoundError, match="No images"):
    work.ImageSource(config, input_dir=str(tmp_path / "sub" / "none"))


def test_demo_trains_its_deepjscc_in_process_and_stops_on_sigterm(
    setting, tmp_path, monkeypatch):
  # The demo trained DeepJSCC in a child process: SIGTERM killed the parent
  # with 143, silently, and left the child training, orphaned.
  import psutil  # pylint: disable=import-outside-toplevel
  from experiments import invert  # pylint: disable=import-outside-toplevel
  config = _config(setting, tmp_path / "out", demo_deepjscc_steps=2)
  workdir = str(tmp_path / "out" / "deepjscc_demo")
  demo_config = invert.demo_deepjscc_config
  train_config = demo_config(config)
  assert (train_config.data.resolution, train_config.total_steps) == (RES, 2)

  def tiny(config):  # The demo's DeepJSCC, narrower, on fewer images.
    train_config = demo_config(config)
    train_config.model.arch, train_config.model.num_filters = "small", 8
    train_config.model.downsampling = 4
    train_config.data.sample_train_size = 16
    train_config.batch_size = 8
    return train_config

  monkeypatch.setattr(invert, "demo_deepjscc_config", tiny)
  children = {p.pid for p in psutil.Process().children(recursive=True)}
  monkeypatch.setenv(faults.TERM_AFTER_STEP, "1")
  with pytest.raises(preemption.Preempted) as stop:
    invert.train_demo_deepjscc(config, workdir)
  assert stop.value.code == 75
  assert "Stopped by SIGTERM after step 1" in str(stop.value)
  assert "Rerun the same command to resume" in str(stop.value)
  assert {p.pid for p in psutil.Process().children(recursive=True)
          } <= children  # Nothing started, nothing left running.
  assert runs.read_config(workdir).total_steps == 2
  assert restored_params(workdir)[0] == 1  # A rerun resumes from it.
