"""The experiment matrix behind the paper's figures, as resumable commands.

`plan(matrix)` lists the commands `python -m experiments.reproduce` runs,
in order, each a `Step` of the project's own command lines:

1. `gjscc_jax.data.prepare` (datasets other than 'sample': once, ahead of
   the jobs that read it);
2. per bandwidth ratio rho: DeepJSCC training (`experiments.train`,
   `deepjscc_ffhq`), GenerativeJSCC training (`generative_ffhq` with the
   converted StyleGAN2), InverseJSCC on that DeepJSCC run
   (`experiments.invert`, `inverse_ffhq`), and the separation baseline per
   codec (`experiments.separation`), with the 'digital' scheme also over
   5G LDPC + QAM (`experiments.separation --link=ldpc`; not a default
   scheme: ask for it with `--schemes=...,digital`);
   With `lambdas` (the perception-distortion sweep), each trained scheme
   (DeepJSCC, GenerativeJSCC) is trained once per lambda of its loss
   MSE + lambda * LPIPS (`--config.loss.lambda_lpips`), each in its own
   run directory `<scheme>_<rho>_lambda<lambda>`, labelled
   '<Scheme> (λ <lambda>)'; InverseJSCC restores the DeepJSCC run of the
   first lambda;
3. `experiments.evaluate` over all of them: the same test images (the first
   `num_images` of the test split) and channel for every scheme, PSNR /
   SSIM / LPIPS vs SNR with a panel per rho, and metric vs rho.

`run(steps, state_path)` runs them one after the other as subprocesses and
records each finished step (its command line) in `state_path`: a rerun
skips the steps recorded with the same command, and reruns the others (a
step stopped half-way resumes inside its own tool: training from its last
checkpoint, inversion from its finished images).

Two scales: 'paper' (the configs' paper settings, rho in {1/768, 1/384,
1/192}, the paper's SNRs) and 'demo' (the `:demo` configs on the embedded
sample images at 64x64 on CPU, rho in {1/192, 1/48}, SNRs -5 ... 15 dB).
"""

import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from typing import Optional, Sequence

from gjscc_jax import channel as channel_lib

#: The schemes a matrix can hold.
SCHEMES = ("deepjscc", "generative", "inverse", "separation", "digital")
#: The schemes a matrix holds unless told otherwise.
DEFAULT_SCHEMES = ("deepjscc", "generative", "inverse", "separation")
#: Defaults per scale.
SCALES = {
    "paper": dict(rhos=("1/768", "1/384", "1/192"),
                  snrs=(-5.0, -3.0, -1.0, 0.0, 1.0, 3.0, 5.0),
                  data="celebahq", resolution=256, num_images=None,
                  lpips=("vgg", "alex"), realisations=4,
                  codecs=("heif", "jpeg2000")),
    "demo": dict(rhos=("1/192", "1/48"), snrs=(-5.0, 0.0, 5.0, 10.0, 15.0),
                 data="sample", resolution=64, num_images=16,
                 lpips=("alex",), realisations=2,
                 codecs=("heif", "jpeg2000")),
}
#: Labels of the schemes' curves.
LABELS = {"deepjscc": "DeepJSCC", "generative": "GenerativeJSCC",
          "inverse": "InverseJSCC"}
#: Encoder downsampling of the DeepJSCC and GenerativeJSCC configs.
DOWNSAMPLING = 16


@dataclasses.dataclass
class Matrix:
  """What to reproduce. None fields take the scale's default (`SCALES`).

  Attributes:
    output_dir: root of every run's directory.
    scale: 'paper' or 'demo'.
    rhos: bandwidth ratios ('1/192', ...); each must be C/1536 with an even
      C (the encoders downsample 16x).
    snrs: test SNRs in dB.
    data: dataset name of training and test images ('celebahq', 'ffhq',
      'image_folder', 'sample').
    image_dir: its image folder (not for 'sample').
    tfds_dir: where prepared datasets lie (None: TFDS's default).
    resolution: image side in pixels.
    weights: converted StyleGAN2 directory (GenerativeJSCC's decoder and
      InverseJSCC's prior); required at paper scale, random at demo scale.
    num_images: test images (the first N of the test split; None: all).
    schemes: the schemes to run (`SCHEMES`).
    codecs: the separation baseline's codecs.
    lpips: LPIPS backbones reported.
    realisations: channel realisations per test image and SNR.
    train_steps: training steps of every training run (None: the config's).
    deepjscc_flags: more flags of every DeepJSCC `experiments.train`
      command (e.g. `--config.batch_size=64`).
    generative_flags: the same for GenerativeJSCC.
    invert_flags: more flags of every `experiments.invert` command.
    separation_flags: more flags of every `experiments.separation` command.
    evaluate_flags: more flags of the `experiments.evaluate` command.
    lambdas: LPIPS weights of the trained schemes' losses, one training
      run per scheme, lambda and rho (None: one run with the config's).
  """
  output_dir: str
  scale: str = "paper"
  rhos: Optional[Sequence[str]] = None
  snrs: Optional[Sequence[float]] = None
  data: Optional[str] = None
  image_dir: Optional[str] = None
  tfds_dir: Optional[str] = None
  resolution: Optional[int] = None
  weights: Optional[str] = None
  num_images: Optional[int] = None
  schemes: Sequence[str] = DEFAULT_SCHEMES
  codecs: Optional[Sequence[str]] = None
  lpips: Optional[Sequence[str]] = None
  realisations: Optional[int] = None
  train_steps: Optional[int] = None
  deepjscc_flags: Sequence[str] = ()
  generative_flags: Sequence[str] = ()
  invert_flags: Sequence[str] = ()
  separation_flags: Sequence[str] = ()
  evaluate_flags: Sequence[str] = ()
  lambdas: Optional[Sequence[float]] = None

  def resolved(self):
    """A copy with the scale's defaults filled in, checked.

    Raises:
      ValueError: naming the fix, for an unknown scale or scheme, a ratio
        the encoders cannot reach, or a paper-scale matrix with
        GenerativeJSCC or InverseJSCC but no `weights`.
    """
    if self.scale not in SCALES:
      raise ValueError(f"scale={self.scale!r}: choose one of "
                       f"{', '.join(SCALES)}.")
    defaults = SCALES[self.scale]
    filled = {k: (getattr(self, k) if getattr(self, k) is not None else v)
              for k, v in defaults.items()}
    if self.num_images is None and self.scale == "demo":
      filled["num_images"] = defaults["num_images"]
    m = dataclasses.replace(self, **filled)
    unknown = sorted(set(m.schemes) - set(SCHEMES))
    if unknown or not m.schemes:
      raise ValueError(f"schemes={list(m.schemes)}: choose among "
                       f"{', '.join(SCHEMES)}.")
    if "inverse" in m.schemes and "deepjscc" not in m.schemes:
      raise ValueError("InverseJSCC restores the DeepJSCC runs: add deepjscc "
                       "to the schemes.")
    for rho in m.rhos:
      channel_lib.latent_channels_for_bcr(rho, downsampling=DOWNSAMPLING)
    if m.lambdas is not None:
      lambdas = [float(l) for l in m.lambdas]
      if (not lambdas or any(not l >= 0 for l in lambdas)
          or len(set(lambdas)) != len(lambdas)):
        raise ValueError(f"lambdas={list(m.lambdas)}: give distinct LPIPS "
                         "weights >= 0, e.g. --lambdas=0,0.01,0.1,1.")
      if not {"deepjscc", "generative"} & set(m.schemes):
        raise ValueError("--lambdas sweeps the trained schemes' loss: add "
                         "deepjscc or generative to the schemes.")
      m = dataclasses.replace(m, lambdas=tuple(lambdas))
    if (m.scale == "paper" and not m.weights and
        {"generative", "inverse"} & set(m.schemes)):
      raise ValueError(
          "GenerativeJSCC and InverseJSCC need a converted StyleGAN2: pass "
          "--weights=DIR (python -m weights_convert stylegan2 FILE.pkl DIR), "
          "or --schemes=deepjscc,separation.")
    if m.data != "sample" and not m.image_dir and not m.tfds_dir:
      raise ValueError(
          f"data={m.data!r} needs --image_dir (the folder of its images) or "
          "--tfds_dir holding it prepared; see docs/data.md.")
    return m


@dataclasses.dataclass
class Step:
  """One command of the matrix.

  Attributes:
    name: unique step name, e.g. 'deepjscc_1_192'.
    argv: the command line (`python -m MODULE ...`), `sys.executable` first.
    output: the directory it writes.
  """
  name: str
  argv: list
  output: str

  def command(self):
    """The command as one shell line."""
    return shlex.join(["python"] + self.argv[1:])


def rho_name(rho):
  """'1_192' for '1/192': the rho part of directory and step names."""
  return str(channel_lib.parse_ratio(rho)).replace("/", "_")


def lambda_name(lam):
  """'lambda0.01' for 0.01: the lambda part of directory and step names."""
  return f"lambda{float(lam):g}"


def _data_flags(m, prefix):
  flags = [f"{prefix}name={m.data}", f"{prefix}resolution={m.resolution}"]
  if m.image_dir:
    flags.append(f"{prefix}image_dir={m.image_dir}")
  if m.tfds_dir:
    flags.append(f"{prefix}tfds_dir={m.tfds_dir}")
  return flags


def _tuple(values):
  """A tuple as `--config.x=` reads it: `(-5.0,0.0,)`, `("alex",)`."""
  return "(" + "".join(f"{json.dumps(v)}," for v in values) + ")"


def _module(name, *flags):
  return [sys.executable, "-m", name, *flags]


def plan(matrix):
  """The `Step`s of `matrix`, in the order they must run."""
  m = matrix.resolved()
  root = m.output_dir
  demo = m.scale == "demo"
  steps = []
  if m.data != "sample" and m.image_dir:
    flags = [f"--name={m.data}", f"--image_dir={m.image_dir}",
             f"--resolution={m.resolution}"]
    if m.tfds_dir:
      flags.append(f"--tfds_dir={m.tfds_dir}")
    steps.append(Step("prepare", _module("gjscc_jax.data.prepare", *flags),
                      os.path.join(root, "prepare")))
  snrs = ",".join(f"{s:g}" for s in m.snrs)
  train_common = ["--noeval_at_end", *_data_flags(m, "--config.data.")]
  if m.train_steps is not None:
    train_common += [f"--config.total_steps={m.train_steps}",
                     f"--config.checkpoint_every={m.train_steps}",
                     f"--config.log_every={max(1, min(25, m.train_steps))}",
                     "--config.optimizer.warmup_steps="
                     f"{max(1, min(50, m.train_steps // 10))}"]
  runs = []
  for rho in m.rhos:
    r = rho_name(rho)
    arg = f"rho={rho}" + (",demo" if demo else "")
    for scheme, config, extra in (
        ("deepjscc", "deepjscc_ffhq", m.deepjscc_flags),
        ("generative", "generative_ffhq", m.generative_flags)):
      if scheme not in m.schemes:
        continue
      weights = (f",weights={m.weights}"
                 if scheme == "generative" and m.weights else "")
      for lam in m.lambdas or (None,):
        name = f"{scheme}_{r}" + ("" if lam is None
                                  else f"_{lambda_name(lam)}")
        loss = ([] if lam is None
                else [f"--config.loss.lambda_lpips={float(lam)!r}"])
        workdir = os.path.join(root, name)
        steps.append(Step(name, _module(
            "experiments.train", f"--config={config}:{arg}{weights}",
            f"--output_dir={workdir}", *train_common, *loss, *extra), workdir))
        runs.append((LABELS[scheme] + ("" if lam is None
                                       else f" (λ {float(lam):g})"), workdir))
    if "inverse" in m.schemes:
      out = os.path.join(root, f"inverse_{r}")
      flags = [f"--config=inverse_ffhq{':demo' if demo else ''}",
               "--config.deepjscc_checkpoint="
               + os.path.join(root, f"deepjscc_{r}" + (
                   f"_{lambda_name(m.lambdas[0])}" if m.lambdas else "")),
               f"--config.output_dir={out}",
               "--config.snrs_db=" + _tuple(float(s) for s in m.snrs),
               "--config.metrics.lpips_nets=" + _tuple(m.lpips),
               f"--config.tag=rho {rho}",
               *_data_flags(m, "--config.data.")]
      if m.weights:
        flags.append(f"--config.generator_weights={m.weights}")
      if m.num_images is not None:
        flags.append(f"--config.num_images={m.num_images}")
      steps.append(Step(f"inverse_{r}", _module(
          "experiments.invert", *flags, *m.invert_flags), out))
      runs.append((LABELS["inverse"], out))
    for link in [l for l in ("separation", "digital") if l in m.schemes]:
      for codec in m.codecs:
        name = f"{'separation' if link == 'separation' else 'ldpc'}_{codec}"
        out = os.path.join(root, f"{name}_{r}")
        flags = [f"--codec={codec}", f"--data={m.data}",
                 f"--resolution={m.resolution}", f"--rho={rho}",
                 f"--snrs_db={snrs}", f"--lpips={','.join(m.lpips)}",
                 f"--output_dir={out}"]
        if link == "digital":
          flags.append("--link=ldpc")
        if m.image_dir:
          flags.append(f"--image_dir={m.image_dir}")
        if m.tfds_dir:
          flags.append(f"--tfds_dir={m.tfds_dir}")
        if m.num_images is not None:
          flags.append(f"--num_images={m.num_images}")
        steps.append(Step(f"{name}_{r}", _module(
            "experiments.separation", *flags, *m.separation_flags), out))
        runs.append((_separation_label(codec, link), out))
  figures = os.path.join(root, "figures")
  flags = [f"--output_dir={figures}", *(f"--run={l}={d}" for l, d in runs),
           f"--snrs_db={snrs}", f"--realisations={m.realisations}",
           f"--lpips={','.join(m.lpips)}", "--data.split=test",
           *_data_flags(m, "--data.")]
  if m.num_images is not None:
    flags.append(f"--data.num_examples={m.num_images}")
  steps.append(Step("evaluate", _module("experiments.evaluate", *flags,
                                        *m.evaluate_flags), figures))
  return steps


def _separation_label(codec, link="separation"):
  from gjscc_jax import separation  # pylint: disable=import-outside-toplevel
  if link == "digital":
    from gjscc_jax import digital  # pylint: disable=import-outside-toplevel
    return digital.label(separation.get_codec(codec))
  return separation.default_label(separation.get_codec(codec))


def _load_state(path):
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def _save_state(path, state):
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(state, f, indent=1)
  os.replace(tmp, path)


def pending(steps, state_path):
  """The steps not recorded as done with the same command line."""
  done = _load_state(state_path)
  return [s for s in steps if done.get(s.name, {}).get("argv") != s.argv[1:]]


def run(steps, state_path, *, cwd=None, env=None, log=print):
  """Runs the steps not done yet, in order; records each when it succeeds.

  Args:
    steps: from `plan`.
    state_path: the JSON file of finished steps (name -> command line,
      wall and CPU seconds).
    cwd: working directory of the commands (the repository root, so that
      `experiments` imports).
    env: their environment (default: this process's).
    log: called with one line per step.

  Returns:
    `{name: wall seconds}` of the steps run now.

  Raises:
    RuntimeError: naming the step and its command, when one fails (its
      own error is above, on its stderr); the steps before it stay done.
  """
  todo = {s.name for s in pending(steps, state_path)}
  timings = {}
  os.makedirs(os.path.dirname(os.path.abspath(state_path)), exist_ok=True)
  for i, step in enumerate(steps, 1):
    if step.name not in todo:
      log(f"[{i}/{len(steps)}] {step.name}: done, skipped")
      continue
    log(f"[{i}/{len(steps)}] {step.name}: {step.command()}")
    start, cpu = time.perf_counter(), os.times()
    status = subprocess.run(step.argv, cwd=cwd, env=env,
                            check=False).returncode
    end = os.times()
    wall = time.perf_counter() - start
    if status:
      raise RuntimeError(
          f"Step {step.name} failed with exit status {status} (its error is "
          f"above); fix it and rerun to resume from there: {step.command()}")
    state = _load_state(state_path)
    state[step.name] = dict(
        argv=step.argv[1:], wall_s=round(wall, 1),
        cpu_s=round(end.children_user + end.children_system
                    - cpu.children_user - cpu.children_system, 1))
    _save_state(state_path, state)
    timings[step.name] = wall
    log(f"[{i}/{len(steps)}] {step.name}: finished in {wall:.0f} s")
  return timings
