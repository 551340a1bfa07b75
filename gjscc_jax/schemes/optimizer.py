"""Optimiser and learning-rate schedule from a config.

`config.optimizer` fields:

* `name`: 'adam' (default) or 'adamw'.
* `lr`: peak learning rate.
* `b1`, `b2`, `eps`, `weight_decay` (adamw only).
* `schedule`: 'constant', 'cosine' (warm-up then cosine decay to
  `lr * final_lr_fraction`) or 'step' (multiply by `decay_factor` at each of
  `decay_steps`).
* `warmup_steps`: linear warm-up from 0 (all schedules).
* `grad_clip_norm`: global-norm clipping, 0 or None to disable.
"""

import optax


def learning_rate_schedule(config, total_steps):
  """An optax schedule: step -> learning rate."""
  lr = config.lr
  warmup = int(config.get("warmup_steps", 0) or 0)
  kind = config.get("schedule", "constant")
  if kind == "constant":
    main = optax.constant_schedule(lr)
  elif kind == "cosine":
    main = optax.cosine_decay_schedule(
        lr, max(total_steps - warmup, 1), alpha=config.get("final_lr_fraction", 0.0))
  elif kind == "step":
    boundaries = {int(s) - warmup: config.get("decay_factor", 0.1)
                  for s in config.get("decay_steps", ())}
    main = optax.piecewise_constant_schedule(lr, boundaries)
  else:
    raise ValueError(
        f"optimizer.schedule={kind!r} is not one of 'constant', 'cosine', 'step'.")
  if not warmup:
    return main
  return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def make_optimizer(config, total_steps):
  """Builds the gradient transformation described by `config.optimizer`.

  Returns:
    (tx, schedule): the optax transformation and its learning-rate schedule
    (for logging).
  """
  schedule = learning_rate_schedule(config, total_steps)
  name = config.get("name", "adam")
  kwargs = dict(b1=config.get("b1", 0.9), b2=config.get("b2", 0.999),
                eps=config.get("eps", 1e-8))
  if name == "adam":
    tx = optax.adam(schedule, **kwargs)
  elif name == "adamw":
    tx = optax.adamw(schedule, weight_decay=config.get("weight_decay", 1e-4), **kwargs)
  else:
    raise ValueError(f"optimizer.name={name!r} is not one of 'adam', 'adamw'.")
  clip = config.get("grad_clip_norm", None)
  if clip:
    tx = optax.chain(optax.clip_by_global_norm(clip), tx)
  return tx, schedule
