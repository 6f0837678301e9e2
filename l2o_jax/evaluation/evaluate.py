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

#: Seed 000's grid for the tuned baselines.
PAPER_LEARNING_RATES = (0.05, 0.005, 0.002, 0.001, 0.0005, 0.0001)
PAPER_WEIGHT_DECAYS = (0.0, 1e-5, 1e-3)


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


def _training_run(make_tx: Callable, task, steps: int, eval_every: int, split: str, max_eval_examples: int):
    """A pure function ``(key, hyperparams) -> curves`` training one optimizee with ``make_tx(hyperparams)``."""
    if steps % eval_every:
        raise ValueError(f"steps ({steps}) must be a multiple of eval_every ({eval_every}).")

    def run(key, hyper):
        tx = optax.with_extra_args_support(make_tx(hyper))
        init_key, run_key = jax.random.split(key)
        params = task.init(init_key)

        def step(carry, batch_key):
            params, state = carry
            loss, grads = jax.value_and_grad(task.loss)(params, task.sample_batch(batch_key))
            updates, state = tx.update(grads, state, params, value=loss)
            return (optax.apply_updates(params, updates), state), loss

        def chunk(carry, chunk_key):
            carry, losses = jax.lax.scan(step, carry, jax.random.split(chunk_key, eval_every))
            metrics = task.evaluate(carry[0], split, max_examples=max_eval_examples)
            return carry, (losses, metrics["loss"], metrics["accuracy"])

        first = task.evaluate(params, split, max_examples=max_eval_examples)
        _, (losses, eval_loss, eval_acc) = jax.lax.scan(
            chunk, (params, tx.init(params)), jax.random.split(run_key, steps // eval_every)
        )
        return (
            losses.reshape(-1),
            jnp.concatenate([first["loss"][None], eval_loss]),
            jnp.concatenate([first["accuracy"][None], eval_acc]),
        )

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
    run = _training_run(lambda _: optimizer, task, steps, eval_every, split, max_eval_examples)
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


BASELINES = {
    "adam": lambda lr, wd: optax.adamw(lr, weight_decay=wd),
    "rmsprop": lambda lr, wd: optax.chain(optax.add_decayed_weights(wd), optax.rmsprop(lr)),
    "sgd_momentum": lambda lr, wd: optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr, momentum=0.9)),
}


def baseline(name: str, learning_rate: float, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """A hand-made baseline by name: ``'adam'`` (AdamW), ``'rmsprop'`` or ``'sgd_momentum'``.

    Example:
      >>> tx = baseline('adam', 1e-3, 1e-5)
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; available: {sorted(BASELINES)}.")
    return BASELINES[name](learning_rate, weight_decay)


@dataclasses.dataclass
class TuningResult:
    """The grid search of a baseline: every configuration's validation accuracy and the winner."""

    name: str
    learning_rate: float
    weight_decay: float
    scores: list[dict]

    def optimizer(self) -> optax.GradientTransformation:
        return baseline(self.name, self.learning_rate, self.weight_decay)


def tune_baseline(
    name: str,
    task,
    steps: int,
    *,
    seeds: int = 2,
    learning_rates=PAPER_LEARNING_RATES,
    weight_decays=PAPER_WEIGHT_DECAYS,
    eval_every: int = 10,
    max_eval_examples: int = 2048,
) -> TuningResult:
    """Grid search of a baseline's learning rate x weight decay, scored by final validation accuracy (ties: loss).

    The whole grid and all seeds run in one compiled, vmapped program (the hyperparameters are traced).

    Example:
      >>> tuned = tune_baseline('adam', image_task('digits', width=32), steps=200)
      >>> result = evaluate(tuned.optimizer(), task, 200, name='adam (tuned)')
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; available: {sorted(BASELINES)}.")
    grid = list(itertools.product(learning_rates, weight_decays))
    hyper = jnp.asarray(grid, jnp.float32)
    run = _training_run(
        lambda h: optax.inject_hyperparams(BASELINES[name])(h[0], h[1]),
        task,
        steps,
        eval_every,
        "validation",
        max_eval_examples,
    )
    keys = jnp.stack([jax.random.key(10_000 + s) for s in range(seeds)])
    per_config = jax.vmap(lambda h: jax.vmap(lambda k: run(k, h))(keys))
    _, eval_loss, eval_acc = jax.jit(per_config)(hyper)
    acc = np.asarray(eval_acc[:, :, -1]).mean(1)
    loss = np.asarray(eval_loss[:, :, -1]).mean(1)
    acc = np.where(np.isfinite(acc) & np.isfinite(loss), acc, -np.inf)
    best = max(range(len(grid)), key=lambda i: (acc[i], -loss[i] if np.isfinite(loss[i]) else -np.inf))
    scores = [
        {"learning_rate": lr, "weight_decay": wd, "val_accuracy": float(a), "val_loss": float(l)}
        for (lr, wd), a, l in zip(grid, acc, loss)
    ]
    return TuningResult(name=name, learning_rate=grid[best][0], weight_decay=grid[best][1], scores=scores)


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
