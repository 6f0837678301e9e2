"""The one study pipeline: meta-train every learned optimizer over meta-seeds and pick each run's checkpoint by the
fixed rule; per held-out task, tune the baselines for every horizon, evaluate everything on the same seeds, compare
with bootstrap intervals and measure speed-ups. Every stage is cached in the workdir, so a killed study resumes.

Workdir layout: ``<label>/seed<i>/`` (the meta-training run, ``selection.json``, ``selected/``),
``tuning/<task>/<baseline>-<horizon>.json``, ``curves/<task>/*.json``, and ``study.json``, ``summary.json``,
``results.md``, one figure per task and ``best_meta_params/`` at the top.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time

import numpy as np

from l2o_jax import evaluation
from l2o_jax import io
from l2o_jax.meta import meta_train
from l2o_jax.meta import select_best_checkpoint
from l2o_jax.meta.unroll import learned_transform_for
from l2o_jax.study.config import HeldOutTask
from l2o_jax.study.config import StudyConfig
from l2o_jax.study.config import selection_rule
from l2o_jax.study.report import markdown
from l2o_jax.study.report import plot_task
from l2o_jax.tasks import image_task


def slug(label: str) -> str:
    """A file-name form of a label: ``'digits CNN-8, depth 4'`` -> ``'digits-cnn-8-depth-4'``."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def selected_path(workdir: str, label: str, seed: int) -> str:
    """Where meta-run ``seed`` of ``label`` keeps its selected meta-parameters (``l2o_jax.load_meta_params``)."""
    return os.path.join(workdir, slug(label), f"seed{seed}", "selected")


def train_and_select(study: StudyConfig, workdir: str, *, progress: bool = True, log=print) -> dict:
    """Meta-trains every learned optimizer ``meta_seeds`` times and picks each run's checkpoint by the fixed rule.

    Returns ``{label: [selection record per meta-run]}``; the selected meta-parameters are at ``selected_path``.

    Example:
      >>> selection = train_and_select(preset('quickstart'), 'runs/quickstart')
    """
    selected, rule = {}, selection_rule(study)
    for label, run_config in study.learned_runs().items():
        selected[label] = []
        for index in range(study.meta_seeds):
            seed = run_config.seed + index
            run = os.path.dirname(selected_path(workdir, label, index))

            def train_and_pick(run=run, seed=seed, run_config=run_config):
                started = time.perf_counter()
                log(f"meta-training {label}, meta-seed {seed} -> {run}")
                meta_train(dataclasses.replace(run_config, seed=seed), run, progress=progress)
                step, best, scores = select_best_checkpoint(
                    run,
                    run_config.learned_optimizer,
                    [image_task(**study.selection_task)],
                    length=study.selection_length,
                    seeds=study.selection_seeds,
                )
                io.save_meta_params(os.path.join(run, "selected"), best, metadata={"outer_step": step})
                return {
                    "meta_seed": seed,
                    "selected_step": step,
                    "validation_loss": {str(k): v for k, v in scores.items()},
                    "rule": rule,
                    "seconds": round(time.perf_counter() - started, 1),
                }

            path = os.path.join(run, "selection.json")
            record = io.cached_json(path, train_and_pick)
            if record.get("rule") != rule:
                # Picked under another rule: kept aside (its cost still counts), picked again from the same
                # checkpoints (meta_train returns at once on a finished run).
                log(f"{label}, meta-seed {seed}: selected under another rule ({record.get('rule')}); selecting again")
                _set_aside(path)
                record = io.cached_json(path, train_and_pick)
            selected[label].append(record)
    return selected


def _set_aside(path: str) -> None:
    """Renames ``path`` (and its seconds file) to the first free ``<name>.superseded<i>.json``."""
    stem, index = path.removesuffix(".json"), 0
    while os.path.exists(f"{stem}.superseded{index}.json"):
        index += 1
    for suffix in ("", io.SECONDS_SUFFIX):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, f"{stem}.superseded{index}.json{suffix}")


def study_stage_seconds(study: StudyConfig, workdir: str | os.PathLike) -> float:
    """The compute seconds of this study's own cached stages in ``workdir`` (its learned optimizers' meta-training
    and selection, its held-out tasks' tuning and curves), over every run that resumed them; stages of other
    studies sharing the workdir are not counted.

    Example:
      >>> study_stage_seconds(preset('quickstart'), 'runs/quickstart')  # e.g. 1843.2
    """
    workdir = os.fspath(workdir)
    total = sum(io.stage_seconds(os.path.join(workdir, slug(label))) for label in study.learned_runs())
    # Held-out stages are files named after their optimizer: ``<label>-seed<i>...`` or ``<baseline>-<horizon>``.
    prefixes = tuple(f"{slug(label)}-seed" for label in study.learned_runs()) + tuple(f"{b}-" for b in study.baselines)
    for task in study.tasks():
        for stage in ("tuning", "curves"):
            total += io.stage_seconds(os.path.join(workdir, stage, slug(task.label)), prefixes)
    return round(total, 1)


def _grid_near(learning_rates: tuple[float, ...], center: float, factor: float) -> tuple[float, ...]:
    """The learning rates of the grid within ``factor`` of ``center``."""
    return tuple(lr for lr in learning_rates if center / factor * 0.999 <= lr <= center * factor * 1.001)


def _widened(grid: tuple[float, ...], pick: float) -> tuple[float, ...]:
    """``grid`` with two more points of its ratio beyond the edge ``pick`` lies on."""
    grid = tuple(sorted(grid))
    ratio = grid[1] / grid[0] if len(grid) > 1 else 2.0
    if pick >= grid[-1]:
        return grid + (grid[-1] * ratio, grid[-1] * ratio**2)
    return (grid[0] / ratio**2, grid[0] / ratio) + grid


def tune_baselines(study: StudyConfig, held_out: HeldOutTask, workdir: str, log=print) -> dict:
    """``{baseline: {horizon: TuningResult as a dict}}`` for every horizon of the task.

    Horizons up to ``full_grid_until`` search the whole grid; longer ones (the costly runs) search the grid points
    within ``zoom`` of the previous horizon's pick, coarse to fine as a practitioner would, and widen to the whole
    grid when the pick lands on the zoom's edge.

    Example:
      >>> tuned = tune_baselines(study, study.tasks()[0], 'runs/quickstart')
    """
    task = image_task(**held_out.task)
    tuned = {}
    for name in study.baselines:
        tuned[name] = {}
        previous = None
        for horizon in study.horizons(held_out.steps):
            grid = study.learning_rates
            if horizon > study.full_grid_until and previous is not None:
                grid = _grid_near(study.learning_rates, previous["learning_rate"], study.zoom)

            def tune(name=name, horizon=horizon, grid=grid):
                log(f"tuning {name} on {task.name} for {horizon} steps over {len(grid)} learning rates")
                kwargs = dict(
                    seeds=study.tuning_seeds, weight_decays=study.weight_decays, select_by=study.tuning_select_by
                )
                result = evaluation.tune_baseline(name, task, horizon, learning_rates=grid, **kwargs)
                # A widened grid trains only its new points: the result extends the search before it.
                if result.on_edge and len(grid) < len(study.learning_rates):
                    log(f"{name}'s pick {result.learning_rate:g} is on the zoomed grid's edge: widening to all")
                    grid = study.learning_rates
                    result = evaluation.tune_baseline(
                        name, task, horizon, learning_rates=grid, previous=result, **kwargs
                    )
                for _ in range(study.widen_edges):
                    if not result.on_edge:
                        break
                    grid = _widened(grid, result.learning_rate)
                    log(
                        f"{name}'s pick {result.learning_rate:g} is on the grid's edge: widening it to "
                        f"{grid[0]:g}-{grid[-1]:g}"
                    )
                    result = evaluation.tune_baseline(
                        name, task, horizon, learning_rates=grid, previous=result, **kwargs
                    )
                return {**dataclasses.asdict(result), "selection": result.selection}

            path = os.path.join(workdir, "tuning", slug(held_out.label), f"{name}-{horizon}.json")
            previous = tuned[name][str(horizon)] = io.cached_json(path, tune)
    return tuned


def _curve(result: evaluation.EvalResult) -> dict:
    return {
        "eval_steps": result.eval_steps.tolist(),
        "eval_loss": result.eval_loss.tolist(),
        "eval_accuracy": result.eval_accuracy.tolist(),
        "train_loss_mean": result.train_loss.mean(0).tolist(),
    }


def evaluate_task(study: StudyConfig, held_out: HeldOutTask, tuned: dict, workdir: str, log=print) -> dict:
    """Curves on the test split: ``{'learned': {label: [curve per meta-run]}, 'baselines': {name: {horizon: curve}},
    'learned_at': {label: {horizon: [curve per meta-run]}}}``.

    Every curve has a ``[seeds, evals]`` array per metric; the same seeds give every optimizer the same
    initialisations and batches. A learned optimizer that is told the run's length (``needs_total_steps``) is
    run once per horizon shorter than the task's, as the baselines are, into ``learned_at``: at every horizon it
    meets the baselines on a run of that length.

    Example:
      >>> curves = evaluate_task(study, study.tasks()[0], tune_baselines(study, study.tasks()[0], w), w)
    """
    task = image_task(**held_out.task)
    cache = os.path.join(workdir, "curves", slug(held_out.label))

    def run(tx, steps, name):
        every = min(study.eval_every, steps)
        return _curve(evaluation.evaluate(tx, task, steps, study.seeds, name=name, eval_every=every))

    horizons = sorted({int(h) for by_horizon in tuned.values() for h in by_horizon})
    learned, learned_at = {}, {}
    for label, run_config in study.learned_runs().items():
        shorter = [h for h in horizons if h < held_out.steps] if run_config.learned_optimizer.needs_total_steps else []
        by_length = {steps: [] for steps in [held_out.steps, *shorter]}
        for index in range(study.meta_seeds):
            meta = io.load_meta_params(selected_path(workdir, label, index))
            for steps, runs in by_length.items():
                log(f"evaluating {label} (meta-run {index}) on {task.name} for {steps} steps")
                suffix = "" if steps == held_out.steps else f"-{steps}"
                path = os.path.join(cache, f"{slug(label)}-seed{index}{suffix}.json")
                runs.append(
                    io.cached_json(
                        path, lambda m=meta, n=steps: run(learned_transform_for(m, task, total_steps=n), n, label)
                    )
                )
        learned[label] = by_length.pop(held_out.steps)
        learned_at[label] = {str(steps): runs for steps, runs in by_length.items()}
    baselines = {}
    for name, by_horizon in tuned.items():
        baselines[name] = {}
        for horizon, t in by_horizon.items():
            tx = evaluation.baseline(name, t["learning_rate"], t["weight_decay"], steps=int(horizon))
            path = os.path.join(cache, f"{name}-{horizon}.json")
            log(f"evaluating {name} tuned for {horizon} steps on {task.name}")
            baselines[name][horizon] = io.cached_json(path, lambda tx=tx, h=int(horizon): run(tx, h, name))
    return {"learned": learned, "baselines": baselines, "learned_at": learned_at}


def curve_at(curve: dict, key: str, step: int) -> np.ndarray:
    """``[seeds]`` values of ``key`` (``'eval_accuracy'``, ``'eval_loss'``) of a stored curve at ``step``."""
    return np.asarray(curve[key])[:, curve["eval_steps"].index(step)]


def compare_at_horizons(curves: dict) -> list[dict]:
    """Every learned optimizer against every baseline at every horizon it was tuned for, on test accuracy and
    loss, with bootstrap intervals over meta-runs x seeds.

    Example:
      >>> rows = compare_at_horizons(evaluate_task(study, task, tuned, workdir))
    """
    rows = []
    for label, full_runs in curves["learned"].items():
        for name, by_horizon in curves["baselines"].items():
            for horizon, base in by_horizon.items():
                runs = curves["learned_at"][label].get(horizon, full_runs)
                step = int(horizon)
                rows.append({"learned": label, "baseline": name, "step": step, **compare_curves(runs, base, step)})
    return rows


def compare_curves(runs: list[dict], baseline: dict, step: int) -> dict:
    """Meta-runs' curves against a baseline's at ``step``: ``{'eval_accuracy': ..., 'eval_loss': ...}``, each the
    per-seed values and ``evaluation.compare``'s interval over meta-runs x seeds.

    Example:
      >>> compare_curves(curves['learned']['NG-GNN'], curves['baselines']['adam']['1000'], 1000)['eval_loss']['verdict']
      'loses to'
    """
    out = {}
    for key, higher in (("eval_accuracy", True), ("eval_loss", False)):
        learned = np.stack([curve_at(r, key, step) for r in runs])
        comparison = evaluation.compare(learned, curve_at(baseline, key, step), higher_is_better=higher)
        out[key] = {
            "learned": learned.tolist(),
            "baseline": curve_at(baseline, key, step).tolist(),
            **dataclasses.asdict(comparison),
        }
    return out


def speedups(study: StudyConfig, curves: dict) -> list[dict]:
    """For each learned optimizer: the first step its mean test loss reaches each baseline's (tuned for
    ``speedup_step``) test loss at ``speedup_step``, and the ratio.

    Example:
      >>> speedups(study, curves)[0]['ratio']
    """
    at_step = study.speedup_step or study.eval_steps
    out = []
    for label, runs in curves["learned"].items():
        steps = runs[0]["eval_steps"]
        losses = np.stack([np.asarray(r["eval_loss"]) for r in runs])
        for name, by_horizon in curves["baselines"].items():
            base = by_horizon.get(str(at_step))
            if base is None:
                continue
            target = float(curve_at(base, "eval_loss", at_step).mean())
            result = evaluation.speedup(steps, losses, target, at_step=at_step)
            out.append({"learned": label, "baseline": name, "target_loss": target, **dataclasses.asdict(result)})
    return out


def task_result(study: StudyConfig, held_out: HeldOutTask, workdir: str, figure: str, log=print) -> dict:
    """One held-out task's entry of the result: tuned baselines, curves, comparisons, speed-ups and the figure
    (written to the path ``figure``, named by its file name).

    Example:
      >>> entry = task_result(study, study.tasks()[0], 'runs/quickstart', 'runs/quickstart/task.png')
    """
    tuned = tune_baselines(study, held_out, workdir, log)
    curves = evaluate_task(study, held_out, tuned, workdir, log)
    plot_task(curves, figure, f"{held_out.label} ({held_out.changes})")
    return {
        "task": held_out.task,
        "changes": held_out.changes,
        "steps": held_out.steps,
        "figure": os.path.basename(figure),
        "tuned": tuned,
        "comparisons": compare_at_horizons(curves),
        "speedups": speedups(study, curves),
        "curves": curves,
    }


def protocol(study: StudyConfig) -> dict:
    """The study's protocol as JSON-ready data, for the result page.

    Example:
      >>> protocol(preset('quickstart'))['meta_seeds']
      3
    """
    runs = study.learned_runs()
    return {
        "learned": {label: io.config_to_dict(run.learned_optimizer) for label, run in runs.items()},
        "meta_training": json.loads(next(iter(runs.values())).to_json()),
        "meta_seeds": study.meta_seeds,
        "selection_rule": selection_rule(study) + ", fixed before evaluation",
        "seeds": study.seeds,
        "horizons": sorted({h for t in study.tasks() for h in study.horizons(t.steps)}),
        "speedup_step": study.speedup_step or study.eval_steps,
        "baselines": list(study.baselines),
        "learning_rates": list(study.learning_rates),
        "weight_decays": list(study.weight_decays),
        "tuning_seeds": study.tuning_seeds,
        "full_grid_until": study.full_grid_until,
        "zoom": study.zoom,
        "widen_edges": study.widen_edges,
        "step": {
            label: run.learned_optimizer.output.describe()
            for label, run in runs.items()
            if hasattr(run.learned_optimizer, "output")
        },
    }


def run_study(
    study: StudyConfig,
    workdir: str | os.PathLike,
    *,
    title: str = "Learned optimizers against tuned baselines",
    figures: str | os.PathLike | None = None,
    figure_prefix: str = "",
    progress: bool = True,
    log=print,
    on_task=None,
) -> dict:
    """The whole study; returns its data (``kind: 'horizon'``, JSON-ready), also written to
    ``workdir/summary.json`` with ``results.md``, the figures, ``study.json`` and ``best_meta_params/`` (the
    meta-run of the first learned optimizer with the lowest selection loss).

    Args:
      figures: where the per-task figures go (default ``workdir``); ``figure_prefix`` starts their names.
      on_task: called with the data after every held-out task (e.g. to write a results page as it grows).

    Example:
      >>> data = run_study(preset('quickstart'), 'runs/quickstart')
    """
    workdir = os.path.abspath(os.fspath(workdir))
    figures = os.fspath(figures or workdir)
    started = time.perf_counter()
    os.makedirs(workdir, exist_ok=True)
    os.makedirs(figures, exist_ok=True)
    with open(os.path.join(workdir, "study.json"), "w") as f:  # rerun with: l2o-jax meta-train --config study.json
        f.write(study.to_json())
    selection = train_and_select(study, workdir, progress=progress, log=log)
    data = {"kind": "horizon", "title": title, "protocol": protocol(study), "selection": selection, "tasks": {}}
    for held_out in study.tasks():
        figure = os.path.join(figures, f"{figure_prefix}{slug(held_out.label)}.png")
        data["tasks"][held_out.label] = task_result(study, held_out, workdir, figure, log)
        data["not_run"] = [t.label for t in study.tasks() if t.label not in data["tasks"]]
        data["seconds"] = round(time.perf_counter() - started, 1)
        if on_task is not None:
            on_task(data)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(data, f, indent=1)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(f"# {title}\n\n{markdown(data)}\n")
    label, runs = next(iter(selection.items()))
    best = min(range(len(runs)), key=lambda i: runs[i]["validation_loss"][str(runs[i]["selected_step"])])
    meta_params = io.load_meta_params(selected_path(workdir, label, best))
    io.save_meta_params(os.path.join(workdir, "best_meta_params"), meta_params, metadata={"label": label, **runs[best]})
    return data
