"""The meta-training loop: outer optimizer, NaN guard, orbax checkpoints, resume, metrics, model selection."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from l2o_jax.meta.estimators import ESTIMATORS
from l2o_jax.meta.estimators import FullUnrollBPTT
from l2o_jax.meta.estimators import LogUniformHorizon
from l2o_jax.meta.sharding import replicate
from l2o_jax.meta.sharding import task_mesh
from l2o_jax.meta.unroll import UnrollConfig
from l2o_jax.optimizers import LearnedOptimizer
from l2o_jax.optimizers import MetaParams
from l2o_jax.optimizers import config_from_dict
from l2o_jax.optimizers import config_to_dict
from l2o_jax.optimizers import register_config
from l2o_jax.tasks import TaskFamily


class MetaTrainingDiverged(RuntimeError):
    """Too many consecutive outer steps had a non-finite meta-loss or meta-gradient."""


@register_config
@dataclasses.dataclass(frozen=True)
class MetaTrainConfig:
    """Everything that defines a meta-training run (saved as ``config.json`` in the run directory, in the config
    encoding of ``l2o_jax.optimizers.config_to_dict``; ``from_json`` reads it back).

    Attributes:
      learned_optimizer: the family and its hyperparameters, e.g. ``GraphL2O(hidden=32, layers=4)``.
      task_family: an ``l2o_jax.tasks.TaskFamily``; each outer step samples ``tasks_per_step`` tasks.
      estimator: a gradient estimator from ``l2o_jax.meta.estimators`` (or any frozen dataclass with their
        ``init``/``estimate``; it is a static argument of the compiled outer step).
      outer_steps: number of meta-updates.
      meta_lr, schedule: Adam's learning rate and ``'cosine'`` decay to 0 or ``'constant'`` (Sbicego et al.: 3e-4
        with cosine decay).
      clip_norm: global-norm clipping of the meta-gradient.
      tasks_per_step: architectures per outer step; their meta-gradients are averaged (each architecture is
        its own compiled group).
      checkpoint_every: outer steps between checkpoints (all are kept, for model selection).
      max_consecutive_nonfinite: skipped steps in a row after which the run stops.
      seed: the run's only source of randomness.
    """

    learned_optimizer: LearnedOptimizer
    task_family: Any
    estimator: Any = FullUnrollBPTT()
    outer_steps: int = 1000
    meta_lr: float = 3e-4
    schedule: str = "cosine"
    clip_norm: float = 1.0
    tasks_per_step: int = 1
    checkpoint_every: int = 100
    max_consecutive_nonfinite: int = 10
    seed: int = 0

    def to_json(self) -> str:
        """The run as JSON; a part JSON cannot hold (e.g. a task family that is no config) is written as its repr,
        which ``from_json`` reports instead of rebuilding."""
        return json.dumps(config_to_dict(self, fallback=repr), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MetaTrainConfig:
        """Inverse of ``to_json``.

        Example:
          >>> MetaTrainConfig.from_json(config.to_json()) == config
          True
        """
        config = config_from_dict(json.loads(text))
        if not isinstance(config, cls):
            raise ValueError(f"the JSON holds a {type(config).__name__}, not a {cls.__name__}.")
        return config


# What a run's config.json may hold besides learned optimizers (which register themselves).
for _config in (TaskFamily, UnrollConfig, LogUniformHorizon, *ESTIMATORS.values()):
    register_config(_config)


def outer_optimizer(config: MetaTrainConfig) -> optax.GradientTransformation:
    """Adam with cosine decay and clipping, skipping (and counting) non-finite meta-gradients.

    Example:
      >>> tx = outer_optimizer(MetaTrainConfig(GraphL2O(), family, outer_steps=100))
    """
    return _outer_optimizer(
        config.meta_lr, config.schedule, config.outer_steps, config.clip_norm, config.max_consecutive_nonfinite
    )


@functools.lru_cache(maxsize=None)
def _outer_optimizer(meta_lr, schedule, outer_steps, clip_norm, max_consecutive_nonfinite):
    # Cached: the same hyperparameters give the same transform, so its jitted update compiles once per process.
    if schedule == "cosine":
        lr = optax.cosine_decay_schedule(meta_lr, max(outer_steps, 1))
    elif schedule == "constant":
        lr = meta_lr
    else:
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}.")
    inner = optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(lr))
    return optax.apply_if_finite(inner, max_consecutive_errors=max_consecutive_nonfinite)


@dataclasses.dataclass
class MetaTrainResult:
    """What ``meta_train`` returns: the final meta-parameters and where everything was written."""

    meta_params: MetaParams
    workdir: str
    metrics: list[dict]
    skipped_steps: int


def _run_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The run's three random streams: meta-parameter init, outer steps, estimator states."""
    return tuple(jax.random.split(jax.random.key(seed), 3))


def _step_keys(steps_key: jax.Array, step: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Keys of one outer step (tasks, estimate, inner length), from (seed, step) alone: a resumed run draws
    the same."""
    return tuple(jax.random.split(jax.random.fold_in(steps_key, step), 3))


def _sample_tasks(config: MetaTrainConfig, key) -> list:
    return [config.task_family.sample(k) for k in jax.random.split(key, config.tasks_per_step)]


# Module-level jits with the (hashable, frozen) estimator static: compiled once per estimator and architecture
# in a process, however many runs use them.
@functools.partial(jax.jit, static_argnames=("estimator", "length"))
def _estimate(estimator, meta_params: MetaParams, task, state, key, length: int | None = None):
    extra = {} if length is None else {"length": length}
    return estimator.estimate(meta_params, task, state, key, **extra)


@functools.partial(jax.jit, static_argnames="estimator")
def _init_estimator(estimator, meta_params: MetaParams, task, key):
    return estimator.init(meta_params, task, key)


@functools.partial(jax.jit, static_argnames="outer")
def _apply_outer(outer: optax.GradientTransformation, arrays, opt_state, loss, grads):
    """One meta-update; a non-finite meta-loss poisons the gradient so ``apply_if_finite`` skips it too."""
    grads = jax.tree.map(lambda g: jnp.where(jnp.isfinite(loss), g, jnp.nan), grads)
    updates, opt_state = outer.update(grads, opt_state, arrays)
    return optax.apply_updates(arrays, updates), opt_state


class _Groups:
    """Per-architecture (task name) device data and estimator state.

    An architecture's estimator state is created when its first task comes up, from (seed, task name) alone,
    or read from the checkpoint the run resumed from (``saved``: orbax's serialized form, written back
    unchanged until the architecture comes up again).
    """

    def __init__(self, estimator, states_key: jax.Array, saved: dict | None = None):
        self.estimator = estimator
        self.states_key = states_key
        self.saved = saved or {}
        self.tasks: dict[str, Any] = {}
        self.states: dict[str, Any] = {}

    def estimate(self, meta_params: MetaParams, task, key, length: int | None):
        """Runs the estimator on ``task``'s architecture and keeps its new state."""
        name = task.name
        if name not in self.tasks:
            self.tasks[name] = replicate(task)
        if name not in self.states:
            self.states[name] = self._initial_state(meta_params, self.tasks[name])
        loss, grads, self.states[name] = _estimate(
            self.estimator, meta_params, self.tasks[name], self.states[name], key, length
        )
        return loss, grads

    def _initial_state(self, meta_params: MetaParams, task):
        key = jax.random.fold_in(self.states_key, zlib.crc32(task.name.encode()) & 0x7FFFFFFF)
        state = _init_estimator(self.estimator, meta_params, task, key)
        return replicate(ocp.tree.deserialize_tree(self.saved[task.name], state) if task.name in self.saved else state)

    def checkpoint_states(self) -> dict:
        return {**self.saved, **self.states}


def _checkpoint_manager(workdir: str, create: bool = False) -> ocp.CheckpointManager:
    """The run's checkpoints; the writer (``create``) also deletes saves a killed run left half-written."""
    options = ocp.CheckpointManagerOptions(max_to_keep=None, create=create, cleanup_tmp_directories=create)
    return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"), options=options)


def _read_checkpoint(manager: ocp.CheckpointManager, step: int) -> dict:
    """A checkpoint in orbax's serialized form (NamedTuples as dicts), on this process's devices."""
    fallback = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return manager.restore(step, args=ocp.args.StandardRestore(fallback_sharding=fallback))


def meta_train(
    config: MetaTrainConfig, workdir: str | os.PathLike, *, progress: bool = True, stop_after: int | None = None
) -> MetaTrainResult:
    """Meta-trains ``config.learned_optimizer`` and writes the run to ``workdir``; resumes if it was interrupted.

    The run directory gets ``config.json``, ``metrics.jsonl`` (one line per outer step: meta-loss, meta-grad
    norm, whether it was finite, skipped steps so far, seconds), ``checkpoints/<step>`` at step 0 (the
    initialisation, a candidate of checkpoint selection), every ``checkpoint_every`` steps and at the end (orbax:
    meta-parameters, meta-optimizer state, estimator states; written atomically, and a save a killed run left
    half-written is deleted, never restored) and ``meta_training.png``. Every random draw derives from (seed,
    outer step), so starting again with the same workdir continues from the last checkpoint and ends with the
    same meta-parameters, bit for bit, as an uninterrupted run.

    A non-finite meta-loss or meta-gradient skips the whole outer step (meta-update and estimator states)
    and is counted in ``metrics.jsonl``.

    Args:
      config: the run.
      workdir: the run directory.
      progress: show a tqdm progress bar.
      stop_after: stop (as if killed) after this many outer steps in total; for tests and time-boxed jobs.

    Returns:
      ``MetaTrainResult`` with the final meta-parameters.

    Raises:
      MetaTrainingDiverged: after ``max_consecutive_nonfinite`` skipped steps in a row; its message names the
        last checkpoint, which stays intact.

    Example:
      >>> family = l2o_jax.tasks.TaskFamily(datasets=('digits',), widths=(16,))
      >>> result = meta_train(MetaTrainConfig(GraphL2O(hidden=16, layers=2), family, outer_steps=50), 'runs/x')
    """
    workdir = os.path.abspath(os.fspath(workdir))
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json())
    init_key, steps_key, states_key = _run_keys(config.seed)
    meta_params = config.learned_optimizer.init(init_key)
    outer = outer_optimizer(config)
    arrays, opt_state = meta_params.arrays, outer.init(meta_params.arrays)
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    with _checkpoint_manager(workdir, create=True) as manager, task_mesh():
        start = manager.latest_step() or 0
        saved = _read_checkpoint(manager, start) if start else {}
        if start:
            arrays = ocp.tree.deserialize_tree(saved["arrays"], arrays)
            opt_state = ocp.tree.deserialize_tree(saved["opt_state"], opt_state)
        arrays, opt_state = replicate((arrays, opt_state))
        _keep_metrics(metrics_path, start)
        groups = _Groups(config.estimator, states_key, saved.get("estimator_states"))
        if 0 not in manager.all_steps():  # the initialisation is a candidate of checkpoint selection too
            manager.save(0, args=ocp.args.StandardSave({"arrays": arrays, "opt_state": opt_state}))
        end = config.outer_steps if stop_after is None else min(stop_after, config.outer_steps)
        bar = tqdm(
            range(start, end),
            initial=start,
            total=config.outer_steps,
            disable=not progress,
            desc=f"meta-train {type(config.learned_optimizer).__name__}",
            unit="step",
        )
        with open(metrics_path, "a") as log:
            for step in bar:
                started = time.perf_counter()
                before = dict(groups.states)
                loss, grads = _outer_step_gradient(config, groups, meta_params.replace(arrays=arrays), steps_key, step)
                arrays, opt_state = _apply_outer(outer, arrays, opt_state, loss, grads)
                jax.block_until_ready((arrays, opt_state, loss))  # the step's time, not its dispatch's
                record = _record(step, loss, grads, opt_state, time.perf_counter() - started)
                if not record["finite"]:
                    groups.states = before
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.set_postfix(meta_loss=f"{record['meta_loss']:.4f}", skipped=record["skipped"])
                if int(opt_state.notfinite_count) >= config.max_consecutive_nonfinite:
                    manager.wait_until_finished()
                    raise MetaTrainingDiverged(_diverged_message(config, step, manager.latest_step(), workdir))
                if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.outer_steps:
                    state = {"arrays": arrays, "opt_state": opt_state, "estimator_states": groups.checkpoint_states()}
                    manager.save(step + 1, args=ocp.args.StandardSave(state))
        manager.wait_until_finished()
    metrics = read_metrics(metrics_path)
    plot_meta_training(metrics, os.path.join(workdir, "meta_training.png"))
    return MetaTrainResult(
        meta_params=meta_params.replace(arrays=arrays),
        workdir=workdir,
        metrics=metrics,
        skipped_steps=int(opt_state.total_notfinite),
    )


def _outer_step_gradient(config: MetaTrainConfig, groups: _Groups, meta_params: MetaParams, steps_key, step: int):
    """Mean meta-loss and meta-gradient over the architectures sampled for outer step ``step``."""
    task_key, estimate_key, length_key = _step_keys(steps_key, step)
    sample_length = getattr(config.estimator, "sample_length", None)
    length = sample_length(length_key) if sample_length else None
    results = [
        groups.estimate(meta_params, task, jax.random.fold_in(estimate_key, i), length)
        for i, task in enumerate(_sample_tasks(config, task_key))
    ]
    loss = sum(r[0] for r in results) / len(results)
    grads = jax.tree.map(lambda *g: sum(g) / len(g), *[r[1] for r in results])
    return loss, grads


def _diverged_message(config: MetaTrainConfig, step: int, last_checkpoint: int | None, workdir: str) -> str:
    where = (
        f"the last good checkpoint is step {last_checkpoint} in {workdir}/checkpoints"
        if last_checkpoint
        else "no checkpoint was written"
    )
    return (
        f"{config.max_consecutive_nonfinite} consecutive outer steps (up to step {step + 1}) had a non-finite "
        f"meta-loss or meta-gradient; {where}. Lower meta_lr, shorten the unroll or use "
        "OutputConfig(init_lr=...)."
    )


def _record(step, loss, grads, opt_state, seconds) -> dict:
    grad_norm = float(optax.tree.norm(grads))
    return {
        "step": step + 1,
        "meta_loss": float(loss),
        "meta_grad_norm": grad_norm,
        "finite": bool(opt_state.last_finite),
        "skipped": int(opt_state.total_notfinite),
        "seconds": round(seconds, 4),
    }


def read_metrics(path: str) -> list[dict]:
    """The per-step records of a run's ``metrics.jsonl``."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _keep_metrics(path: str, step: int) -> None:
    """Keeps the records of the first ``step`` outer steps (those a resumed run restarts after)."""
    kept = [r for r in read_metrics(path) if r["step"] <= step]
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)


def plot_meta_training(metrics: list[dict], path: str) -> str | None:
    """Meta-loss per outer step (and a moving average) as a PNG."""
    if not metrics:
        return None
    from matplotlib.figure import Figure  # not pyplot: saving must not change the user's backend

    steps = np.array([r["step"] for r in metrics])
    loss = np.array([r["meta_loss"] for r in metrics], float)
    window = max(1, len(loss) // 20)
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot(steps, loss, alpha=0.35, label="meta-loss")
    ax.plot(steps[window - 1 :], smooth, label=f"moving average ({window})")
    ax.set_xlabel("outer step")
    ax.set_ylabel("meta-loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
