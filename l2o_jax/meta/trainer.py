"""The meta-training loop: outer optimizer, NaN guard, orbax checkpoints, resume, metrics, model selection."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from l2o_jax.meta.estimators import FullUnrollBPTT
from l2o_jax.meta.sharding import task_mesh
from l2o_jax.meta.unroll import UnrollConfig
from l2o_jax.meta.unroll import fresh_unroll_loss
from l2o_jax.optimizers import LearnedOptimizer
from l2o_jax.optimizers import MetaParams


class MetaTrainingDiverged(RuntimeError):
    """Too many consecutive outer steps had a non-finite meta-loss or meta-gradient."""


@dataclasses.dataclass(frozen=True)
class MetaTrainConfig:
    """Everything that defines a meta-training run (saved as ``config.json`` in the run directory).

    Attributes:
      learned_optimizer: the family and its hyperparameters, e.g. ``GraphL2O(hidden=32, layers=4)``.
      task_family: an ``l2o_jax.tasks.TaskFamily``; each outer step samples ``tasks_per_step`` tasks.
      estimator: a gradient estimator from ``l2o_jax.meta.estimators``.
      outer_steps: number of meta-updates.
      meta_lr, schedule: Adam's learning rate and ``'cosine'`` decay to 0 or ``'constant'`` (seed 000: 3e-4
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
        return json.dumps(_jsonable(self), indent=2, sort_keys=True)


def _jsonable(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"type": type(value).__name__, **out}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)


def outer_optimizer(config: MetaTrainConfig) -> optax.GradientTransformation:
    """Adam with cosine decay and clipping, skipping (and counting) non-finite meta-gradients.

    Example:
      >>> tx = outer_optimizer(MetaTrainConfig(GraphL2O(), family, outer_steps=100))
    """
    if config.schedule == "cosine":
        lr = optax.cosine_decay_schedule(config.meta_lr, max(config.outer_steps, 1))
    elif config.schedule == "constant":
        lr = config.meta_lr
    else:
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {config.schedule!r}.")
    inner = optax.chain(optax.clip_by_global_norm(config.clip_norm), optax.adam(lr))
    return optax.apply_if_finite(inner, max_consecutive_errors=config.max_consecutive_nonfinite)


@dataclasses.dataclass
class MetaTrainResult:
    """What ``meta_train`` returns: the final meta-parameters and where everything was written."""

    meta_params: MetaParams
    workdir: str
    metrics: list[dict]
    skipped_steps: int


def _step_keys(seed: int, step: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Independent keys of one outer step, derived from (seed, step) alone so a resumed run draws the same."""
    return tuple(jax.random.split(jax.random.fold_in(jax.random.key(seed), step), 3))


def _sample_tasks(config: MetaTrainConfig, key) -> list:
    return [config.task_family.sample(k) for k in jax.random.split(key, config.tasks_per_step)]


class _Groups:
    """Per-architecture device data, estimator state and compiled estimate functions."""

    def __init__(self, config: MetaTrainConfig):
        self.config = config
        self.tasks: dict[str, Any] = {}
        self.states: dict[str, Any] = {}
        self._estimate = jax.jit(config.estimator.estimate, static_argnames=("length",)) \
            if isinstance(config.estimator, FullUnrollBPTT) else jax.jit(config.estimator.estimate)

    def task(self, task):
        if task.name not in self.tasks:
            self.tasks[task.name] = jax.device_put(task)
        return self.tasks[task.name]

    def estimate(self, meta_params: MetaParams, task, key, length_key):
        task = self.task(task)
        if task.name not in self.states:
            self.states[task.name] = self.config.estimator.init(meta_params, task, jax.random.fold_in(key, 7))
        kwargs = {}
        if isinstance(self.config.estimator, FullUnrollBPTT):
            kwargs["length"] = self.config.estimator.sample_length(length_key)
        loss, grads, self.states[task.name] = self._estimate(meta_params, task, self.states[task.name], key, **kwargs)
        return loss, grads


def _checkpoint_manager(workdir: str, every: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(save_interval_steps=every, max_to_keep=None, create=True)
    return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"), options=options)


def _save(manager: ocp.CheckpointManager, step: int, arrays, opt_state, groups: _Groups, force=False) -> None:
    state = {"arrays": arrays, "opt_state": opt_state, "estimator_states": groups.states}
    manager.save(step, args=ocp.args.StandardSave(state), force=force)


def _restore(manager: ocp.CheckpointManager, arrays, opt_state, groups: _Groups, meta_params, config, step_hint):
    step = manager.latest_step()
    # Estimator states are created lazily; rebuild the templates for the architectures seen so far.
    for s in range(step):
        for task in _sample_tasks(config, _step_keys(config.seed, s)[0]):
            if task.name not in groups.states:
                groups.states[task.name] = config.estimator.init(meta_params, groups.task(task),
                                                                 jax.random.fold_in(_step_keys(config.seed, s)[1], 7))
    del step_hint
    template = {"arrays": arrays, "opt_state": opt_state, "estimator_states": groups.states}
    restored = manager.restore(step, args=ocp.args.StandardRestore(template))
    groups.states = restored["estimator_states"]
    return step, restored["arrays"], restored["opt_state"]


def meta_train(config: MetaTrainConfig, workdir: str | os.PathLike, *, progress: bool = True,
               stop_after: int | None = None) -> MetaTrainResult:
    """Meta-trains ``config.learned_optimizer`` and writes the run to ``workdir``; resumes if it was interrupted.

    The run directory gets ``config.json``, ``metrics.jsonl`` (one line per outer step: meta-loss, meta-grad
    norm, skipped steps, seconds), ``checkpoints/<step>`` every ``checkpoint_every`` steps (orbax, written
    atomically: an interrupted save is never restored) and ``meta_training.png``. Starting again with the same
    workdir continues from the last checkpoint and ends with the same meta-parameters, bit for bit, as an
    uninterrupted run.

    Args:
      config: the run.
      workdir: the run directory.
      progress: show a tqdm progress bar.
      stop_after: stop (as if killed) after this many outer steps in total; for tests and time-boxed jobs.

    Returns:
      ``MetaTrainResult`` with the final meta-parameters.

    Raises:
      MetaTrainingDiverged: after ``max_consecutive_nonfinite`` skipped steps in a row; the checkpoints
        written before stay intact.

    Example:
      >>> family = l2o_jax.tasks.TaskFamily(datasets=('digits',), widths=(16,))
      >>> result = meta_train(MetaTrainConfig(GraphL2O(hidden=16, layers=2), family, outer_steps=50), 'runs/x')
    """
    workdir = os.path.abspath(os.fspath(workdir))
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json())
    key = jax.random.key(config.seed)
    meta_params = config.learned_optimizer.init(jax.random.fold_in(key, -1 % 2**31))
    outer = outer_optimizer(config)
    arrays, opt_state = meta_params.arrays, outer.init(meta_params.arrays)
    groups = _Groups(config)
    manager = _checkpoint_manager(workdir, config.checkpoint_every)
    start = 0
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    if manager.latest_step() is not None:
        start, arrays, opt_state = _restore(manager, arrays, opt_state, groups, meta_params, config, None)
        _truncate_metrics(metrics_path, start)
    elif os.path.exists(metrics_path):
        os.remove(metrics_path)
    end = config.outer_steps if stop_after is None else min(stop_after, config.outer_steps)
    apply_outer = jax.jit(outer.update)
    bar = tqdm(range(start, end), initial=start, total=config.outer_steps, disable=not progress,
               desc=f"meta-train {type(config.learned_optimizer).__name__}", unit="step")
    with task_mesh(), open(metrics_path, "a") as log:
        for step in bar:
            started = time.perf_counter()
            task_key, estimate_key, length_key = _step_keys(config.seed, step)
            meta = meta_params.replace(arrays=arrays)
            results = [groups.estimate(meta, t, jax.random.fold_in(estimate_key, i), length_key)
                       for i, t in enumerate(_sample_tasks(config, task_key))]
            loss = sum(r[0] for r in results) / len(results)
            grads = jax.tree.map(lambda *g: sum(g) / len(g), *[r[1] for r in results])
            updates, opt_state = apply_outer(grads, opt_state, arrays)
            arrays = optax.apply_updates(arrays, updates)
            record = _record(step, loss, grads, opt_state, time.perf_counter() - started)
            log.write(json.dumps(record) + "\n")
            log.flush()
            bar.set_postfix(meta_loss=f"{record['meta_loss']:.4f}", skipped=record["skipped"])
            if int(opt_state.notfinite_count) >= config.max_consecutive_nonfinite:
                manager.wait_until_finished()
                raise MetaTrainingDiverged(
                    f"{config.max_consecutive_nonfinite} consecutive outer steps (up to step {step}) had a non-finite "
                    f"meta-loss or meta-gradient; the last good checkpoint is {manager.latest_step()} in "
                    f"{workdir}/checkpoints. Lower meta_lr, shorten the unroll or use OutputConfig(init_lr=...).")
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.outer_steps:
                _save(manager, step + 1, arrays, opt_state, groups, force=True)
    manager.wait_until_finished()
    manager.close()
    metrics = read_metrics(metrics_path)
    plot_meta_training(metrics, os.path.join(workdir, "meta_training.png"))
    return MetaTrainResult(meta_params=meta_params.replace(arrays=arrays), workdir=workdir, metrics=metrics,
                           skipped_steps=int(opt_state.total_notfinite))


def _record(step, loss, grads, opt_state, seconds) -> dict:
    grad_norm = float(optax.global_norm(grads))
    return {"step": step + 1, "meta_loss": float(loss), "meta_grad_norm": grad_norm,
            "finite": bool(math.isfinite(float(loss)) and math.isfinite(grad_norm)),
            "skipped": int(opt_state.total_notfinite), "seconds": round(seconds, 4)}


def read_metrics(path: str) -> list[dict]:
    """The per-step records of a run's ``metrics.jsonl``."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _truncate_metrics(path: str, step: int) -> None:
    """Drops records past the checkpoint a resumed run restarts from."""
    kept = [r for r in read_metrics(path) if r["step"] <= step]
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)


def plot_meta_training(metrics: list[dict], path: str) -> str | None:
    """Meta-loss per outer step (and a moving average) as a PNG."""
    if not metrics:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["step"] for r in metrics])
    loss = np.array([r["meta_loss"] for r in metrics], float)
    window = max(1, len(loss) // 20)
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, loss, alpha=0.35, label="meta-loss")
    ax.plot(steps[window - 1:], smooth, label=f"moving average ({window})")
    ax.set_xlabel("outer step")
    ax.set_ylabel("meta-loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def checkpoint_steps(workdir: str | os.PathLike) -> list[int]:
    """The outer steps at which a run has complete checkpoints."""
    with _checkpoint_manager(os.fspath(workdir), 1) as manager:
        return list(manager.all_steps())


def load_checkpoint(workdir: str | os.PathLike, step: int, learned_optimizer: LearnedOptimizer) -> MetaParams:
    """The meta-parameters stored at ``step`` of a run."""
    template = learned_optimizer.init(jax.random.key(0))
    with _checkpoint_manager(os.fspath(workdir), 1) as manager:
        restored = manager.restore(step, args=ocp.args.PyTreeRestore(
            item={"arrays": template.arrays}, restore_args={"arrays": jax.tree.map(lambda _: ocp.RestoreArgs(),
                                                                                      template.arrays)},
            partial_restore=True))
    return template.replace(arrays=restored["arrays"])


def select_best_checkpoint(workdir, learned_optimizer: LearnedOptimizer, validation_tasks, *, length: int = 100,
                           seeds: int = 2) -> tuple[int, MetaParams, dict[int, float]]:
    """Scores every checkpoint of a run by the validation loss after ``length`` inner steps (seed 000's model
    selection) and returns ``(best_step, best_meta_params, scores)``.

    Example:
      >>> step, best, scores = select_best_checkpoint('runs/x', GraphL2O(), [image_task('digits', width=16)])
    """
    config = UnrollConfig(meta_loss="validation")
    score = jax.jit(lambda arrays, meta, task, key: fresh_unroll_loss(arrays, meta, task, key, length, config))
    scores = {}
    for step in checkpoint_steps(workdir):
        meta = load_checkpoint(workdir, step, learned_optimizer)
        values = [score(meta.arrays, meta, t, jax.random.key(1000 + s)) for t in validation_tasks for s in range(seeds)]
        scores[step] = float(jnp.mean(jnp.stack(values)))
    finite = {s: v for s, v in scores.items() if math.isfinite(v)}
    if not finite:
        raise MetaTrainingDiverged(f"no checkpoint in {workdir} gives a finite validation loss: {scores}.")
    best = min(finite, key=finite.get)
    return best, load_checkpoint(workdir, best, learned_optimizer), scores
