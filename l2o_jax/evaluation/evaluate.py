"""Running any optax optimizer (learned or hand-made) on a task over seeds, and tuning the hand-made baselines."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2o_jax.meta.unroll import init_state
from l2o_jax.meta.unroll import optax_rule
from l2o_jax.meta.unroll import rollout
from l2o_jax.optimizers import RUN_LENGTH_OUTPUT
from l2o_jax.optimizers import relative_update_cap
from l2o_jax.optimizers import warmup_cosine

#: The default grid of the tuned baselines: learning rates a factor 2 apart from 1e-4 to ~0.1, so that the
#: best one is within a factor sqrt(2) of the grid's, times a small weight-decay grid.
FINE_LEARNING_RATES = tuple(1e-4 * 2.0**k for k in range(11))
FINE_WEIGHT_DECAYS = (0.0, 1e-4)

#: The grid of Sbicego et al.'s replication of Kofinas et al., kept for replicating their tables; it has a 10x gap
#: at 0.005-0.05.
KOFINAS_LEARNING_RATES = (0.05, 0.005, 0.002, 0.001, 0.0005)
KOFINAS_WEIGHT_DECAYS = (0.0, 1e-5, 1e-3)

#: Older names of Kofinas et al.'s grid.
PAPER_LEARNING_RATES = KOFINAS_LEARNING_RATES
PAPER_WEIGHT_DECAYS = KOFINAS_WEIGHT_DECAYS

#: The smallest validation set a baseline is tuned on, unless the split itself is smaller.
MIN_VALIDATION_EXAMPLES = 1024


@dataclasses.dataclass
class EvalResult:
    """Curves of one optimizer on one task; arrays have a leading seed axis.

    Attributes:
      name: the optimizer's label.
      train_loss: ``(seeds, steps)`` training loss at every step.
      eval_steps: ``(evals,)`` step counts at which the evaluation split was scored (0 = before training).
      eval_loss, eval_accuracy: ``(seeds, evals)`` on ``split``.
      split: the evaluation split.
    """

    name: str
    train_loss: np.ndarray
    eval_steps: np.ndarray
    eval_loss: np.ndarray
    eval_accuracy: np.ndarray
    split: str = "test"

    @property
    def final_accuracy(self) -> tuple[float, float]:
        """Mean and std over seeds of the last evaluation's accuracy."""
        return float(self.eval_accuracy[:, -1].mean()), float(self.eval_accuracy[:, -1].std())

    @property
    def final_loss(self) -> tuple[float, float]:
        return float(self.eval_loss[:, -1].mean()), float(self.eval_loss[:, -1].std())

    def summary(self) -> dict:
        """JSON-ready means and stds."""
        acc, acc_std = self.final_accuracy
        loss, loss_std = self.final_loss
        return {
            "name": self.name,
            "split": self.split,
            "seeds": int(self.train_loss.shape[0]),
            "steps": int(self.train_loss.shape[1]),
            "final_accuracy": acc,
            "final_accuracy_std": acc_std,
            "final_loss": loss,
            "final_loss_std": loss_std,
            "final_train_loss": float(self.train_loss[:, -10:].mean()),
            "finite": bool(np.isfinite(self.train_loss).all() and np.isfinite(self.eval_loss).all()),
        }

    def to_json(self) -> dict:
        return {
            **self.summary(),
            "eval_steps": self.eval_steps.tolist(),
            "eval_accuracy": self.eval_accuracy.tolist(),
            "eval_loss": self.eval_loss.tolist(),
            "train_loss_mean": self.train_loss.mean(0).tolist(),
        }


def training_run(make_tx: Callable, task, steps: int, eval_every: int, split: str, max_eval_examples: int):
    """A pure function ``(key, hyperparams) -> (train losses, eval losses, eval accuracies)`` training one
    optimizee with ``make_tx(hyperparams)`` by ``l2o_jax.meta.rollout``; the hyperparameters may be traced, so a
    vmapped grid of them compiles once.

    Example:
      >>> run = training_run(lambda lr: optax.adam(lr), image_task('digits'), 100, 50, 'validation', 2048)
      >>> losses, eval_loss, eval_accuracy = jax.vmap(run, (None, 0))(jax.random.key(0), jnp.array([1e-3, 1e-2]))
    """
    if steps % eval_every:
        raise ValueError(f"steps ({steps}) must be a multiple of eval_every ({eval_every}).")

    def run(key, hyper):
        tx = make_tx(hyper)
        _, trace = rollout(
            task,
            optax_rule(tx),
            init_state(task, tx.init, key),
            steps,
            evaluate_every=eval_every,
            split=split,
            max_eval_examples=max_eval_examples,
        )
        return trace.losses, trace.eval_loss, trace.eval_accuracy

    return run


def evaluate(
    optimizer: optax.GradientTransformation,
    task,
    steps: int,
    seeds: int | tuple = 5,
    *,
    name: str = "optimizer",
    eval_every: int = 10,
    split: str = "test",
    max_eval_examples: int = 2048,
) -> EvalResult:
    """Trains fresh optimizees of ``task`` with ``optimizer`` for ``steps`` steps over ``seeds``, jitted and
    vmapped over seeds, scoring ``split`` every ``eval_every`` steps.

    Args:
      optimizer: any optax transform; learned ones get ``value=loss`` each step.
      task: an ``l2o_jax.tasks.Task``.
      steps: inner steps (a multiple of ``eval_every``).
      seeds: how many seeds (0..n-1), or explicit seed integers.
      name: label for tables and plots.

    Returns:
      ``EvalResult``.

    Example:
      >>> result = evaluate(optax.adam(1e-3), image_task('digits'), steps=200, seeds=5, name='adam')
      >>> result.final_accuracy
    """
    seeds = tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)
    run = training_run(lambda _: optimizer, task, steps, eval_every, split, max_eval_examples)
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    losses, eval_loss, eval_acc = jax.jit(jax.vmap(lambda k: run(k, None)))(keys)
    return EvalResult(
        name=name,
        train_loss=np.asarray(losses),
        eval_steps=np.arange(0, steps + 1, eval_every),
        eval_loss=np.asarray(eval_loss),
        eval_accuracy=np.asarray(eval_acc),
        split=split,
    )


def _adam_cosine(learning_rate, weight_decay, steps: int) -> optax.GradientTransformation:
    """AdamW with a linear warmup over the first 5 % of ``steps`` and a cosine decay to 0 at ``steps``.

    The schedule is the learned optimizers' ``warmup_cosine`` (peak 1) scaled by ``learning_rate``, so the
    learning rate may be traced.
    """
    return optax.adamw(lambda count: learning_rate * warmup_cosine(count, steps), weight_decay=weight_decay)


def _adam_cosine_capped(learning_rate, weight_decay, steps: int) -> optax.GradientTransformation:
    """``_adam_cosine`` with the learned optimizers' start's update cap (``RUN_LENGTH_OUTPUT.update_cap``): the
    hand-made twin of the start they are meta-trained from."""
    return optax.chain(
        _adam_cosine(learning_rate, weight_decay, steps), relative_update_cap(RUN_LENGTH_OUTPUT.update_cap)
    )


#: The hand-made baselines: ``(learning_rate, weight_decay, steps) -> optax transform``; ``steps`` is the
#: horizon, which only the scheduled ones use.
BASELINES = {
    "adam": lambda lr, wd, steps: optax.adamw(lr, weight_decay=wd),
    "rmsprop": lambda lr, wd, steps: optax.chain(optax.add_decayed_weights(wd), optax.rmsprop(lr)),
    "sgd_momentum": lambda lr, wd, steps: optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr, momentum=0.9)),
    "sgd": lambda lr, wd, steps: optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr)),
    "adagrad": lambda lr, wd, steps: optax.chain(optax.add_decayed_weights(wd), optax.adagrad(lr)),
    "adam_cosine": _adam_cosine,
    "adam_cosine_capped": _adam_cosine_capped,
}
SCHEDULED_BASELINES = ("adam_cosine", "adam_cosine_capped")


def baseline(
    name: str, learning_rate: float, weight_decay: float = 0.0, *, steps: int | None = None
) -> optax.GradientTransformation:
    """A hand-made baseline by name: ``'adam'`` (AdamW), ``'rmsprop'``, ``'sgd_momentum'`` (momentum 0.9), ``'sgd'``,
    ``'adagrad'``, ``'adam_cosine'`` (AdamW, 5 % linear warmup, cosine decay to 0 at ``steps``, which it needs) or
    ``'adam_cosine_capped'`` (the same with each weight tensor's step capped at 0.1 times its norm).

    Example:
      >>> tx = baseline('adam', 1e-3, 1e-5)
      >>> scheduled = baseline('adam_cosine', 3e-3, steps=1000)
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; available: {sorted(BASELINES)}.")
    if name in SCHEDULED_BASELINES and steps is None:
        raise ValueError(f"baseline {name!r} decays its learning rate over the horizon: pass steps=.")
    return BASELINES[name](learning_rate, weight_decay, steps)


@dataclasses.dataclass
class TuningResult:
    """The grid search of a baseline: every configuration's validation scores, the winner and how it was picked.

    Attributes:
      name: the baseline (a key of ``BASELINES``).
      learning_rate, weight_decay: the pick.
      scores: one dict per grid point: ``learning_rate``, ``weight_decay``, ``val_loss``, ``val_accuracy``
        (means over seeds at the horizon).
      on_edge: the pick is the grid's smallest or largest learning rate, so a better one may lie outside it.
      steps: the horizon the baseline was tuned at (and, for scheduled baselines, decays over).
      seeds: training runs per grid point.
      validation_examples: validation examples scored per run.
      select_by: ``'loss'`` (lowest mean validation loss) or ``'accuracy'`` (highest; ties: loss).
    """

    name: str
    learning_rate: float
    weight_decay: float
    scores: list[dict]
    on_edge: bool = False
    steps: int | None = None
    seeds: int = 3
    validation_examples: int = 0
    select_by: str = "loss"

    def optimizer(self) -> optax.GradientTransformation:
        return baseline(self.name, self.learning_rate, self.weight_decay, steps=self.steps)

    @property
    def label(self) -> str:
        """How tables and plots name it, e.g. ``'adam (tuned: lr=0.0064, wd=0)'``; a pick on the grid's edge says so."""
        edge = ", on the grid's edge" if self.on_edge else ""
        return f"{self.name} (tuned: lr={self.learning_rate:g}, wd={self.weight_decay:g}{edge})"

    @property
    def selection(self) -> str:
        """The selection rule in words."""
        return (
            f"validation {self.select_by} at step {self.steps}, mean over {self.seeds} seeds, "
            f"{self.validation_examples} validation examples"
        )


def tune_baseline(
    name: str,
    task,
    steps: int,
    *,
    seeds: int = 3,
    learning_rates=FINE_LEARNING_RATES,
    weight_decays=FINE_WEIGHT_DECAYS,
    max_eval_examples: int = 4096,
    select_by: str = "loss",
    previous: TuningResult | None = None,
) -> TuningResult:
    """Grid search of a baseline's learning rate x weight decay on ``task``'s validation split at the horizon.

    Every grid point trains ``seeds`` fresh optimizees for ``steps`` steps (seeds 10000.., apart from the
    evaluation's) and is scored at step ``steps`` on the first ``max_eval_examples`` validation examples (at
    least ``MIN_VALIDATION_EXAMPLES`` or the whole split). The whole grid and all seeds run in one compiled,
    vmapped program (the hyperparameters are traced).

    Args:
      name: a key of ``BASELINES``.
      task: an ``l2o_jax.tasks.Task``.
      steps: the horizon, the same as the evaluation's.
      seeds: runs per grid point.
      learning_rates, weight_decays: the grid (default: the fine grid; ``KOFINAS_*`` is Sbicego et al.'s).
      max_eval_examples: validation examples scored.
      select_by: ``'loss'`` (lowest mean validation loss) or ``'accuracy'`` (highest; ties: loss).
      previous: an earlier search of the same baseline on the same task, horizon and seeds, to extend (a grid
        widened past its edge): its points are not trained again, and the pick is the best of both grids.

    Returns:
      ``TuningResult``; non-finite grid points are never picked.

    Example:
      >>> tuned = tune_baseline('adam', image_task('digits', width=32), steps=200)
      >>> tuned.on_edge, tuned.selection
      >>> result = evaluate(tuned.optimizer(), task, 200, name=tuned.label)
      >>> wider = tune_baseline('adam', task, 200, learning_rates=(0.2048, 0.4096), previous=tuned)
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; available: {sorted(BASELINES)}.")
    if select_by not in ("loss", "accuracy"):
        raise ValueError(f"select_by must be 'loss' or 'accuracy', got {select_by!r}.")
    available = task.data.split("validation")[0].shape[0]
    examples = min(max_eval_examples, available)
    if examples < min(MIN_VALIDATION_EXAMPLES, available):
        raise ValueError(
            f"max_eval_examples={max_eval_examples} scores too few validation examples: tuning scores at least "
            f"{MIN_VALIDATION_EXAMPLES} (or the whole split, {available})."
        )
    if previous is not None:
        _check_extends(previous, name, steps, seeds, select_by, weight_decays, examples)
    scored = [] if previous is None else list(previous.scores)
    done = {(s["learning_rate"], s["weight_decay"]) for s in scored}
    grid = [point for point in itertools.product(learning_rates, weight_decays) if point not in done]
    if grid:
        scored += _grid_scores(name, task, steps, grid, seeds, examples)
    scored.sort(key=lambda s: (s["learning_rate"], s["weight_decay"]))  # ties go to the smaller learning rate
    finite = [s for s in scored if np.isfinite(s["val_loss"]) and np.isfinite(s["val_accuracy"])]
    if not finite:
        raise ValueError(f"every configuration of {name!r} diverged on {task.name} over {steps} steps.")
    rank = (lambda s: (s["val_loss"],)) if select_by == "loss" else (lambda s: (-s["val_accuracy"], s["val_loss"]))
    best = min(finite, key=rank)
    searched = {s["learning_rate"] for s in scored}
    return TuningResult(
        name=name,
        learning_rate=best["learning_rate"],
        weight_decay=best["weight_decay"],
        scores=scored,
        on_edge=len(searched) > 1 and best["learning_rate"] in (min(searched), max(searched)),
        steps=steps,
        seeds=seeds,
        validation_examples=examples,
        select_by=select_by,
    )


def _check_extends(previous: TuningResult, name, steps, seeds, select_by, weight_decays, examples) -> None:
    """Raises unless ``previous`` searched the same baseline, horizon, seeds, rule, weight decays and validation
    examples as the search it is to extend (only its learning rates may differ)."""
    searched = (
        previous.name,
        previous.steps,
        previous.seeds,
        previous.select_by,
        sorted({s["weight_decay"] for s in previous.scores}),
        previous.validation_examples,
    )
    wanted = (name, steps, seeds, select_by, sorted(set(weight_decays)), examples)
    if searched != wanted:
        fields = ("baseline", "steps", "seeds", "select_by", "weight decays", "validation examples")
        differ = ", ".join(f"{f} {a!r} (previous) vs {b!r}" for f, a, b in zip(fields, searched, wanted) if a != b)
        raise ValueError(f"tune_baseline: previous= is another search than this one: {differ}.")


def _grid_scores(name: str, task, steps: int, grid: list, seeds: int, examples: int) -> list[dict]:
    """Mean validation loss and accuracy at the horizon of every ``(learning rate, weight decay)`` of ``grid``, in
    one compiled program vmapped over the grid and the seeds."""
    hyper = jnp.asarray(grid, jnp.float32)
    factory = BASELINES[name]
    run = training_run(lambda h: factory(h[0], h[1], steps), task, steps, steps, "validation", examples)
    keys = jnp.stack([jax.random.key(10_000 + s) for s in range(seeds)])
    per_config = jax.vmap(lambda h: jax.vmap(lambda k: run(k, h))(keys))
    _, eval_loss, eval_acc = jax.jit(per_config)(hyper)
    loss = np.asarray(eval_loss[:, :, -1]).mean(1)
    acc = np.asarray(eval_acc[:, :, -1]).mean(1)
    return [
        {"learning_rate": lr, "weight_decay": wd, "val_loss": float(l), "val_accuracy": float(a)}
        for (lr, wd), l, a in zip(grid, loss, acc)
    ]


def save_results(results: list[EvalResult], path: str | os.PathLike) -> str:
    """Writes results (curves and summaries) as JSON."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump([r.to_json() for r in results], f, indent=1)
    return path


def results_table(results: list[EvalResult], baseline_name: str | None = None) -> str:
    """A markdown table of final accuracy / loss (mean ± std over seeds), with the advantage over a baseline."""
    base = next((r for r in results if r.name == baseline_name), None)
    head = "| optimizer | final accuracy (%) | final loss | train loss (last 10 steps) |"
    rule = "|---|---|---|---|"
    if base is not None:
        head, rule = head + f" vs {base.name} (pp) |", rule + "---|"
    rows = [head, rule]
    for r in results:
        s = r.summary()
        row = (
            f"| {r.name} | {100 * s['final_accuracy']:.2f} ± {100 * s['final_accuracy_std']:.2f} | "
            f"{s['final_loss']:.4f} ± {s['final_loss_std']:.4f} | {s['final_train_loss']:.4f} |"
        )
        if base is not None:
            row += f" {100 * (s['final_accuracy'] - base.final_accuracy[0]):+.2f} |"
        rows.append(row)
    return "\n".join(rows)
