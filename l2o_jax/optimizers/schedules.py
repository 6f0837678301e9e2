"""Schedules a learned optimizer's step is multiplied by over a run of known length (``OutputConfig.schedule``)."""

from __future__ import annotations

import jax.numpy as jnp

#: The schedules a learned optimizer's step can be multiplied by (``OutputConfig.schedule``).
SCHEDULES = ("constant", "cosine", "warmup_cosine")

#: The share of a run ``warmup_cosine`` spends warming up.
WARMUP_FRACTION = 0.05


def warmup_cosine(count, total_steps, warmup_fraction: float = WARMUP_FRACTION):
    """The unit warmup-cosine schedule: 0 to 1 linearly over the first 5 % of the run, then a cosine decay to 0.

    The same values as ``optax.warmup_cosine_decay_schedule(0, 1, max(1, round(0.05 T)), T, 0)`` (the tuned
    baseline's schedule), but ``total_steps`` may be traced, as a learned optimizer's run length is.

    Args:
      count: the number of updates already applied (0 for the first).
      total_steps: the run's length ``T``.
      warmup_fraction: the warmup's share of the run.

    Example:
      >>> [round(float(warmup_cosine(t, 100)), 3) for t in (0, 1, 5, 100)]
      [0.0, 0.2, 1.0, 0.0]
    """
    total = jnp.asarray(total_steps, jnp.float32)
    warmup = jnp.maximum(1.0, jnp.round(warmup_fraction * total))
    count = jnp.asarray(count, jnp.float32)
    decay = jnp.clip((count - warmup) / jnp.maximum(total - warmup, 1.0), 0.0, 1.0)
    return jnp.where(count < warmup, count / warmup, 0.5 * (1.0 + jnp.cos(jnp.pi * decay)))


def schedule_factor(schedule: str, count, total_steps):
    """The factor ``OutputConfig.schedule`` puts on the step after ``count`` updates of a ``total_steps`` run."""
    if schedule == "cosine":
        progress = jnp.clip(count / jnp.maximum(total_steps, 1.0), 0.0, 1.0)
        return 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    if schedule == "warmup_cosine":
        return warmup_cosine(count, total_steps)
    return jnp.ones((), jnp.float32)
