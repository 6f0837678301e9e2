"""Learned optimizers judged over whole training runs: long-horizon meta-training, evaluated far past its truncations.

    python -m experiments.horizon --workdir runs/horizon_smoke            # the smoke study (CPU, embedded data)
    python -m experiments.horizon --workdir runs/h --tiny                 # the pipeline in a minute

Every learned optimizer is meta-trained ``meta_seeds`` times (independent meta-seeds) with truncated BPTT over
inner runs of log-uniformly drawn lengths (``long_horizon_estimator``); each run's checkpoint is picked by a rule
fixed here, before any held-out number exists (validation loss after ``selection_length`` steps on the
meta-training architecture, over 3 seeds). Each held-out task then runs every meta-run over ``seeds`` evaluation
seeds to ``steps``; Adam and warmup-cosine Adam are tuned on the fine grid on the validation split once per
reported horizon (100, 1000, ...), so at every horizon the learned optimizer meets the baseline a practitioner
would have tuned for a run of that length. Claims come from ``l2o_jax.evaluation.stats.compare`` (bootstrap over
meta-runs x seeds); the speed-up is the first step at which the learned optimizer's mean test loss reaches tuned
Adam's at ``speedup_step``.

Every stage caches its result under ``--workdir`` (meta-training resumes from its checkpoints), so a killed run
continues where it stopped. The result is ``<out>/horizon_<scale>.json`` and its page, written by
``experiments/report.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np

from experiments import report
from l2o_jax import evaluation
from l2o_jax import io
from l2o_jax.features import LONG_HORIZON_FEATURES
from l2o_jax.meta import MetaTrainConfig
from l2o_jax.meta import TruncatedBPTT
from l2o_jax.meta import long_horizon_estimator
from l2o_jax.meta import meta_train
from l2o_jax.meta import select_best_checkpoint
from l2o_jax.meta.unroll import learned_transform_for
from l2o_jax.optimizers import LSTML2O
from l2o_jax.optimizers import GraphL2O
from l2o_jax.tasks import TaskFamily
from l2o_jax.tasks import image_task


@dataclasses.dataclass(frozen=True)
class HeldOutTask:
    """A task the meta-training never saw, how long it is run, and what it changes."""

    label: str
    task: dict
    steps: int
    changes: str


@dataclasses.dataclass(frozen=True)
class HorizonStudy:
    """The whole protocol as data.

    Attributes:
      learned: learned optimizers by label.
      family, estimator, outer_steps, meta_lr, checkpoint_every: the meta-training run.
      meta_seeds: independent meta-training runs per learned optimizer.
      selection_task, selection_length, selection_seeds: the checkpoint rule (validation loss).
      held_out: the evaluation tasks.
      seeds, eval_every: evaluation seeds per meta-run and the curves' resolution.
      horizons: the steps at which learned and baselines are compared (each baseline tuned for each).
      speedup_step: the speed-up is measured against tuned Adam's test loss at this step.
      baselines, learning_rates, weight_decays, tuning_seeds: the tuned baselines and their grid.
      full_grid_until, zoom: horizons beyond ``full_grid_until`` search the grid within ``zoom`` of the
        previous horizon's pick (see ``tune_baselines``).
    """

    learned: dict
    family: TaskFamily
    estimator: TruncatedBPTT
    outer_steps: int
    meta_lr: float
    checkpoint_every: int
    meta_seeds: int
    selection_task: dict
    selection_length: int
    selection_seeds: int
    held_out: tuple[HeldOutTask, ...]
    seeds: int = 5
    eval_every: int = 50
    horizons: tuple[int, ...] = (100, 1000, 3000)
    speedup_step: int = 1000
    baselines: tuple[str, ...] = ("adam", "adam_cosine")
    learning_rates: tuple[float, ...] = evaluation.FINE_LEARNING_RATES
    weight_decays: tuple[float, ...] = (0.0,)
    tuning_seeds: int = 3
    full_grid_until: int = 1000
    zoom: float = 4.0

    def meta_config(self, learned_optimizer, seed: int) -> MetaTrainConfig:
        return MetaTrainConfig(
            learned_optimizer,
            self.family,
            self.estimator,
            outer_steps=self.outer_steps,
            meta_lr=self.meta_lr,
            checkpoint_every=self.checkpoint_every,
            seed=seed,
        )


def smoke_study() -> HorizonStudy:
    """CPU, embedded digits: meta-trained on CNN-8 (depth 2), judged on a 2x and 4x wider, a 2-deeper CNN and
    MNIST-1D."""
    base = dict(dataset="digits", width=8, depth=2, batch_size=64)
    return HorizonStudy(
        learned={
            "NG-GNN": GraphL2O(hidden=16, layers=2, features=LONG_HORIZON_FEATURES),
            "LSTM": LSTML2O(hidden=16, num_layers=2, features=LONG_HORIZON_FEATURES),
        },
        family=TaskFamily(datasets=("digits",), models=("cnn",), widths=(8,), depths=(2,), batch_size=64),
        estimator=long_horizon_estimator(),
        outer_steps=250,
        meta_lr=3e-3,
        checkpoint_every=50,
        meta_seeds=3,
        selection_task=base,
        selection_length=3000,
        selection_seeds=3,
        held_out=(
            HeldOutTask("digits CNN-16", {**base, "width": 16}, 3000, "2x wider"),
            HeldOutTask("mnist1d CNN-8", {**base, "dataset": "mnist1d"}, 3000, "other data (1-D signals, 1-D kernels)"),
            HeldOutTask("digits CNN-32", {**base, "width": 32}, 1000, "4x wider"),
            HeldOutTask("digits CNN-8, depth 4", {**base, "depth": 4}, 1000, "2 layers deeper"),
        ),
    )


def tiny_study() -> HorizonStudy:
    """Every stage at the smallest size: for tests and for trying the pipeline."""
    base = dict(dataset="digits", model="mlp", width=4, depth=2, batch_size=16)
    return HorizonStudy(
        learned={"NG-GNN": GraphL2O(hidden=8, layers=1)},
        family=TaskFamily(datasets=("digits",), models=("mlp",), widths=(4,), depths=(2,), batch_size=16),
        estimator=long_horizon_estimator(truncation_length=3, low=4, high=12, num_tasks=2),
        outer_steps=2,
        meta_lr=1e-3,
        checkpoint_every=1,
        meta_seeds=2,
        selection_task=base,
        selection_length=10,
        selection_seeds=1,
        held_out=(HeldOutTask("digits MLP-8", {**base, "width": 8}, 20, "2x wider"),),
        seeds=2,
        eval_every=10,
        horizons=(10, 20),
        speedup_step=10,
        baselines=("adam",),
        learning_rates=(1e-3, 1e-2),
        tuning_seeds=1,
    )


STUDIES = {"smoke": smoke_study, "tiny": tiny_study}


def _cached(path: str, compute):
    """``compute()``'s JSON-ready result, stored at ``path`` the first time and read back after."""
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    value = compute()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(value, f)
    os.replace(path + ".tmp", path)  # never half-written
    return value


def train_and_select(study: HorizonStudy, workdir: str, progress: bool, log=print) -> dict:
    """Meta-trains every learned optimizer ``meta_seeds`` times and picks each run's checkpoint by the fixed rule.

    Returns ``{label: [selection record per meta-run]}``; the selected meta-parameters are in
    ``<workdir>/<label>/seed<i>/selected``.
    """
    selected = {}
    for label, learned in study.learned.items():
        selected[label] = []
        for seed in range(study.meta_seeds):
            run = os.path.join(workdir, report.slug(label), f"seed{seed}")

            def train_and_pick(run=run, seed=seed, learned=learned):
                started = time.perf_counter()
                log(f"meta-training {label}, meta-seed {seed} -> {run}")
                meta_train(study.meta_config(learned, seed), run, progress=progress)
                step, best, scores = select_best_checkpoint(
                    run,
                    learned,
                    [image_task(**study.selection_task)],
                    length=study.selection_length,
                    seeds=study.selection_seeds,
                )
                io.save_meta_params(os.path.join(run, "selected"), best, metadata={"outer_step": step})
                return {
                    "meta_seed": seed,
                    "selected_step": step,
                    "validation_loss": {str(k): v for k, v in scores.items()},
                    "seconds": round(time.perf_counter() - started, 1),
                }

            selected[label].append(_cached(os.path.join(run, "selection.json"), train_and_pick))
    return selected


def _grid_near(learning_rates: tuple[float, ...], center: float, factor: float) -> tuple[float, ...]:
    """The learning rates of the grid within ``factor`` of ``center``."""
    return tuple(lr for lr in learning_rates if center / factor * 0.999 <= lr <= center * factor * 1.001)


def tune_baselines(study: HorizonStudy, held_out: HeldOutTask, workdir: str, log=print) -> dict:
    """``{baseline: {horizon: TuningResult as a dict}}`` for every horizon up to the task's steps.

    Horizons up to ``full_grid_until`` search the whole grid; longer ones (the costly runs) search the grid
    points within ``zoom`` of the previous horizon's pick, coarse to fine as a practitioner would, and widen
    to the whole grid when the pick lands on the zoom's edge.
    """
    task = image_task(**held_out.task)
    tuned = {}
    for name in study.baselines:
        tuned[name] = {}
        previous = None
        for horizon in [h for h in study.horizons if h <= held_out.steps]:
            grid = study.learning_rates
            if horizon > study.full_grid_until and previous is not None:
                grid = _grid_near(study.learning_rates, previous["learning_rate"], study.zoom)

            def tune(name=name, horizon=horizon, grid=grid):
                log(f"tuning {name} on {task.name} for {horizon} steps over {len(grid)} learning rates")
                kwargs = dict(seeds=study.tuning_seeds, weight_decays=study.weight_decays)
                result = evaluation.tune_baseline(name, task, horizon, learning_rates=grid, **kwargs)
                if result.on_edge and len(grid) < len(study.learning_rates):
                    log(f"{name}'s pick {result.learning_rate:g} is on the zoomed grid's edge: widening to all")
                    full = study.learning_rates
                    result = evaluation.tune_baseline(name, task, horizon, learning_rates=full, **kwargs)
                return dataclasses.asdict(result)

            path = os.path.join(workdir, "tuning", report.slug(held_out.label), f"{name}-{horizon}.json")
            previous = tuned[name][str(horizon)] = _cached(path, tune)
    return tuned


def _curve(result: evaluation.EvalResult) -> dict:
    return {
        "eval_steps": result.eval_steps.tolist(),
        "eval_loss": result.eval_loss.tolist(),
        "eval_accuracy": result.eval_accuracy.tolist(),
    }


def evaluate_task(study: HorizonStudy, held_out: HeldOutTask, tuned: dict, workdir: str, log=print) -> dict:
    """Curves on the test split: ``{'learned': {label: [curve per meta-run]}, 'baselines': {name: {horizon: curve}}}``.

    Every curve has a ``[seeds, evals]`` array per metric; the same seeds give every optimizer the same
    initialisations and batches.
    """
    task = image_task(**held_out.task)
    cache = os.path.join(workdir, "curves", report.slug(held_out.label))

    def run(tx, steps, name):
        every = min(study.eval_every, steps)
        return _curve(evaluation.evaluate(tx, task, steps, study.seeds, name=name, eval_every=every))

    learned = {}
    for label in study.learned:
        learned[label] = []
        for seed in range(study.meta_seeds):
            meta = io.load_meta_params(os.path.join(workdir, report.slug(label), f"seed{seed}", "selected"))
            log(f"evaluating {label} (meta-seed {seed}) on {task.name} for {held_out.steps} steps")
            path = os.path.join(cache, f"{report.slug(label)}-seed{seed}.json")
            learned[label].append(
                _cached(path, lambda m=meta: run(learned_transform_for(m, task), held_out.steps, label))
            )
    baselines = {}
    for name, by_horizon in tuned.items():
        baselines[name] = {}
        for horizon, t in by_horizon.items():
            tx = evaluation.baseline(name, t["learning_rate"], t["weight_decay"], steps=int(horizon))
            path = os.path.join(cache, f"{name}-{horizon}.json")
            log(f"evaluating {name} tuned for {horizon} steps on {task.name}")
            baselines[name][horizon] = _cached(path, lambda tx=tx, h=int(horizon): run(tx, h, name))
    return {"learned": learned, "baselines": baselines}


def _at(curve: dict, key: str, step: int) -> np.ndarray:
    """``[seeds]`` values of ``key`` at ``step``."""
    return np.asarray(curve[key])[:, curve["eval_steps"].index(step)]


def compare_at_horizons(study: HorizonStudy, curves: dict) -> list[dict]:
    """Every learned optimizer against every baseline at every horizon, on test accuracy and loss, with
    bootstrap intervals over meta-runs x seeds; and the speed-up over tuned Adam."""
    rows = []
    for label, runs in curves["learned"].items():
        for name, by_horizon in curves["baselines"].items():
            for horizon, base in by_horizon.items():
                step = int(horizon)
                row = {"learned": label, "baseline": name, "step": step}
                for key, higher in (("eval_accuracy", True), ("eval_loss", False)):
                    learned = np.stack([_at(r, key, step) for r in runs])
                    comparison = evaluation.compare(learned, _at(base, key, step), higher_is_better=higher)
                    row[key] = {
                        "learned": learned.tolist(),
                        "baseline": _at(base, key, step).tolist(),
                        **dataclasses.asdict(comparison),
                    }
                rows.append(row)
    return rows


def speedups(study: HorizonStudy, curves: dict) -> list[dict]:
    """For each learned optimizer: the first step its mean test loss reaches each baseline's (tuned for
    ``speedup_step``) test loss at ``speedup_step``, and the ratio."""
    out = []
    for label, runs in curves["learned"].items():
        steps = runs[0]["eval_steps"]
        losses = np.stack([np.asarray(r["eval_loss"]) for r in runs])
        for name, by_horizon in curves["baselines"].items():
            base = by_horizon.get(str(study.speedup_step))
            if base is None:
                continue
            target = float(_at(base, "eval_loss", study.speedup_step).mean())
            result = evaluation.speedup(steps, losses, target, at_step=study.speedup_step)
            out.append({"learned": label, "baseline": name, "target_loss": target, **dataclasses.asdict(result)})
    return out


def plot_task(curves: dict, path: str, title: str) -> str:
    """Test accuracy and loss against steps (log x): learned optimizers' mean over meta-runs x seeds with the
    spread across meta-runs, and each baseline for its longest tuned horizon."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for ax, key, ylabel in ((axes[0], "eval_accuracy", "test accuracy"), (axes[1], "eval_loss", "test loss")):
        for label, runs in curves["learned"].items():
            steps = np.asarray(runs[0]["eval_steps"])[1:]
            per_run = np.stack([np.asarray(r[key]).mean(0)[1:] for r in runs])
            line = ax.plot(steps, per_run.mean(0), label=f"{label} ({len(runs)} meta-runs)", lw=2)[0]
            ax.fill_between(steps, per_run.min(0), per_run.max(0), color=line.get_color(), alpha=0.2)
        for name, by_horizon in curves["baselines"].items():
            horizon = max(by_horizon, key=int)
            base = by_horizon[horizon]
            steps = np.asarray(base["eval_steps"])[1:]
            ax.plot(steps, np.asarray(base[key]).mean(0)[1:], "--", label=f"{name} (tuned for {horizon} steps)")
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        if key == "eval_loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def task_result(study: HorizonStudy, held_out: HeldOutTask, workdir: str, figure: str, log=print) -> dict:
    """One held-out task's entry of the result: tuned baselines, curves, comparisons, speed-ups and the figure
    (written to the path ``figure``, named by its file name)."""
    tuned = tune_baselines(study, held_out, workdir, log)
    curves = evaluate_task(study, held_out, tuned, workdir, log)
    plot_task(curves, figure, f"{held_out.label} ({held_out.changes})")
    return {
        "task": held_out.task,
        "changes": held_out.changes,
        "steps": held_out.steps,
        "figure": os.path.basename(figure),
        "tuned": tuned,
        "comparisons": compare_at_horizons(study, curves),
        "speedups": speedups(study, curves),
        "curves": curves,
    }


def run(study: HorizonStudy, workdir: str, out: str, scale: str, progress: bool = True, log=print) -> dict:
    """The whole study; returns the result's data (also written, with its page and figures, to ``out``, after
    every held-out task, so a study cut short still has a page for the tasks it finished)."""
    started = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    selected = train_and_select(study, workdir, progress, log)
    data = {
        "kind": "horizon",
        "title": f"Long-horizon learned optimizers ({scale} scale)",
        "protocol": protocol(study),
        "selection": selected,
        "tasks": {},
    }
    for held_out in study.held_out:
        figure = f"horizon_{scale}_{report.slug(held_out.label)}.png"
        data["tasks"][held_out.label] = task_result(study, held_out, workdir, os.path.join(out, figure), log)
        data["not_run"] = [t.label for t in study.held_out if t.label not in data["tasks"]]
        data["provenance"] = report.provenance(started)
        report.save(data, os.path.join(out, f"horizon_{scale}.json"))
    return data


def protocol(study: HorizonStudy) -> dict:
    """The study's protocol as JSON-ready data, for the result page."""
    return {
        "learned": {label: io.config_to_dict(config) for label, config in study.learned.items()},
        "meta_training": json.loads(study.meta_config(next(iter(study.learned.values())), 0).to_json()),
        "meta_seeds": study.meta_seeds,
        "selection_rule": (
            f"validation loss after {study.selection_length} steps on {image_task(**study.selection_task).name}, "
            f"{study.selection_seeds} seeds, fixed before evaluation"
        ),
        "seeds": study.seeds,
        "horizons": list(study.horizons),
        "speedup_step": study.speedup_step,
        "baselines": list(study.baselines),
        "learning_rates": list(study.learning_rates),
        "weight_decays": list(study.weight_decays),
        "tuning_seeds": study.tuning_seeds,
        "full_grid_until": study.full_grid_until,
        "zoom": study.zoom,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="runs/horizon", help="meta-training runs and cached stages")
    parser.add_argument("--out", default=None, help="where the JSON, page and figures go (default: docs/results)")
    parser.add_argument("--scale", choices=sorted(STUDIES), default="smoke")
    parser.add_argument("--learned", nargs="+", help="only these learned optimizers (default: all of the study's)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    out = args.out or (report.RESULTS if args.scale == "smoke" else os.path.join(args.workdir, "results"))
    study = STUDIES[args.scale]()
    if args.learned:
        unknown = sorted(set(args.learned) - set(study.learned))
        if unknown:
            parser.error(f"unknown learned optimizers {unknown}; the study has {sorted(study.learned)}")
        study = dataclasses.replace(study, learned={k: v for k, v in study.learned.items() if k in args.learned})
    return run(study, args.workdir, out, args.scale, progress=not args.no_progress)


if __name__ == "__main__":
    main()
