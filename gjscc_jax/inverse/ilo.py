"""Intermediate Layer Optimization (ILO) of one image, as a pure function.

ILO (Daras, Dean, Jalal and Dimakis, ICML 2021) explains an observation `y`
with a pretrained StyleGAN2 `G` by optimising, in progressive rounds,

* round 0: the latents (one row per W+ row) and the noise maps;
* round `r > 0`: the same, plus the feature map `x` that enters block
  `b = start_block + r` (the generator is run from block `b` on). It starts
  from the output of block `b - 1` at the end of round `r - 1`, so every
  round keeps what the previous one found and adds freedom closer to the
  pixels.

Latent spaces (`latent_space`):

* `'z_proxy'` (ILO's): one Gaussian vector `z` per W+ row, mapped to W by
  PULSE's proxy of the mapping network, `w = lrelu_0.2(std * z + mean)`
  (`latent_proxy`; `frozen['latent_proxy']` holds `mean`, `std`). `z` starts
  at N(0, I) and, with `project_latents` (the default here), every row is
  rescaled after each step to its norm at the start of the round (ILO's
  `SphericalOptimizer`), so it stays on its starting sphere.
* `'w_plus'`: W+ itself, every row starting at the generator's `w_avg`, not
  projected by default. A Gaussian-space step of Adam moves `z` by about the
  learning rate, which the proxy maps to roughly `std / 2`-`std` times less
  in W; in W+ the same learning rate moves W directly, so its steps are
  larger.

Every round runs `steps[r]` Adam steps (fresh moments; 0 steps skips the
round, as in ILO) on

  `mse_weight * MSE(A(G), y) + lambda_lpips * LPIPS(., y)
   + geocross_weight * geocross(latents[2b:])`,

where `A` is a forward operator (see `forward_operators`; LPIPS sees `A(G)`
or `G`, `lpips_target`), with ILO's learning-rate schedule
`lr(t) = lr * ramp_down(t) * ramp_up(t)` over the round (`t = step /
steps[r]`). After each step the variables are optionally projected: latent
rows and noise maps back to their round-start norms, and the deviation of
each variable from its round-start value onto an L1 ball.

The returned image is chosen by `best_by`: the iterate (over all steps of
all rounds) with the lowest 'mse', 'lpips' or 'loss', or the 'last' one
(the variables after the last step). The score is the objective's
`selection_terms` when it has them: for DeepJSCC with fresh channel noise
every step, one fixed channel realisation per image (or the mean over
`best_by_draws` of them), so that the choice is not a lucky noise draw.
The returned `Result` carries the chosen variables, from which
`render` reproduces the image.

How this follows the official ILO code (`ilo_stylegan.py`,
`configs/config.yaml`) and where it differs on purpose (geocross scope,
LPIPS target, selection, the kept skip image, noise maps per round,
`start_block > 0`): docs/inverse.md.

Everything is a pure function of one image: `invert_one` runs the whole
search (each round one `lax.scan` of `round_step`), and `start_search`,
`start_round`, `round_step`, `end_round` and `finish` are its parts;
`search` vmaps them over images and shards the batch over devices. Nothing
syncs with the host.
"""

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gjscc_jax.inverse import latent_proxy
from gjscc_jax.inverse import projections

#: Terms the returned iterate can be chosen by ('last': the final one).
BEST_BY = ("mse", "lpips", "loss", "last")
#: Spaces the latents are searched in.
LATENT_SPACES = ("z_proxy", "w_plus")
#: Rounds with the geocross regulariser.
GEOCROSS_ROUNDS = ("first", "all")
#: The image LPIPS compares with the observation: A(G) or G.
LPIPS_TARGETS = ("operator", "generator")


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


def _check_choice(name, value, choices):
  if value not in choices:
    raise ValueError(f"{name}={value!r}: use one of {choices}.")


@dataclasses.dataclass(frozen=True)
class ILOConfig:
  """Knobs of the search (hashable; defaults are ILO's, see module doc).

  Attributes:
    steps: Adam steps per round (0 skips a round); round `r` starts at
      block `start_block + r`.
    learning_rates: Peak learning rate, a scalar or one per round.
    warmup: Fraction of a round with a linear learning-rate warm-up.
    rampdown: Fraction of a round (at its end) with a cosine ramp-down.
    mse_weight: Weight of the MSE term, a scalar or one per round.
    lambda_lpips: Weight of the LPIPS term, a scalar or one per round.
    geocross_weight: Weight of the geocross regulariser on the latent rows
      the round uses (`latents[2b:]`, z rows in 'z_proxy').
    geocross_rounds: 'first' (ILO's code at batch 1) or 'all'.
    latent_space: 'z_proxy' (ILO) or 'w_plus'.
    start_block: ILO's `start_layer`: the block round 0 starts at.
    noise_blocks_ahead: Round `r` optimises the noise maps of blocks
      `b .. b + noise_blocks_ahead`.
    project_noises: Keep each optimised noise map at its round-start norm.
    project_latents: Keep each latent row at its round-start norm; None
      means the space's default (True for 'z_proxy', as ILO; False for
      'w_plus').
    latent_radius: L1 radius of the per-round deviation of the latents (a
      scalar or one per round); None disables the projection.
    noise_radius: The same for each noise map.
    feature_radius: The same for the optimised feature map `x`.
    lpips_target: 'operator' (LPIPS(A(G), y)) or 'generator' (LPIPS(G, y));
      read by the data terms (`forward_operators.DataTerms.lpips_target`).
    best_by: 'mse' (ILO), 'lpips', 'loss' (the weighted objective without
      the regulariser) or 'last'.
    best_by_draws: Channel realisations the selection score averages over
      (a stochastic objective's `selection_terms`).
  """
  steps: tuple[int, ...] = (50, 50, 25, 25)
  learning_rates: Any = 0.1
  warmup: float = 0.05
  rampdown: float = 0.75
  mse_weight: Any = 1.0
  lambda_lpips: Any = 1.0
  geocross_weight: float = 0.01
  geocross_rounds: str = "first"
  latent_space: str = "z_proxy"
  start_block: int = 0
  noise_blocks_ahead: int = 2
  project_noises: bool = True
  project_latents: bool | None = None
  latent_radius: Any = None
  noise_radius: Any = None
  feature_radius: Any = None
  lpips_target: str = "operator"
  best_by: str = "mse"
  best_by_draws: int = 1

  def __post_init__(self):
    steps = tuple(int(s) for s in self.steps)
    if not steps or any(s < 0 for s in steps) or not sum(steps):
      raise ValueError(f"steps must list the Adam steps of each round (>= 0, "
                       f"at least one > 0); got {self.steps}.")
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
    if not isinstance(self.start_block, int) or self.start_block < 0:
      raise ValueError(f"start_block={self.start_block!r} must be an int "
                       ">= 0.")
    if not isinstance(self.best_by_draws, int) or self.best_by_draws < 1:
      raise ValueError(f"best_by_draws={self.best_by_draws!r} must be an "
                       "int >= 1.")
    _check_choice("best_by", self.best_by, BEST_BY)
    _check_choice("latent_space", self.latent_space, LATENT_SPACES)
    _check_choice("geocross_rounds", self.geocross_rounds, GEOCROSS_ROUNDS)
    _check_choice("lpips_target", self.lpips_target, LPIPS_TARGETS)
    if self.project_latents is None:
      object.__setattr__(self, "project_latents",
                         self.latent_space == "z_proxy")

  @property
  def num_rounds(self) -> int:
    return len(self.steps)

  @property
  def total_steps(self) -> int:
    return sum(self.steps)

  def block(self, r: int) -> int:
    """The block round `r` starts at."""
    return self.start_block + r

  @property
  def last_block(self) -> int:
    return self.block(self.num_rounds - 1)

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
  """Everything that determines one image's generator output.

  All float32, whatever the generator's compute dtype: Adam's moments and
  updates are those of float32 variables, and a bfloat16 generator only
  rounds the copies its layers read.

  Attributes:
    latents: `(num_ws, w_dim)`: Gaussian rows `z` ('z_proxy') or W+.
    noises: One `(r, r, 1)` map per noise layer.
    x: Feature map entering the round's start block (None at block 0).
    img: Skip image entering the start block (None at block 0).
  """
  latents: jax.Array
  noises: tuple[jax.Array, ...]
  x: jax.Array | None = None
  img: jax.Array | None = None


class Result(NamedTuple):
  """The outcome of one image's search (a pytree; batched under vmap).

  Attributes:
    image: The chosen generator output `(R, R, 3)`, in [-1, 1] (not
      clipped): `render(...)` of `variables`.
    best: Its `best_by` score (NaN for 'last').
    best_step: The step (0-based, over all rounds) whose iterate was chosen,
      `total_steps` for 'last' (the variables after the last step).
    terms: Per-step history `{'loss', 'mse', 'lpips', 'objective'[,
      'score']}`, each `(total_steps,)`: 'loss' is `mse_weight * mse +
      lambda * lpips`, 'objective' adds the regulariser (what Adam
      minimised), 'score' is the selection score of the step's iterate.
    variables: The chosen variables, with `x`/`img` entering
      `config.last_block`.
  """
  image: jax.Array
  best: jax.Array
  best_step: jax.Array
  terms: dict[str, jax.Array]
  variables: Variables


Objective = Callable[[Any, jax.Array, Any, jax.Array], dict]


def latents_to_ws(config, frozen, latents):
  """W+ `(num_ws, w_dim)` of the searched latents (the proxy for 'z_proxy')."""
  if config.latent_space == "z_proxy":
    if "latent_proxy" not in frozen:
      raise ValueError(
          "latent_space='z_proxy' needs frozen['latent_proxy'] = {'mean', "
          "'std'} (gjscc_jax.inverse.latent_proxy.load_or_fit), or use "
          "latent_space='w_plus'.")
    return latent_proxy.to_w(latents, frozen["latent_proxy"])
  return latents


def render(generator, config, frozen, variables, block=None):
  """The generator image `(R, R, 3)` of one image's variables, whose
  `x`/`img` enter `block` (default `config.last_block`)."""
  block = config.last_block if block is None else block
  return generator.synthesize_one(
      frozen["generator"], latents_to_ws(config, frozen, variables.latents),
      variables.noises, block, variables.x, variables.img)


def _advance(generator, config, frozen, variables, block):
  """`variables` with `x`/`img` moved from entering `block` to `block + 1`."""
  x, img = generator.blocks_one(
      frozen["generator"], latents_to_ws(config, frozen, variables.latents),
      variables.noises, block, block + 1, variables.x, variables.img)
  # A bfloat16 generator returns bfloat16 features; the next round
  # optimises them (and keeps Adam's moments) in float32.
  return variables._replace(x=x.astype(jnp.float32),
                            img=img.astype(jnp.float32))


def initial_variables(generator, config, frozen, key) -> Variables:
  """The start of the search for one image.

  Latents: `z ~ N(0, I)` per row ('z_proxy', from the first half of `key`)
  or `w_avg` in every row ('w_plus'); noise maps N(0, 1) (second half).
  With `start_block > 0`, `x`/`img` are the output of blocks
  `0 .. start_block - 1` at these variables.
  """
  latent_key, noise_key = jax.random.split(key)
  shape = (generator.num_ws, generator.w_dim)
  if config.latent_space == "z_proxy":
    latents = jax.random.normal(latent_key, shape, jnp.float32)
  else:
    w_avg = jnp.asarray(generator.w_avg(frozen["generator"]), jnp.float32)
    latents = jnp.broadcast_to(w_avg, shape)
  keys = jax.random.split(noise_key, len(generator.noise_blocks))
  noises = tuple(jax.random.normal(k, s, jnp.float32) for k, s in
                 zip(keys, generator.noise_shapes()))
  variables = Variables(latents, noises)
  if config.start_block:
    x, img = generator.blocks_one(
        frozen["generator"], latents_to_ws(config, frozen, latents), noises,
        0, config.start_block)
    variables = variables._replace(x=x.astype(jnp.float32),
                                   img=img.astype(jnp.float32))
  return variables


def _noise_split(generator, block, ahead):
  """Indices of the noise layers optimised from `block`, and of the others."""
  chosen = tuple(i for i, b in enumerate(generator.noise_blocks)
                 if block <= b <= block + ahead)
  others = tuple(i for i in range(len(generator.noise_blocks))
                 if i not in chosen)
  return chosen, others


class SearchState(NamedTuple):
  """One image's state between rounds (a pytree).

  Attributes:
    variables: The current variables (`x`/`img` entering the next round's
      block).
    best: The best iterate so far, in the same form.
    best_value: Its selection score (inf before the first step).
    best_step: Its step index (-1 before the first step).
  """
  variables: Variables
  best: Variables
  best_value: jax.Array
  best_step: jax.Array


class RoundState(NamedTuple):
  """One image's state within a round (a pytree; the carry of its steps).

  Attributes:
    trainable: `{'latents', 'noises'[, 'x']}`: what the round optimises.
    opt_state: Adam's state for `trainable`.
    anchor: `trainable` at the start of the round (for the L1 balls).
    norms: Round-start norms of the latent rows and optimised noise maps.
    fixed_noises: The noise maps this round leaves alone.
    img: The frozen skip image entering the start block (None at block 0).
    best, best_value, best_step: As in `SearchState`.
  """
  trainable: dict
  opt_state: Any
  anchor: dict
  norms: dict
  fixed_noises: tuple
  img: Any
  best: Variables
  best_value: jax.Array
  best_step: jax.Array


def _adam(config, r):
  schedule = lambda count: learning_rate(
      count, config.steps[r], config.learning_rates[r], config.warmup,
      config.rampdown)
  return optax.adam(schedule, b1=0.9, b2=0.999, eps=1e-8)


def start_search(generator, config, frozen, key):
  """`(SearchState, run_key)` before round 0."""
  init_key, run_key = jax.random.split(key)
  variables = initial_variables(generator, config, frozen, init_key)
  return SearchState(variables, variables, jnp.asarray(jnp.inf, jnp.float32),
                     jnp.asarray(-1, jnp.int32)), run_key


def start_round(generator, config, r, search_state: SearchState
                ) -> RoundState:
  """The state at the start of round `r` (fresh Adam moments)."""
  variables = search_state.variables
  opt_idx, fixed_idx = _noise_split(generator, config.block(r),
                                    config.noise_blocks_ahead)
  trainable = dict(latents=variables.latents,
                   noises=tuple(variables.noises[i] for i in opt_idx))
  if config.block(r) > 0:
    trainable["x"] = variables.x
  norms = dict(latents=projections.vector_norms(variables.latents, (-1,)),
               noises=tuple(projections.vector_norms(n, (0, 1))
                            for n in trainable["noises"]))
  return RoundState(trainable, _adam(config, r).init(trainable), trainable,
                    norms, tuple(variables.noises[i] for i in fixed_idx),
                    variables.img, search_state.best, search_state.best_value,
                    search_state.best_step)


def _all_noises(generator, config, r, state, opt_noises):
  opt_idx, fixed_idx = _noise_split(generator, config.block(r),
                                    config.noise_blocks_ahead)
  noises = [None] * len(generator.noise_blocks)
  for i, n in zip(opt_idx + fixed_idx, opt_noises + state.fixed_noises):
    noises[i] = n
  return tuple(noises)


def _current(generator, config, r, state):
  """The round's current iterate as `Variables`."""
  tr = state.trainable
  return Variables(tr["latents"], _all_noises(generator, config, r, state,
                                              tr["noises"]),
                   tr.get("x"), state.img)


def _project(config, r, state, tr):
  tr = dict(tr)
  if config.project_latents:
    tr["latents"] = projections.preserve_norm(tr["latents"],
                                              state.norms["latents"], (-1,))
  if config.project_noises:
    tr["noises"] = tuple(projections.preserve_norm(n, m, (0, 1)) for n, m
                         in zip(tr["noises"], state.norms["noises"]))
  for name, radii in (("latents", config.latent_radius),
                      ("x", config.feature_radius)):
    if radii is not None and name in tr:
      tr[name] = projections.project_deviation(tr[name], state.anchor[name],
                                               radii[r])
  if config.noise_radius is not None:
    tr["noises"] = tuple(
        projections.project_deviation(n, a, config.noise_radius[r])
        for n, a in zip(tr["noises"], state.anchor["noises"]))
  return tr


def _regularised(config, r) -> bool:
  return bool(config.geocross_weight) and (
      config.geocross_rounds == "all" or r == 0)


def selection_score(config, r, objective, frozen, image, target, terms):
  """The `best_by` score of a step's image (not 'last').

  Uses `objective.selection_terms(frozen, image, target, draws, terms,
  need_lpips)` when the objective has it (a stochastic objective scores
  with fixed keys there), else the step's own `terms`.
  """
  select = getattr(objective, "selection_terms", None)
  if select is not None:
    terms = select(frozen, jax.lax.stop_gradient(image), target,
                   config.best_by_draws, terms,
                   config.best_by in ("lpips", "loss"))
  if config.best_by == "loss":
    lpips = terms.get("lpips", jnp.zeros((), jnp.float32))
    return config.mse_weight[r] * terms["mse"] + (
        config.lambda_lpips[r] * lpips)
  return terms[config.best_by]


def round_step(generator, config, objective, r, frozen, target, key,
               state: RoundState, step_index):
  """One Adam step of round `r`: `(state, terms)`; `step_index` counts steps
  over all rounds (it keys the step: `fold_in(key, step_index)`)."""
  mse_w, lpips_w = config.mse_weight[r], config.lambda_lpips[r]
  block = config.block(r)

  def loss_fn(tr):
    image = generator.synthesize_one(
        frozen["generator"], latents_to_ws(config, frozen, tr["latents"]),
        _all_noises(generator, config, r, state, tr["noises"]), block,
        tr.get("x"), state.img)
    terms = dict(objective(frozen, image, target,
                           jax.random.fold_in(key, step_index)))
    terms.setdefault("lpips", jnp.zeros((), jnp.float32))
    terms["loss"] = mse_w * terms["mse"] + lpips_w * terms["lpips"]
    regulariser = config.geocross_weight * projections.geocross(
        tr["latents"][2 * block:]) if _regularised(config, r) else 0.0
    terms["objective"] = terms["loss"] + regulariser
    return terms["objective"], (terms, image)

  (_, (terms, image)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.trainable)
  if config.best_by != "last":
    score = selection_score(config, r, objective, frozen, image, target,
                            terms)
    terms["score"] = score
    better = score < state.best_value
    best = jax.tree.map(lambda new, old: jnp.where(better, new, old),
                        _current(generator, config, r, state), state.best)
    state = state._replace(
        best=best, best_value=jnp.where(better, score, state.best_value),
        best_step=jnp.where(better, jnp.asarray(step_index, jnp.int32),
                            state.best_step))
  updates, opt_state = _adam(config, r).update(grads, state.opt_state,
                                               state.trainable)
  trainable = _project(config, r, state,
                       optax.apply_updates(state.trainable, updates))
  return state._replace(trainable=trainable, opt_state=opt_state), terms


def end_round(generator, config, r, frozen, state: RoundState) -> SearchState:
  """The `SearchState` after round `r`; before a next round, `x`/`img` of
  the current and of the best variables move on by one block (the next
  round's input)."""
  variables, best = _current(generator, config, r, state), state.best
  if r + 1 < config.num_rounds:
    block = config.block(r)
    variables = _advance(generator, config, frozen, variables, block)
    best = _advance(generator, config, frozen, best, block)
  return SearchState(variables, best, state.best_value, state.best_step)


def finish(generator, config, frozen, search_state: SearchState):
  """`(image, best, best_step, variables)` of the chosen iterate."""
  if config.best_by == "last":
    chosen = search_state.variables
    best = jnp.asarray(jnp.nan, jnp.float32)
    step = jnp.asarray(config.total_steps, jnp.int32)
  else:
    chosen, best = search_state.best, search_state.best_value
    step = search_state.best_step
  return render(generator, config, frozen, chosen), best, step, chosen


def check_rounds(generator, config):
  if config.last_block >= generator.num_blocks:
    raise ValueError(
        f"{config.num_rounds} ILO rounds from start_block="
        f"{config.start_block} need {config.last_block + 1} generator blocks; "
        f"this {generator.resolution}x{generator.resolution} generator has "
        f"{generator.num_blocks}. Use fewer `steps` entries or a lower "
        "start_block.")


def invert_one(generator, config: ILOConfig, objective: Objective, frozen,
               target, key) -> Result:
  """Runs every round of ILO for ONE image (no batch axis anywhere).

  Each round is one `lax.scan` of `round_step`.

  Args:
    generator: A `LayeredGenerator`.
    config: An `ILOConfig`; `config.last_block < generator.num_blocks`.
    objective: `(frozen, image, target, key) -> {'mse': (), 'lpips': ()}`,
      the data terms of the generator image `image` `(R, R, 3)` against this
      image's `target`, given a fresh PRNG key every step (e.g. a
      `forward_operators.DataTerms`). 'lpips' may be left out. An objective
      that depends on the key should also have `selection_terms` (see
      `selection_score`); otherwise the step's terms select the iterate.
    frozen: Replicated parameters; `frozen['generator']` are the generator's,
      `frozen['latent_proxy']` the proxy ('z_proxy'), the rest is passed to
      `objective` untouched.
    target: This image's target pytree, passed to `objective`.
    key: This image's PRNG key (initialisation and every step's key).

  Returns:
    A `Result`.
  """
  check_rounds(generator, config)
  search_state, run_key = start_search(generator, config, frozen, key)
  history = []
  for r in range(config.num_rounds):
    state = start_round(generator, config, r, search_state)
    step = lambda s, i, r=r: round_step(generator, config, objective, r,
                                        frozen, target, run_key, s, i)
    first = sum(config.steps[:r])
    state, terms = jax.lax.scan(step, state,
                                first + jnp.arange(config.steps[r]))
    history.append(terms)
    search_state = end_round(generator, config, r, frozen, state)
  terms = jax.tree.map(lambda *t: jnp.concatenate(t), *history)
  image, best, best_step, chosen = finish(generator, config, frozen,
                                          search_state)
  return Result(image, best, best_step, terms, chosen)
