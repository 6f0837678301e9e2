"""Seed 001: meta-train a learned backward pass, then compare it with true gradients under SGD and Adam.

First SGD's and Adam's learning rates are tuned on true gradients (validation accuracy on the meta-training
architecture), so that a learned pass cannot win merely by rescaling the gradients of a badly chosen learning rate.
Then the learned backward pass (``l2o_jax.backward``) starts as exact backprop and is meta-trained with
``l2o_jax.meta`` (full-unroll BPTT through the inner runs) twice: once under SGD and once under Adam, each at its
tuned learning rate, by ``meta_seeds`` independent meta-training runs each. Every run's final meta-parameters are
evaluated (no checkpoint is selected). On held-out tasks (new seeds, a wider and a deeper network, a CNN) each
optimizer trains fresh optimizees with true and with learned gradients for 10x the meta-training unroll, over the
same 5 evaluation seeds. Reported: test accuracy and loss at the unroll's length and at the end, learned minus true
with a 95 % bootstrap interval over meta-runs x seeds (``evaluation.compare``), curves on a log step axis, and the
meta-loss on held-out seeds before and after meta-training.

    python experiments/learned_backward.py --scale smoke                  # digits; CPU, minutes
    python experiments/learned_backward.py --scale paper --data-dir DIR   # FashionMNIST (tfds, prepared); GPU
    python experiments/learned_backward.py --scale paper --dry-run        # its pipeline at a tiny size (seconds)

Writes ``learned_backward_<scale>.json`` (the data and provenance), ``.md`` (its page, rendered by
``experiments/report.py``) and one ``.png`` of curves per held-out task to ``--out``; the meta-training runs
(metrics, checkpoints), the tuning and every held-out curve are cached under ``--workdir``, so a killed run resumes.
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

from l2o_jax import io
from l2o_jax.backward import LearnedBackward
from l2o_jax.backward import learned_gradient_task
from l2o_jax.evaluation import FINE_LEARNING_RATES
from l2o_jax.evaluation import evaluate
from l2o_jax.evaluation import tune_baseline
from l2o_jax.meta import FullUnrollBPTT
from l2o_jax.meta import MetaTrainConfig
from l2o_jax.meta import UnrollConfig
from l2o_jax.meta import fresh_unroll_loss
from l2o_jax.meta import meta_train
from l2o_jax.study import compare_curves
from l2o_jax.study import slug
from l2o_jax.study.report import plot_task
from l2o_jax.tasks import DatasetUnavailableError
from l2o_jax.tasks import TaskFamily
from l2o_jax.tasks import image_task

EVAL_SEEDS = tuple(range(1000, 1005))
TUNING_SEEDS = (0, 1)
OPTIMIZERS = {"SGD": "sgd", "Adam": "adam"}
#: x2 learning-rate grids on the lattice of ``evaluation.FINE_LEARNING_RATES`` (1e-4 * 2^k), SGD's extended upwards.
SGD_LEARNING_RATES = tuple(1e-4 * 2.0**k for k in range(6, 15))
SELECTION_RULE = "none: every meta-run's final meta-parameters are evaluated (no checkpoint is chosen by any score)"


@dataclasses.dataclass(frozen=True)
class Scale:
    """One experiment size.

    Attributes:
      family: the meta-training task family.
      eval_tasks: held-out tasks by label, as ``image_task`` arguments.
      hidden, layers: the learned backward pass's networks.
      unroll, num_tasks, outer_steps, meta_lr: meta-training (BPTT through ``unroll`` inner steps of
        ``num_tasks`` optimizees per outer step).
      meta_seeds: independent meta-training runs per optimizer (meta-seeds 0, 1, ...).
      tuning_grid: learning rates tried for SGD and Adam on true gradients (validation split, ``eval_steps``
        steps); the best is used for meta-training and evaluation.
      eval_steps, eval_every: the held-out runs (at least 10x ``unroll``).
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
    meta_seeds: int = 3


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
        tuning_grid={"SGD": SGD_LEARNING_RATES[2:], "Adam": FINE_LEARNING_RATES[4:]},
        eval_steps=300,
        eval_every=10,
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
        tuning_grid={"SGD": SGD_LEARNING_RATES, "Adam": FINE_LEARNING_RATES},
        eval_steps=1000,
        eval_every=50,
    )


SCALES = ("paper", "smoke")


def dry_run_scale(scale: Scale) -> Scale:
    """``scale``'s datasets, model kinds and stages at a tiny size (seconds on a CPU), with 2 meta-runs per
    optimizer (the comparisons' meta-run axis). Of the held-out tasks only the last is kept (at paper scale: a
    deeper CNN; every held-out task is the same evaluation), shrunk like the rest."""
    family = dataclasses.replace(scale.family, widths=(4,), batch_size=8)
    last = list(scale.eval_tasks)[-1]
    shrink = lambda kwargs: {**kwargs, "width": max(2, 4 * kwargs["width"] // scale.family.widths[0]), "batch_size": 8}
    return dataclasses.replace(
        scale,
        family=family,
        eval_tasks={last: shrink(scale.eval_tasks[last])},
        hidden=8,
        layers=1,
        unroll=2,
        num_tasks=2,
        outer_steps=2,
        meta_seeds=2,
        tuning_grid={name: grid[:1] for name, grid in scale.tuning_grid.items()},
        eval_steps=20,
        eval_every=2,
    )


def meta_train_backward(scale: Scale, optimizer: str, learning_rate: float, seed: int, workdir: str, progress: bool):
    """Meta-trains (or reads back) a learned backward pass under ``optimizer`` (``'SGD'`` or ``'Adam'``) from the
    backprop initialisation with meta-seed ``seed``; returns its final meta-parameters and a record of the run
    (first and last 10 training meta-losses, wall seconds including compilation)."""
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
        seed=seed,
    )
    path = os.path.join(workdir, optimizer.lower(), f"seed{seed}")

    def train():
        losses = [m["meta_loss"] for m in meta_train(run, path, progress=progress).metrics]
        return {"meta_seed": seed, "first_10": float(np.mean(losses[:10])), "last_10": float(np.mean(losses[-10:]))}

    # A cached stage, so its wall time is kept (metrics.jsonl's per-step seconds leave out compiling and waiting).
    record = io.cached_json(os.path.join(path, "record.json"), train)
    meta_params = meta_train(run, path, progress=False).meta_params  # the final checkpoint, read back
    return meta_params, {**record, "seconds": round(io.stage_seconds(path), 1)}


def held_out_meta_losses(runs: list, task, length: int, seeds=EVAL_SEEDS) -> tuple[float, list[float]]:
    """Mean meta-loss (mean training loss over ``length`` steps) of fresh optimizees from held-out seeds, at the
    backprop initialisation and with each meta-trained run of ``runs`` (meta-parameters of one config)."""
    initial = runs[0].config.init(jax.random.key(0))
    loss = jax.jit(lambda arrays, key: fresh_unroll_loss(arrays, initial, task, key, length, UnrollConfig()))
    mean = lambda arrays: float(np.mean([loss(arrays, jax.random.key(s)) for s in seeds]))
    return mean(initial.arrays), [mean(jax.device_get(r.arrays)) for r in runs]


def tune_learning_rate(optimizer: str, task, scale: Scale, workdir: str) -> dict:
    """``evaluation.tune_baseline``'s search (as a dict) of ``optimizer``'s learning rate on true gradients: the
    best final validation accuracy (ties: loss) at the evaluation's horizon, over the scale's grid."""

    def tune():
        return dataclasses.asdict(
            tune_baseline(
                OPTIMIZERS[optimizer],
                task,
                scale.eval_steps,
                seeds=len(TUNING_SEEDS),
                learning_rates=scale.tuning_grid[optimizer],
                weight_decays=(0.0,),
                select_by="accuracy",
            )
        )

    return io.cached_json(os.path.join(workdir, "tuning", f"{optimizer.lower()}.json"), tune)


def labels(optimizer: str, learning_rate: float) -> tuple[str, str]:
    """The true-gradient and learned-backward rows of ``optimizer`` at ``learning_rate``."""
    return f"{optimizer} {learning_rate:g}, true gradients", f"{optimizer} {learning_rate:g}, learned backward"


def evaluate_task(task, trained: dict, scale: Scale, cache: str, bar) -> dict:
    """Test curves of one held-out task (``EvalResult.to_json``): ``{'learned': {label: [curve per meta-run]},
    'baselines': {label: {steps: curve}}}``, every optimizer at its tuned learning rate on true and on learned
    gradients, over the same evaluation seeds."""

    def curve(run_task, tx, label, path):
        result = lambda: evaluate(tx, run_task, scale.eval_steps, EVAL_SEEDS, name=label, eval_every=scale.eval_every)
        value = io.cached_json(os.path.join(cache, f"{slug(path)}.json"), lambda: result().to_json())
        bar.update()
        return value

    curves = {"learned": {}, "baselines": {}}
    for name, runs in trained.items():
        tx = runs[0].config.transform(runs[0])
        true, learned = labels(name, runs[0].config.learning_rate)
        curves["baselines"][true] = {str(scale.eval_steps): curve(task, tx, true, true)}
        curves["learned"][learned] = [
            curve(learned_gradient_task(task, meta_params), tx, learned, f"{learned} seed{seed}")
            for seed, meta_params in enumerate(runs)
        ]
    return curves


def compare_task(curves: dict, steps: tuple[int, ...]) -> list[dict]:
    """Learned backward against true gradients under each optimizer at each of ``steps``: ``compare_curves``'s
    per-seed values and 95 % bootstrap intervals over meta-runs x seeds, on test accuracy and loss."""
    rows = []
    for (learned, runs), (true, by_steps) in zip(curves["learned"].items(), curves["baselines"].items()):
        (base,) = by_steps.values()
        for step in steps:
            rows.append({"learned": learned, "baseline": true, "step": step, **compare_curves(runs, base, step)})
    return rows


def run(scale: Scale, scale_name: str, out: str, workdir: str, progress: bool = True) -> str:
    """Tunes, meta-trains ``scale.meta_seeds`` runs per optimizer, evaluates and writes the result's JSON and page
    (``experiments/report.py``); returns the page."""
    started = time.perf_counter()
    eval_tasks = {name: image_task(**kwargs) for name, kwargs in scale.eval_tasks.items()}
    train_task = scale.family.sample(jax.random.key(0))
    tuned = {name: tune_learning_rate(name, train_task, scale, workdir) for name in OPTIMIZERS}
    trained, meta_runs = {}, {}
    for name in OPTIMIZERS:
        runs = [
            meta_train_backward(scale, name, tuned[name]["learning_rate"], seed, workdir, progress)
            for seed in range(scale.meta_seeds)
        ]
        trained[name] = [meta_params for meta_params, _ in runs]
        before, after = held_out_meta_losses(trained[name], train_task, scale.unroll)
        meta_runs[name] = [{**record, "before": before, "after": loss} for (_, record), loss in zip(runs, after)]
    os.makedirs(out, exist_ok=True)
    stem = os.path.join(out, f"learned_backward_{scale_name}")
    per_task = len(OPTIMIZERS) * (1 + scale.meta_seeds)
    bar = tqdm(total=len(eval_tasks) * per_task, desc="held-out runs", disable=not progress)
    tasks = {}
    for label, task in eval_tasks.items():
        curves = evaluate_task(task, trained, scale, os.path.join(workdir, "curves", slug(label)), bar)
        figure = f"{stem}_{slug(label)}.png"
        plot_task(curves, figure, f"{label}: {task.name}")
        tasks[label] = {
            "task": task.name,
            "comparisons": compare_task(curves, (scale.unroll, scale.eval_steps)),
            "curves": curves,
            "figure": os.path.basename(figure),
        }
    bar.close()
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
            "meta_parameters": trained["SGD"][0].num_parameters,
            "meta_seeds": scale.meta_seeds,
            "selection_rule": SELECTION_RULE,
            "eval_steps": scale.eval_steps,
            "eval_every": scale.eval_every,
            "eval_seeds": list(EVAL_SEEDS),
        },
        "tuning": {
            "grid": {k: list(v) for k, v in scale.tuning_grid.items()},
            "steps": scale.eval_steps,
            "seeds": len(TUNING_SEEDS),
            "rule": "validation accuracy (ties: loss)",
            "learning_rates": {name: t["learning_rate"] for name, t in tuned.items()},
            "on_edge": {name: t["on_edge"] for name, t in tuned.items()},
            "scores": {name: t["scores"] for name, t in tuned.items()},
        },
        "meta_training": meta_runs,
        "tasks": tasks,
        "provenance": report.provenance(started, workdir=workdir),
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
