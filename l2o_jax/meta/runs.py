"""Reading a meta-training run back: its checkpoints, its learned optimizer (from ``config.json``), and the
checkpoint that scores best on validation tasks."""

from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from l2o_jax.meta.trainer import MetaTrainingDiverged
from l2o_jax.meta.trainer import _checkpoint_manager
from l2o_jax.meta.trainer import _read_checkpoint
from l2o_jax.meta.unroll import UnrollConfig
from l2o_jax.meta.unroll import init_inner_state
from l2o_jax.meta.unroll import unroll
from l2o_jax.optimizers import LearnedOptimizer
from l2o_jax.optimizers import MetaParams
from l2o_jax.optimizers import abstract_meta_params
from l2o_jax.optimizers import config_from_dict


def checkpoint_steps(workdir: str | os.PathLike) -> list[int]:
    """The outer steps at which a run has complete checkpoints.

    Example:
      >>> checkpoint_steps('runs/x')
      [100, 200, 300]
    """
    with _checkpoint_manager(os.fspath(workdir)) as manager:
        return sorted(manager.all_steps())


def run_learned_optimizer(workdir: str | os.PathLike) -> LearnedOptimizer:
    """The learned optimizer a run meta-trains, read from its ``config.json``.

    Example:
      >>> run_learned_optimizer('runs/x')
      GraphL2O(hidden=16, layers=2, ...)
    """
    path = os.path.join(os.fspath(workdir), "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no meta-training run at {os.fspath(workdir)} (no config.json).")
    with open(path) as f:
        data = json.load(f)
    return config_from_dict(data["learned_optimizer"])


def load_checkpoint(
    workdir: str | os.PathLike, step: int, learned_optimizer: LearnedOptimizer | None = None
) -> MetaParams:
    """The meta-parameters stored at ``step`` of a run.

    Args:
      workdir: the run directory.
      step: an outer step with a checkpoint (``checkpoint_steps(workdir)``).
      learned_optimizer: the run's learned optimizer; read from the run's ``config.json`` when left out
        (needed only for families that are not registered).

    Example:
      >>> meta_params = load_checkpoint('runs/x', 300)
    """
    if learned_optimizer is None:
        learned_optimizer = run_learned_optimizer(workdir)
    template = abstract_meta_params(learned_optimizer)
    with _checkpoint_manager(os.fspath(workdir)) as manager:
        saved = _read_checkpoint(manager, step)
    return template.replace(arrays=ocp.tree.deserialize_tree(saved["arrays"], template.arrays))


def validation_loss_after(meta_params: MetaParams, task, keys: jax.Array, length: int) -> jax.Array:
    """``[len(keys)]``: the loss on the validation split (its first ``min(2048, N)`` examples, ``Task.evaluate``) of
    fresh optimizees, one per key, each trained ``length`` steps by the learned optimizer; the runs are vmapped.

    Example:
      >>> validation_loss_after(meta_params, image_task('digits', width=16), jax.random.split(key, 3), 500)
    """

    def one(key):
        state = init_inner_state(meta_params, task, key, total_steps=length)
        _, (final, _) = unroll(meta_params, task, state, length, UnrollConfig(meta_loss="final"))
        return task.evaluate(final.params, "validation")["loss"]

    return jax.vmap(one)(keys)


def select_best_checkpoint(
    workdir, learned_optimizer: LearnedOptimizer | None, validation_tasks, *, length: int = 100, seeds: int = 2
) -> tuple[int, MetaParams, dict[int, float]]:
    """Scores every checkpoint of a run by the validation loss after ``length`` inner steps (the model selection
    of Sbicego et al.), on each task's whole validation split (up to 2048 examples), mean over ``seeds`` fresh
    optimizees per task, and returns ``(best_step, best_meta_params, scores)``. A checkpoint with a non-finite
    score is never picked.

    ``learned_optimizer`` is the run's; ``None`` reads it from the run's ``config.json``.

    Example:
      >>> step, best, scores = select_best_checkpoint('runs/x', None, [image_task('digits', width=16)])
    """
    steps = checkpoint_steps(workdir)
    if not steps:
        raise FileNotFoundError(f"no complete checkpoint in {os.fspath(workdir)}/checkpoints to select from.")
    keys = jnp.stack([jax.random.key(1000 + s) for s in range(seeds)])
    score = jax.jit(
        lambda arrays, meta, task: validation_loss_after(meta.replace(arrays=arrays), task, keys, length).mean()
    )
    scores = {}
    for step in steps:
        meta = load_checkpoint(workdir, step, learned_optimizer)
        scores[step] = float(jnp.mean(jnp.stack([score(meta.arrays, meta, t) for t in validation_tasks])))
    finite = {s: v for s, v in scores.items() if math.isfinite(v)}
    if not finite:
        raise MetaTrainingDiverged(f"no checkpoint in {workdir} gives a finite validation loss: {scores}.")
    best = min(finite, key=finite.get)
    return best, load_checkpoint(workdir, best, learned_optimizer), scores
