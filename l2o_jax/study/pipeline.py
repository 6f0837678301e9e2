"""The study's stages: meta-train and select, tune the baselines, evaluate, and ``run_study`` for all of them."""

from __future__ import annotations

import dataclasses
import os
import time

from l2o_jax import evaluation
from l2o_jax.io import save_meta_params
from l2o_jax.meta import meta_train
from l2o_jax.meta import select_best_checkpoint
from l2o_jax.meta.unroll import learned_transform_for
from l2o_jax.study.config import StudyConfig
from l2o_jax.study.report import write_report
from l2o_jax.tasks import image_task


def train_and_select(study: StudyConfig, workdir: str | os.PathLike, *, progress: bool = True, log=print):
    """Meta-trains ``study.meta`` into ``workdir`` and picks its best checkpoint on the selection task's
    validation split. Returns ``(best_step, best_meta_params, scores)`` as ``select_best_checkpoint`` does.

    Example:
      >>> step, best, scores = train_and_select(preset('quickstart'), 'runs/gnn')
    """
    name = type(study.meta.learned_optimizer).__name__
    log(f"meta-training {name} for {study.meta.outer_steps} outer steps -> {os.fspath(workdir)}")
    meta_train(study.meta, workdir, progress=progress)
    log(f"selecting {name}'s best checkpoint on the validation split")
    selection_task = image_task(**study.selection_task)
    return select_best_checkpoint(
        workdir,
        study.meta.learned_optimizer,
        [selection_task],
        length=study.selection_length,
        seeds=study.selection_seeds,
    )


def tune_baselines(study: StudyConfig, task) -> list[evaluation.TuningResult]:
    """Grid-searches each of ``study.baselines`` on ``task``'s validation split, once for every learned
    optimizer judged on that task.

    Example:
      >>> tuned = tune_baselines(preset('quickstart'), image_task('digits', width=32, depth=2))
    """
    return [
        evaluation.tune_baseline(
            b,
            task,
            study.eval_steps,
            seeds=study.tuning_seeds,
            learning_rates=study.learning_rates,
            weight_decays=study.weight_decays,
            select_by=study.tuning_select_by,
        )
        for b in study.baselines
    ]


def evaluate_optimizers(study: StudyConfig, task, learned: dict, tuned: list) -> list[evaluation.EvalResult]:
    """Evaluates learned optimizers (``{label: meta_params}``) and then tuned baselines on ``task`` under the
    study's protocol (``eval_steps`` x ``seeds``, test split); the same seeds give every optimizer the same
    initialisations and batches.

    Example:
      >>> results = evaluate_optimizers(study, task, {'NG-GNN': best}, tune_baselines(study, task))
    """

    def run(tx, name):
        return evaluation.evaluate(tx, task, study.eval_steps, study.seeds, name=name, eval_every=study.eval_every)

    learned_results = [run(learned_transform_for(meta, task), name) for name, meta in learned.items()]
    return learned_results + [run(t.optimizer(), t.label) for t in tuned]


def run_study(study: StudyConfig, workdir: str | os.PathLike, *, progress: bool = True, log=print) -> dict:
    """Meta-trains ``study.meta_seeds`` times, selects each run's checkpoint by the recorded rule, evaluates every
    run and the tuned baselines on the held-out task, and reports. Returns the summary written to
    ``workdir/summary.json``.

    Writes one meta-training run per meta-seed (``meta_seed_<seed>/``), ``best_meta_params/`` (the meta-run whose
    selected checkpoint has the lowest validation loss; loadable with ``l2o_jax.load_meta_params``),
    ``results.md``, ``accuracy.png``, ``results.json`` (every run's curves), ``summary.json`` (every run's
    numbers and the bootstrap comparisons with each tuned baseline) and ``study.json`` (the configuration, which
    ``l2o-jax meta-train --config`` reads back).

    Example:
      >>> summary = run_study(preset('quickstart'), 'runs/quickstart')
    """
    if study.meta_seeds < 1:
        raise ValueError(f"meta_seeds must be at least 1, got {study.meta_seeds}.")
    workdir = os.path.abspath(os.fspath(workdir))
    started = time.perf_counter()
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "study.json"), "w") as f:  # rerun with: l2o-jax meta-train --config study.json
        f.write(study.to_json())
    runs = []
    for seed in range(study.meta.seed, study.meta.seed + study.meta_seeds):
        run = dataclasses.replace(study, meta=dataclasses.replace(study.meta, seed=seed))
        step, best, scores = train_and_select(
            run, os.path.join(workdir, f"meta_seed_{seed}"), progress=progress, log=log
        )
        runs.append({"meta_seed": seed, "best_checkpoint": step, "checkpoint_scores": scores, "meta_params": best})
    eval_task = image_task(**study.eval_task)
    log(f"tuning {', '.join(study.baselines)} on {eval_task.name} (validation split)")
    tuned = tune_baselines(study, eval_task)
    log(f"evaluating on {eval_task.name}: {study.meta_seeds} meta-runs, {study.eval_steps} steps x {study.seeds} seeds")
    name = type(study.meta.learned_optimizer).__name__
    learned = {f"{name} (meta-seed {r['meta_seed']})": r["meta_params"] for r in runs}
    results = evaluate_optimizers(study, eval_task, learned, tuned)
    summary = write_report(study, workdir, runs, results, tuned, eval_task, time.perf_counter() - started)
    chosen = min(runs, key=lambda r: r["checkpoint_scores"][r["best_checkpoint"]])
    save_meta_params(
        os.path.join(workdir, "best_meta_params"),
        chosen["meta_params"],
        metadata={
            "meta_seed": chosen["meta_seed"],
            "outer_step": chosen["best_checkpoint"],
            "eval": summary["results"],
            "eval_task": eval_task.name,
        },
    )
    return summary
