"""Intermediate Layer Optimization (ILO) of one image, as a pure function.

ILO (Daras, Dean, Jalal and Dimakis, ICML 2021) explains an observation `y`
with a pretrained StyleGAN2 `G` by optimising, in progressive rounds,

* round 0: the W+ latents `ws` (one style row per layer) and the noise maps;
* round `r > 0`: the same, plus the feature map `x` that enters block `r`
  (the generator is run from block `r` on). It starts from the output of
  block `r - 1` at the end of round `r - 1`, so every round keeps what the
  previous one found and adds freedom closer to the pixels.

Every round runs `steps[r]` Adam steps (fresh moments) on

  `mse_weight * MSE(A(G), y) + lambda_lpips * LPIPS(A(G), y)
   + geocross_weight * geocross(ws[2r:])`,

where `A` is a forward operator (see `forward_operators`), with ILO's
learning-rate schedule `lr(t) = lr * ramp_down(t) * ramp_up(t)` over the
round (`t = step / steps[r]`): linear warm-up over the first `warmup` of the
round and a cosine ramp-down over the last `rampdown`. After each step the
variables are optionally projected: noise maps (and optionally W+ rows) back
to their norms at the start of the round, and the deviation of each variable
from its round-start value onto an L1 ball. The generator image with the
lowest `best_by` term over all steps of all rounds is returned.

Choices that differ from the ILO code, deliberately:

* Latents start at the generator's `w_avg` in W+ (ILO: random `z` through a
  Gaussian fit of the mapping network). With that start a sphere constraint
  on W+ rows is not meaningful, so `project_latents` defaults to False.
* When round `r > 0` starts at block `r`, the RGB skip image of blocks
  `0..r-1` is kept, frozen at its value from the end of round `r - 1`; ILO's
  code drops it. The output therefore is a complete StyleGAN2 image.
* The best iterate is kept over all rounds (ILO: over the last round).
* Geocross acts on W+ rows `2r` onwards of this image (ILO's code slices the
  batch axis by mistake).
* Noise maps of blocks `r .. r + noise_blocks_ahead` are optimised in round
  `r` (ILO: noise indices below `5 + 2r`, i.e. blocks up to `r + 2`; noises of
  earlier blocks have no effect from round `r` on). The others stay at their
  random initial value.

Everything is a pure function of one image: `invert_one` runs the whole
search (each round one `lax.scan` of `round_step`), and `start_search`,
`start_round`, `round_step` and `end_round` are its parts; `search` vmaps
them over images and shards the batch over devices. Nothing syncs with the
host.
"""

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gjscc_jax.inverse import projections

#: Terms the best iterate can be chosen by.
BEST_BY = ("mse", "lpips", "loss")


def _as_round_tuple(name, value, rounds, positive=True):
  """A scalar, a 1-tuple or one value per round -> `rounds` floats."""
  if value is None:
    return None
  if isinstance(value, (int, float)):
    value = (value,) * rounds
  value = tuple(float(v) for v in value)
  if len(value) == 1:
    value *= rounds
  if len(value) != rounds:
    raise ValueError(
        f"{name} needs one value per round ({rounds} rounds from `steps`); "
        f"got {len(value)}: {value}. Pass one value to use it in every round.")
  if any(not math.isfinite(v) or v < 0 or (positive and v == 0)
         for v in value):
    raise ValueError(f"{name} must be finite and "
                     f"{'> 0' if positive else '>= 0'}; got {value}.")
  return value


@dataclasses.dataclass(frozen=True)
class ILOConfig:
  """Knobs of the search (hashable; defaults are ILO's).

  Attributes:
    steps: Adam steps per round; round `r` starts at block `r`.
    learning_rates: Peak learning rate, a scalar or one per round.
    warmup: Fraction of a round with a linear learning-rate warm-up.
    rampdown: Fraction of a round (at its end) with a cosine ramp-down.
    mse_weight: Weight of the MSE term, a scalar or one per round.
    lambda_lpips: Weight of the LPIPS term, a scalar or one per round.
    geocross_weight: Weight of the geocross regulariser on the W+ rows the
      round uses (`ws[2r:]`).
    noise_blocks_ahead: Round `r` optimises the noise maps of blocks
      `r .. r + noise_blocks_ahead`.
    project_noises: Keep each optimised noise map at its round-start norm.
    project_latents: Keep each W+ row at its round-start norm.
    latent_radius: L1 radius of the per-round deviation of W+ (a scalar or
      one per round); None disables the projection.
    noise_radius: The same for each noise map.
    feature_radius: The same for the optimised feature map `x`.
    best_by: Term that selects the returned iterate: 'mse' (ILO), 'lpips' or
      'loss' (the weighted objective without the regulariser).
  """
  steps: tuple[int, ...] = (50, 50, 25, 25)
  learning_rates: Any = 0.1
  warmup: float = 0.05
  rampdown: float = 0.75
  mse_weight: Any = 1.0
  lambda_lpips: Any = 1.0
  geocross_weight: float = 0.01
  noise_blocks_ahead: int = 2
  project_noises: bool = True
  project_latents: bool = False
  latent_radius: Any = None
  noise_radius: Any = None
  feature_radius: Any = None
  best_by: str = "mse"

  def __post_init__(self):
    steps = tuple(int(s) for s in self.steps)
    if not steps or any(s < 1 for s in steps):
      raise ValueError(f"steps must be a non-empty list of positive step "
                       f"counts, one per round; got {self.steps}.")
    object.__setattr__(self, "steps", steps)
    rounds = len(steps)
    for name, positive in (("learning_rates", True), ("mse_weight", False),
                           ("lambda_lpips", False), ("latent_radius", True),
                           ("noise_radius", True), ("feature_radius", True)):
      object.__setattr__(self, name, _as_round_tuple(
          name, getattr(self, name), rounds, positive))
    if not (0 < self.warmup <= 1 and 0 < self.rampdown <= 1):
      raise ValueError(f"warmup={self.warmup} and rampdown={self.rampdown} "
                       "must be fractions of a round in (0, 1].")
    if self.geocross_weight < 0 or self.noise_blocks_ahead < 0:
      raise ValueError("geocross_weight and noise_blocks_ahead must be >= 0.")
    if self.best_by not in BEST_BY:
      raise ValueError(f"best_by={self.best_by!r}: use one of {BEST_BY}.")

  @property
  def num_rounds(self) -> int:
    return len(self.steps)

  @property
  def total_steps(self) -> int:
    return sum(self.steps)

  @classmethod
  def from_config(cls, config) -> "ILOConfig":
    """Builds it from a ConfigDict with (a subset of) the same fields."""
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in config.items() if k in fields}
    unknown = sorted(set(config.keys()) - fields)
    if unknown:
      raise ValueError(f"Unknown ILO settings {unknown}; valid ones are "
                       f"{sorted(fields)}.")
    for k, v in values.items():
      if isinstance(v, list):
        values[k] = tuple(v)
    return cls(**values)


def learning_rate(step, steps, peak, warmup=0.05, rampdown=0.75):
  """ILO's per-round learning rate at `step` (0-based) of `steps`.

  `peak * (0.5 - 0.5 cos(pi * min(1, (1 - t) / rampdown))) * min(1, t /
  warmup)` with `t = step / steps`: 0 at the first step, `peak` in the
  middle, falling to `peak * (0.5 - 0.5 cos(pi / (rampdown * steps)))` at
  the last step.
  """
  t = jnp.asarray(step, jnp.float32) / steps
  down = jnp.minimum(1.0, (1.0 - t) / rampdown)
  down = 0.5 - 0.5 * jnp.cos(jnp.pi * down)
  return peak * down * jnp.minimum(1.0, t / warmup)


class Variables(NamedTuple):
  """What one image's search optimises or carries between rounds.

  All float32, whatever the generator's compute dtype: Adam's moments and
  updates are those of float32 variables, and a bfloat16 generator only
  rounds the copies its layers read.

  Attributes:
    ws: W+ latents `(num_ws, w_dim)`.
    noises: One `(r, r, 1)` map per noise layer.
    x: Feature map entering the round's start block (None in round 0).
    img: Skip image entering the start block, frozen (None in round 0).
  """
  ws: jax.Array
  noises: tuple[jax.Array, ...]
  x: jax.Array | None = None
  img: jax.Array | None = None


class Result(NamedTuple):
  """The outcome of one image's search (a pytree; batched under vmap).

  Attributes:
    image: The best generator output `(R, R, 3)`, in [-1, 1] (not clipped).
    best: Its `best_by` term.
    terms: Per-step history `{'loss', 'mse', 'lpips', 'objective'}`, each
      `(total_steps,)`: 'loss' is `mse_weight * mse + lambda * lpips`,
      'objective' adds the regulariser (what Adam minimised).
    variables: The variables after the last step.
  """
  image: jax.Array
  best: jax.Array
  terms: dict[str, jax.Array]
  variables: Variables


Objective = Callable[[Any, jax.Array, Any, jax.Array], dict]


def initial_variables(generator, params, key) -> Variables:
  """W+ at `w_avg` in every row; noise maps drawn from N(0, 1) with `key`."""
  w_avg = jnp.asarray(generator.w_avg(params), jnp.float32)
  ws = jnp.broadcast_to(w_avg, (generator.num_ws, generator.w_dim))
  keys = jax.random.split(key, len(generator.noise_blocks))
  noises = tuple(jax.random.normal(k, shape, jnp.float32) for k, shape in
                 zip(keys, generator.noise_shapes()))
  return Variables(ws, noises)


def _noise_split(generator, round_index, ahead):
  """Indices of the noise layers optimised in a round, and of the others."""
  lo, hi = round_index, round_index + ahead
  chosen = tuple(i for i, b in enumerate(generator.noise_blocks)
                 if lo <= b <= hi)
  others = tuple(i for i in range(len(generator.noise_blocks))
                 if i not in chosen)
  return chosen, others


class RoundState(NamedTuple):
  """One image's state within a round (a pytree; the carry of its steps).

  Attributes:
    trainable: `{'ws', 'noises'[, 'x']}`: what the round optimises.
    opt_state: Adam's state for `trainable`.
    anchor: `trainable` at the start of the round (for the L1 balls).
    norms: Round-start norms of W+ rows and optimised noise maps.
    fixed_noises: The noise maps this round leaves alone.
    img: The frozen skip image entering the start block (None in round 0).
    best_image: The best generator image so far `(R, R, 3)`.
    best_value: Its `best_by` term.
  """
  trainable: dict
  opt_state: Any
  anchor: dict
  norms: dict
  fixed_noises: tuple
  img: Any
  best_image: jax.Array
  best_value: jax.Array


def _adam(config, r):
  schedule = lambda count: learning_rate(
      count, config.steps[r], config.learning_rates[r], config.warmup,
      config.rampdown)
  return optax.adam(schedule, b1=0.9, b2=0.999, eps=1e-8)


def start_search(generator, frozen, key):
  """`(variables, best_image, best_value, run_key)` before round 0."""
  init_key, run_key = jax.random.split(key)
  variables = initial_variables(generator, frozen["generator"], init_key)
  res = generator.resolution
  return (variables, jnp.zeros((res, res, 3), jnp.float32),
          jnp.asarray(jnp.inf, jnp.float32), run_key)


def start_round(generator, config, r, variables, best_image, best_value
                ) -> RoundState:
  """The state at the start of round `r` (fresh Adam moments)."""
  opt_idx, fixed_idx = _noise_split(generator, r, config.noise_blocks_ahead)
  trainable = dict(ws=variables.ws,
                   noises=tuple(variables.noises[i] for i in opt_idx))
  if r > 0:
    trainable["x"] = variables.x
  norms = dict(ws=projections.vector_norms(variables.ws, (-1,)),
               noises=tuple(projections.vector_norms(n, (0, 1))
                            for n in trainable["noises"]))
  return RoundState(trainable, _adam(config, r).init(trainable), trainable,
                    norms, tuple(variables.noises[i] for i in fixed_idx),
                    variables.img, best_image, best_value)


def _all_noises(generator, config, r, state, opt_noises):
  opt_idx, fixed_idx = _noise_split(generator, r, config.noise_blocks_ahead)
  noises = [None] * len(generator.noise_blocks)
  for i, n in zip(opt_idx + fixed_idx, opt_noises + state.fixed_noises):
    noises[i] = n
  return tuple(noises)


def _project(config, r, state, tr):
  tr = dict(tr)
  if config.project_latents:
    tr["ws"] = projections.preserve_norm(tr["ws"], state.norms["ws"], (-1,))
  if config.project_noises:
    tr["noises"] = tuple(projections.preserve_norm(n, m, (0, 1)) for n, m
                         in zip(tr["noises"], state.norms["noises"]))
  for name, radii in (("ws", config.latent_radius),
                      ("x", config.feature_radius)):
    if radii is not None and name in tr:
      tr[name] = projections.project_deviation(tr[name], state.anchor[name],
                                               radii[r])
  if config.noise_radius is not None:
    tr["noises"] = tuple(
        projections.project_deviation(n, a, config.noise_radius[r])
        for n, a in zip(tr["noises"], state.anchor["noises"]))
  return tr


def round_step(generator, config, objective, r, frozen, target, key,
               state: RoundState, step_index):
  """One Adam step of round `r`: `(state, terms)`; `step_index` counts steps
  over all rounds (it keys the step: `fold_in(key, step_index)`)."""
  mse_w, lpips_w = config.mse_weight[r], config.lambda_lpips[r]

  def loss_fn(tr):
    image = generator.synthesize_one(
        frozen["generator"], tr["ws"],
        _all_noises(generator, config, r, state, tr["noises"]), r,
        tr.get("x"), state.img)
    terms = dict(objective(frozen, image, target,
                           jax.random.fold_in(key, step_index)))
    terms.setdefault("lpips", jnp.zeros((), jnp.float32))
    terms["loss"] = mse_w * terms["mse"] + lpips_w * terms["lpips"]
    regulariser = config.geocross_weight * projections.geocross(
        tr["ws"][2 * r:]) if config.geocross_weight else 0.0
    terms["objective"] = terms["loss"] + regulariser
    return terms["objective"], (terms, image)

  (_, (terms, image)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.trainable)
  updates, opt_state = _adam(config, r).update(grads, state.opt_state,
                                               state.trainable)
  trainable = _project(config, r, state,
                       optax.apply_updates(state.trainable, updates))
  value = terms[config.best_by]
  better = value < state.best_value
  return state._replace(
      trainable=trainable, opt_state=opt_state,
      best_image=jnp.where(better, image, state.best_image),
      best_value=jnp.where(better, value, state.best_value)), terms


def end_round(generator, config, r, frozen, state: RoundState):
  """`(variables, best_image, best_value)` after round `r`; before a next
  round, `x`/`img` become block `r`'s output (the next round's input)."""
  tr = state.trainable
  variables = Variables(tr["ws"], _all_noises(generator, config, r, state,
                                              tr["noises"]),
                        tr.get("x"), state.img)
  if r + 1 < config.num_rounds:
    x, img = generator.blocks_one(frozen["generator"], variables.ws,
                                  variables.noises, r, r + 1, variables.x,
                                  variables.img)
    # A bfloat16 generator returns bfloat16 features; the next round
    # optimises them (and keeps Adam's moments) in float32.
    variables = variables._replace(x=x.astype(jnp.float32),
                                   img=img.astype(jnp.float32))
  return variables, state.best_image, state.best_value


def check_rounds(generator, config):
  if config.num_rounds > generator.num_blocks:
    raise ValueError(
        f"{config.num_rounds} ILO rounds need {config.num_rounds} generator "
        f"blocks; this {generator.resolution}x{generator.resolution} "
        f"generator has {generator.num_blocks}. Use fewer `steps` entries.")


def invert_one(generator, config: ILOConfig, objective: Objective, frozen,
               target, key) -> Result:
  """Runs every round of ILO for ONE image (no batch axis anywhere).

  Each round is one `lax.scan` of `round_step`.

  Args:
    generator: A `LayeredGenerator`.
    config: An `ILOConfig`; `len(config.steps) <= generator.num_blocks`.
    objective: `(frozen, image, target, key) -> {'mse': (), 'lpips': ()}`,
      the data terms of the generator image `image` `(R, R, 3)` against this
      image's `target`, given a fresh PRNG key every step (e.g. a
      `forward_operators.DataTerms`). 'lpips' may be left out.
    frozen: Replicated parameters; `frozen['generator']` are the generator's,
      the rest is passed to `objective` untouched.
    target: This image's target pytree, passed to `objective`.
    key: This image's PRNG key (noise initialisation and every step's key).

  Returns:
    A `Result`.
  """
  check_rounds(generator, config)
  variables, best_image, best_value, run_key = start_search(
      generator, frozen, key)
  history = []
  for r in range(config.num_rounds):
    state = start_round(generator, config, r, variables, best_image,
                        best_value)
    step = lambda s, i, r=r: round_step(generator, config, objective, r,
                                        frozen, target, run_key, s, i)
    first = sum(config.steps[:r])
    state, terms = jax.lax.scan(step, state,
                                first + jnp.arange(config.steps[r]))
    history.append(terms)
    variables, best_image, best_value = end_round(generator, config, r,
                                                  frozen, state)
  terms = jax.tree.map(lambda *t: jnp.concatenate(t), *history)
  return Result(best_image, best_value, terms, variables)
