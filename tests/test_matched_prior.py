"""GenerativeJSCC as the matched-prior experiment runs it: the receiver's up
path without a learned checkerboard, the grafted slices that train with
the receiver in every generator mode, and the spectra the experiment
reports (closed forms).
"""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from gjscc_jax import schemes
from gjscc_jax.schemes import generative
from gjscc_jax.evaluation import matched_prior as mp
from gjscc_jax.evaluation import spectrum
from gjscc_jax.models.generative import receiver as receiver_lib
from gjscc_jax.train import loop as train
from gjscc_jax.train import step as step_lib
from tests import test_generative_resume
from tests.test_generative import TINY, tiny_config

# G0 at 16x16 as the frozen or fine-tuned prior, without warm-up.
MATCHED_TINY = {**test_generative_resume.MATCHED_TINY,
                "optimizer.warmup_steps": 0}


def test_spectrum_shares_closed_forms():
  i, j = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
  checker = ((-1.0) ** (i + j))[None, :, :, None]
  assert spectrum.nyquist_fraction(checker + 3.0) == pytest.approx(1.0)
  smooth = np.cos(2 * np.pi * i / 16)[None, :, :, None]
  assert spectrum.nyquist_fraction(smooth) == pytest.approx(0.0, abs=1e-12)
  assert spectrum.nyquist_fraction(np.ones((2, 8, 8, 3))) == 0.0
  # A block pattern of period 8 on 32x32 lies on the period-8 lattice;
  # a cosine of period 32 does not.
  i, j = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
  blocks = (((i // 4) + (j // 4)) % 2)[None, :, :, None].astype(float)
  assert spectrum.lattice_fraction(blocks, 8) == pytest.approx(1.0)
  wave = np.cos(2 * np.pi * i / 32)[None, :, :, None]
  assert spectrum.lattice_fraction(wave, 8) == pytest.approx(0.0, abs=1e-12)
  # Spectra add up: the share of pooled power is pooled energy over total.
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(3, 8, 8, 2)), rng.normal(size=(2, 8, 8, 5))
  pa, pb = spectrum.ac_power(a), spectrum.ac_power(b)
  nyq = lambda p: p[4, :].sum() + p[:, 4].sum() - p[4, 4]
  assert spectrum.nyquist_fraction(power=pa + pb) == pytest.approx(
      (nyq(pa) + nyq(pb)) / (pa.sum() + pb.sum()))
  np.testing.assert_allclose(
      spectrum.downsample(np.ones((1, 8, 8, 1)) * np.arange(8)[None, None, :, None], 4)[0, 0, :, 0],
      [0.5, 2.5, 4.5, 6.5])


def _maps(upsample, received):
  receiver = receiver_lib.GenerativeReceiver(
      img_resolution=32, num_ws=8, w_dim=8, injection="concat",
      injection_channels=(8,) * 7, channel_base=64, channel_max=8,
      num_res_blocks=0, upsample=upsample)
  variables = jax.jit(receiver.init)(jax.random.PRNGKey(0), received)
  _, maps = jax.jit(receiver.apply)(variables, received)
  return {m.shape[1]: np.asarray(m) for m in maps if m is not None}


def test_resize_up_path_puts_no_checkerboard_in_the_maps():
  """The sub-pixel stage's phases are independent kernels: its maps carry
  a white share of Nyquist energy from initialisation on; the bilinear
  stage's cannot (its [1, 3, 3, 1] interpolation is zero at Nyquist, and
  only the leaky ReLUs and the image border add any)."""
  received = jax.random.normal(jax.random.PRNGKey(1), (4, 2, 2, 8))
  sub, resize = _maps("subpixel", received), _maps("resize", received)
  for r in (16, 32):  # (At 4x4 and 8x8 the conv borders dominate.)
    assert spectrum.nyquist_fraction(sub[r]) > 0.1, r
    assert spectrum.nyquist_fraction(resize[r]) < 0.02, r
  with pytest.raises(ValueError, match="upsample="):
    _maps("nearest", received)


def _grafted_config(mode):
  return tiny_config(f"matched,generator={mode}", **{
      **TINY, **MATCHED_TINY, "generator.lr": 1e-4,
      "model.injection_scale_gain": 10.0})


def _train_steps(config, steps=2):
  scheme = schemes.build_scheme(config)
  loss, frozen = train.build_loss(config)
  tx, _ = scheme.make_optimizer(config.total_steps)
  params = jax.jit(scheme.init)(jax.random.PRNGKey(0),
                                jnp.zeros((8, 16, 16, 3)))
  params = scheme.load_pretrained(params)
  state = step_lib.create_train_state(params, tx, jax.random.PRNGKey(1))
  fn = jax.jit(step_lib.make_train_step(scheme, loss, tx, (-5.0, 5.0)))
  rng = np.random.default_rng(0)
  start = jax.device_get(state.params)
  for i in range(steps):
    batch = {"image": rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)}
    state, _ = fn(state, batch, jax.random.PRNGKey(10 + i), frozen)
  masks = generative.grafted_masks(scheme.model)
  return masks, start, jax.device_get(state.params)


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_grafted_slices_train_in_every_mode_the_generator_only_when_finetuned(
    mode):
  """Which elements move in two steps of each generator mode.

  The grafted slices (kernel inputs and style-affine outputs that read the
  injected maps, which a plain StyleGAN2 has not) and the map scales train
  in both modes; what G0 brought (the leading slices, every other array)
  stays bit-identical when frozen and moves when fine-tuned. The first step
  gives the slices no gradient (the scales start at 0), the second does.
  """
  masks, start, end = _train_steps(_grafted_config(mode))
  assert masks, "concat injection must widen some synthesis arrays"
  assert any(k.endswith("affine/weight") for k in masks)
  assert any(k.endswith("conv0/weight") or k.endswith("torgb/weight")
             for k in masks)
  before = traverse_util.flatten_dict(start["params"]["synthesis"], sep="/")
  after = traverse_util.flatten_dict(end["params"]["synthesis"], sep="/")
  g0_moved = {}
  for name, a in after.items():
    delta = np.abs(np.asarray(a) - np.asarray(before[name]))
    if name.startswith("inject_scale_"):
      assert delta > 0, name
      continue
    mask = masks.get(name, np.zeros(np.shape(a)))
    if name in masks:
      assert np.max(delta * mask) > 0, name  # The grafted slice trains.
    g0_moved[name] = np.max(delta * (1 - mask))
  if mode == "frozen":
    assert max(g0_moved.values()) == 0
  else:  # Every array G0 brought that the loss reaches moves.
    assert all(g0_moved[k] > 0 for k in masks), g0_moved
    assert np.mean([v > 0 for v in g0_moved.values()]) > 0.5


# --- The entry point ---------------------------------------------------------

# G0 and both schemes at 16x16, tiny (TINY and MATCHED_TINY as overrides).
_CLI_TINY = {
    **{f"all:{k}": v for k, v in MATCHED_TINY.items()
       if k.startswith("data.generator.random.")},
    "all:model.num_filters": 8, "all:eval.batch_size": 8,
    "generative:model.receiver_channel_base": 32,
    "generative:model.receiver_channel_max": 8,
    "generative:model.receiver_res_blocks": 0,
}


_STEPS = 10  # A tiny GenerativeJSCC step costs ~1.1 DeepJSCC steps.


def _matched_prior(out, tfds_dir, *flags):
  overrides = [f"--override={k}={json.dumps(v)}" for k, v in _CLI_TINY.items()]
  cmd = [sys.executable, "-m", "experiments.matched_prior",
         f"--output_dir={out}", "--resolution=16", f"--steps={_STEPS}",
         "--num_images=8", "--batch_size=8", "--snrs_db=-5,5",
         f"--override=all:data.tfds_dir={tfds_dir}",
         "--override=inverse:ilo.steps=[3,2]", *overrides, *flags]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def test_entry_point_trains_compares_resumes_and_gathers_sections(tmp_path):
  """One (rho, loss) of `python -m experiments.matched_prior` at 16x16.

  Both schemes train _STEPS steps on the same loss and DeepJSCC once more for
  GenerativeJSCC's FLOPs (more steps: a GenerativeJSCC step costs more);
  InverseJSCC restores the equal-steps DeepJSCC run's receptions; the
  table's paired differences are the per-image arrays' (recomputed here);
  a rerun trains and searches nothing.
  """
  out, tfds = tmp_path / "out", tmp_path / "tfds"
  first = _matched_prior(out, tfds, "--rhos=1/48", "--losses=mse",
                         "--override=all:eval.lpips_nets=[]",
                         "--override=inverse:metrics.lpips_nets=[]")
  assert first.count("[train]") == 3 and first.count("[invert]") == 1
  flops = json.loads((out / "flops.json").read_text())
  eq = round(_STEPS * flops["generative_rho1_48_mse"] /
             flops["deepjscc_rho1_48_mse"])
  assert eq > _STEPS
  base = out / "rho1_48" / "mse"
  assert sorted(p.name for p in base.iterdir() if p.name.endswith(
      tuple("0123456789"))) == sorted([
          f"deepjscc_{_STEPS}", f"generative_{_STEPS}", f"deepjscc_{eq}",
          f"inverse_from_deepjscc_{_STEPS}"])
  deep = dict(np.load(base / "eval" / f"deepjscc_{_STEPS}" / "per_image.npz"))
  gen = dict(np.load(base / "eval" / f"generative_{_STEPS}" / "per_image.npz"))
  np.testing.assert_array_equal(deep["indices"], gen["indices"])
  assert deep["psnr"].shape == gen["psnr"].shape == (2, 8)
  table = (out / "table.md").read_text()
  diff = np.mean(gen["psnr"][0] - deep["psnr"][0])
  assert f"| -5 dB | PSNR (dB) | " in table
  assert f"{diff:+.2f} ±" in table.split("Equal FLOPs")[0], table
  assert f"Equal FLOPs (DeepJSCC {eq} steps" in table
  inv = dict(np.load(base / f"inverse_from_deepjscc_{_STEPS}" /
                     "per_image.npz"))
  np.testing.assert_array_equal(inv["indices"], deep["indices"])
  np.testing.assert_array_equal(inv["originals"], deep["originals"])
  assert inv["examples"].shape == (2, 8, 16, 16, 3)
  inv_diff = np.mean(inv["psnr"][1] - deep["psnr"][1])
  section = table.split("InverseJSCC (5 search steps")[1]
  assert f"| 5 dB | PSNR (dB) | " in section
  assert f"{inv_diff:+.2f} ±" in section.split("GenerativeJSCC against")[0]

  again = _matched_prior(out, tfds, "--rhos=1/48", "--losses=mse",
                         "--override=all:eval.lpips_nets=[]",
                         "--override=inverse:metrics.lpips_nets=[]")
  assert "[train]" not in again and "[evaluate]" not in again
  assert "[invert]" not in again
  assert (out / "table.md").read_text() == table


def test_sections_of_several_commands_gather_largest_rho_first(tmp_path):
  for rho, loss in (("1/768", "mse"), ("1/192", "mse"), ("1/192", "lpips"),
                    ("1/384", "lpips")):
    p, q = rho.split("/")
    base = tmp_path / f"rho{p}_{q}" / loss
    base.mkdir(parents=True)
    mp.write_section(str(base), f"### {rho} {loss}\n\ntable\n",
                     [dict(rho=rho, loss=loss)])
  (tmp_path / "rho1_192" / "eval").mkdir()  # No table: not a section.
  (tmp_path / "grids").mkdir()
  assert mp.gather_sections(str(tmp_path)) == 4
  table = (tmp_path / "table.md").read_text()
  assert [line for line in table.splitlines() if line.startswith("###")] == [
      "### 1/192 lpips", "### 1/192 mse", "### 1/384 lpips", "### 1/768 mse"]
  rows = json.loads((tmp_path / "summary.json").read_text())
  assert [(r["rho"], r["loss"]) for r in rows] == [
      ("1/192", "lpips"), ("1/192", "mse"), ("1/384", "lpips"),
      ("1/768", "mse")]
