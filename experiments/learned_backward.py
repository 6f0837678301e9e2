"""Seed 001: meta-train a learned backward pass, then compare it with true gradients under SGD and Adam.

First SGD's and Adam's learning rates are tuned on true gradients (validation accuracy on the meta-training
architecture), so that a learned pass cannot win merely by rescaling the gradients of a badly chosen learning rate.
Then the learned backward pass (``l2o_jax.backward``) starts as exact backprop and is meta-trained with
``l2o_jax.meta`` (full-unroll BPTT through the inner runs) twice: once under SGD and once under Adam, each at its
tuned learning rate. On held-out tasks (new seeds, a wider and a deeper network, a CNN) each optimizer trains fresh
optimizees for N steps with true and with learned gradients. Reported: final test loss and accuracy, mean ± std
over 5 seeds, and the meta-loss on held-out seeds before and after meta-training.

    python experiments/learned_backward.py --scale smoke                  # digits; CPU, minutes
    python experiments/learned_backward.py --scale paper --data-dir DIR   # FashionMNIST (tfds, prepared); GPU
    python experiments/learned_backward.py --scale paper --dry-run        # its pipeline at a tiny size (seconds)

Writes ``learned_backward_<scale>.json`` (the data and provenance), ``.md`` (its page, rendered by
``experiments/report.py``) and ``.png`` (curves) to ``--out``; the meta-training runs (metrics, checkpoints,
curves) go to ``--workdir``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import jax
import numpy as np
import report
from tqdm.auto import tqdm

from l2o_jax.backward import LearnedBackward
from l2o_jax.backward import learned_gradient_task
from l2o_jax.evaluation import evaluate
from l2o_jax.evaluation import tune_baseline
from l2o_jax.meta import FullUnrollBPTT
from l2o_jax.meta import MetaTrainConfig
from l2o_jax.meta import UnrollConfig
from l2o_jax.meta import fresh_unroll_loss
from l2o_jax.meta import meta_train
from l2o_jax.tasks import DatasetUnavailableError
from l2o_jax.tasks import TaskFamily
from l2o_jax.tasks import image_task

EVAL_SEEDS = tuple(range(1000, 1005))
TUNING_SEEDS = (0, 1)
OPTIMIZERS = {"SGD": "sgd", "Adam": "adam"}


@dataclasses.dataclass(frozen=True)
class Scale:
    """One experiment size.

    Attributes:
      family: the meta-training task family.
      eval_tasks: held-out tasks by label, as ``image_task`` arguments.
      hidden, layers: the learned backward pass's networks.
      unroll, num_tasks, outer_steps, meta_lr: meta-training (BPTT through ``unroll`` inner steps of
        ``num_tasks`` optimizees per outer step).
      tuning_grid: learning rates tried for SGD and Adam on true gradients; the best is used for meta-training
        and evaluation.
      eval_steps, eval_every: the held-out runs.
    """

    family: TaskFamily
    eval_tasks: dict
    hidden: int
    layers: int
    unroll: int
    num_tasks: int
    outer_steps: int
    meta_lr: float
    tuning_grid: dict
    eval_steps: int
    eval_every: int


def smoke_scale() -> Scale:
    """Embedded digits on a CPU: meta-train on a one-hidden-layer MLP; judge on wider, deeper and conv nets."""
    family = TaskFamily(datasets=("digits",), models=("mlp",), widths=(32,), depths=(2,), batch_size=32)
    eval_tasks = {
        "same architecture": dict(dataset="digits", model="mlp", width=32, depth=2),
        "4x wider": dict(dataset="digits", model="mlp", width=128, depth=2),
        "deeper (3 hidden)": dict(dataset="digits", model="mlp", width=32, depth=4),
        "CNN": dict(dataset="digits", model="cnn", width=8, depth=2),
    }
    return Scale(
        family=family,
        eval_tasks={k: {**v, "batch_size": 32} for k, v in eval_tasks.items()},
        hidden=16,
        layers=2,
        unroll=30,
        num_tasks=2,
        outer_steps=100,
        meta_lr=3e-3,
        tuning_grid={"SGD": (0.1, 0.3, 1.0), "Adam": (3e-3, 1e-2, 3e-2)},
        eval_steps=200,
        eval_every=20,
    )


def paper_scale(data_dir: str | None = None) -> Scale:
    """FashionMNIST on a GPU: meta-train on MLPs and CNNs; judge on 4x wider and deeper ones."""
    family = TaskFamily(
        datasets=("fashion_mnist",),
        models=("mlp", "cnn"),
        widths=(64,),
        depths=(3,),
        batch_size=128,
        data_dir=data_dir,
    )
    base = dict(dataset="fashion_mnist", batch_size=128, data_dir=data_dir)
    eval_tasks = {
        "MLP, same architecture": dict(model="mlp", width=64, depth=3),
        "MLP, 4x wider": dict(model="mlp", width=256, depth=3),
        "MLP, deeper (5 hidden)": dict(model="mlp", width=64, depth=6),
        "CNN, same architecture": dict(model="cnn", width=64, depth=3),
        "CNN, deeper": dict(model="cnn", width=64, depth=5),
    }
    return Scale(
        family=family,
        eval_tasks={k: {**base, **v} for k, v in eval_tasks.items()},
        hidden=32,
        layers=2,
        unroll=100,
        num_tasks=8,
        outer_steps=1000,
        meta_lr=1e-3,
        tuning_grid={"SGD": (0.01, 0.03, 0.1, 0.3, 1.0), "Adam": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)},
        eval_steps=1000,
        eval_every=50,
    )


SCALES = ("paper", "smoke")


def dry_run_scale(scale: Scale) -> Scale:
    """``scale``'s datasets, model kinds and stages at a tiny size (seconds on a CPU). Of the held-out tasks only
    the last is kept (at paper scale: a deeper CNN; every held-out task is the same evaluation), shrunk like the
    rest."""
    family = dataclasses.replace(scale.family, widths=(4,), batch_size=8)
    last = list(scale.eval_tasks)[-1]
    shrink = lambda kwargs: {**kwargs, "width": max(2, 4 * kwargs["width"] // scale.family.widths[0]), "batch_size": 8}
    return dataclasses.replace(
        scale,
        family=family,
        eval_tasks={last: shrink(scale.eval_tasks[last])},
        hidden=8,
        layers=1,
        unroll=3,
        num_tasks=2,
        outer_steps=2,
        tuning_grid={name: grid[:1] for name, grid in scale.tuning_grid.items()},
        eval_steps=4,
        eval_every=2,
    )


def meta_train_backward(scale: Scale, optimizer: str, learning_rate: float, workdir: str, progress: bool):
    """Meta-trains a learned backward pass under ``optimizer`` (``'SGD'`` or ``'Adam'``) from the backprop
    initialisation; returns its meta-parameters, the run's metrics and the wall time."""
    config = LearnedBackward(
        hidden=scale.hidden, layers=scale.layers, optimizer=OPTIMIZERS[optimizer], learning_rate=learning_rate
    )
    run = MetaTrainConfig(
        config,
        scale.family,
        FullUnrollBPTT(lengths=(scale.unroll,), num_tasks=scale.num_tasks),
        outer_steps=scale.outer_steps,
        meta_lr=scale.meta_lr,
        checkpoint_every=scale.outer_steps,
    )
    started = time.perf_counter()
    result = meta_train(run, os.path.join(workdir, optimizer.lower()), progress=progress)
    return result.meta_params, result.metrics, time.perf_counter() - started


def held_out_meta_losses(trained, task, length: int, seeds=EVAL_SEEDS) -> tuple[float, float]:
    """Mean meta-loss (mean training loss over ``length`` steps) of fresh optimizees from held-out seeds, at the
    backprop initialisation and with the meta-trained ``trained``."""
    initial = trained.config.init(jax.random.key(0))
    loss = jax.jit(lambda arrays, key: fresh_unroll_loss(arrays, initial, task, key, length, UnrollConfig()))
    mean = lambda arrays: float(np.mean([loss(arrays, jax.random.key(s)) for s in seeds]))
    return mean(initial.arrays), mean(jax.device_get(trained.arrays))


def tune_learning_rate(optimizer: str, task, scale: Scale) -> float:
    """The learning rate of ``optimizer`` on true gradients with the best final validation accuracy (ties: loss),
    from the package's one baseline tuner (``evaluation.tune_baseline``) over the scale's grid."""
    tuned = tune_baseline(
        OPTIMIZERS[optimizer],
        task,
        scale.eval_steps,
        seeds=len(TUNING_SEEDS),
        learning_rates=scale.tuning_grid[optimizer],
        weight_decays=(0.0,),
        select_by="accuracy",
    )
    return tuned.learning_rate


def optimizer_rows(trained: dict) -> list[tuple[str, object, object]]:
    """``(label, optax transform, meta_params or None)`` for every row: each optimizer at its tuned learning rate
    with true and with learned gradients."""
    rows = []
    for name, meta_params in trained.items():
        tx = meta_params.config.transform(meta_params)
        rows.append((f"{name} {meta_params.config.learning_rate:g}, true gradients", tx, None))
        rows.append((f"{name} {meta_params.config.learning_rate:g}, learned backward", tx, meta_params))
    return rows


def plot(results: dict[str, list], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(4.2 * len(results), 6.5), squeeze=False)
    for column, (task_name, runs) in enumerate(results.items()):
        for r in runs:
            style = "-" if "learned" in r.name else "--"
            for row, values in enumerate((r.eval_loss, 100 * r.eval_accuracy)):
                mean, std = values.mean(0), values.std(0)
                axes[row][column].plot(r.eval_steps, mean, style, label=r.name)
                axes[row][column].fill_between(r.eval_steps, mean - std, mean + std, alpha=0.15)
        axes[0][column].set_title(task_name, fontsize=9)
        axes[0][column].set_yscale("log")
        axes[0][column].set_ylabel("test loss")
        axes[1][column].set_ylabel("test accuracy (%)")
        axes[1][column].set_xlabel("step")
        for ax in axes[:, column]:
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(scale: Scale, scale_name: str, out: str, workdir: str, progress: bool = True) -> str:
    """Meta-trains, tunes, evaluates and writes the result's JSON and page (``experiments/report.py``); returns
    the page."""
    started = time.perf_counter()
    eval_tasks = {name: image_task(**kwargs) for name, kwargs in scale.eval_tasks.items()}
    train_task = scale.family.sample(jax.random.key(0))
    tuned = {name: tune_learning_rate(name, train_task, scale) for name in OPTIMIZERS}
    trained, meta_runs = {}, {}
    for name in OPTIMIZERS:
        trained[name], metrics, seconds = meta_train_backward(scale, name, tuned[name], workdir, progress)
        before, after = held_out_meta_losses(trained[name], train_task, scale.unroll)
        losses = [m["meta_loss"] for m in metrics]
        meta_runs[name] = dict(
            lr=tuned[name],
            before=before,
            after=after,
            first_10=float(np.mean(losses[:10])),
            last_10=float(np.mean(losses[-10:])),
            seconds=round(seconds, 1),
        )
    rows = optimizer_rows(trained)
    results = {}
    bar = tqdm(total=len(eval_tasks) * len(rows), desc="held-out runs", disable=not progress)
    for task_name, task in eval_tasks.items():
        results[task_name] = []
        for label, tx, meta_params in rows:
            run_task = task if meta_params is None else learned_gradient_task(task, meta_params)
            results[task_name].append(
                evaluate(tx, run_task, scale.eval_steps, EVAL_SEEDS, name=label, eval_every=scale.eval_every)
            )
            bar.update()
    bar.close()
    os.makedirs(out, exist_ok=True)
    stem = os.path.join(out, f"learned_backward_{scale_name}")
    plot(results, stem + ".png")
    data = {
        "kind": "learned_backward",
        "title": f"Learned backward pass (Simons), {scale_name} scale",
        "optimizers": list(OPTIMIZERS),
        "setup": {
            "train_task": train_task.name,
            "unroll": scale.unroll,
            "num_tasks": scale.num_tasks,
            "outer_steps": scale.outer_steps,
            "meta_lr": scale.meta_lr,
            "hidden": scale.hidden,
            "layers": scale.layers,
            "meta_parameters": trained["SGD"].num_parameters,
        },
        "tuning": {
            "grid": {k: list(v) for k, v in scale.tuning_grid.items()},
            "steps": scale.eval_steps,
            "seeds": len(TUNING_SEEDS),
            "rule": "validation accuracy (ties: loss)",
            "learning_rates": tuned,
        },
        "meta_training": meta_runs,
        "tasks": {name: [r.to_json() for r in runs] for name, runs in results.items()},
        "figure": os.path.basename(stem) + ".png",
        "provenance": report.provenance(started),
    }
    with open(report.save(data, stem + ".json")) as f:
        return f.read()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="smoke")
    parser.add_argument("--out", help="result directory (default: docs/results; runs/dry_run with --dry-run)")
    parser.add_argument("--workdir", default="runs/learned_backward")
    parser.add_argument("--data-dir", default=None, help="tfds data directory (paper scale)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--outer-steps", type=int, help="override the scale's meta-training steps")
    parser.add_argument("--eval-steps", type=int, help="override the scale's held-out steps")
    parser.add_argument("--dry-run", action="store_true", help="the scale's pipeline at a tiny size (seconds, CPU)")
    args = parser.parse_args(argv)
    scale = paper_scale(args.data_dir) if args.scale == "paper" else smoke_scale()
    scale = dry_run_scale(scale) if args.dry_run else scale
    overrides = {"outer_steps": args.outer_steps, "eval_steps": args.eval_steps}
    scale = dataclasses.replace(scale, **{k: v for k, v in overrides.items() if v is not None})
    try:
        name = f"{args.scale}_dry_run" if args.dry_run else args.scale
        out = args.out or ("runs/dry_run" if args.dry_run else "docs/results")
        report = run(scale, name, out, os.path.join(args.workdir, name), not args.no_progress)
    except DatasetUnavailableError as error:
        sys.exit(f"learned_backward --scale {args.scale}: {error}")
    print(report)


if __name__ == "__main__":
    main()
