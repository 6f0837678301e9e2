"""The whole pipeline of Sbicego et al. as data and one function: meta-train, select the best checkpoint on
validation, evaluate against tuned baselines on a held-out (wider) network, and write tables and figures.

``l2o-jax quickstart`` runs the ``quickstart`` preset; ``l2o-jax meta-train --config paper`` the paper's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import numpy as np

from l2o_jax import evaluation
from l2o_jax.features import LONG_HORIZON_FEATURES
from l2o_jax.io import save_meta_params
from l2o_jax.meta import FullUnrollBPTT
from l2o_jax.meta import MetaTrainConfig
from l2o_jax.meta import long_horizon_estimator
from l2o_jax.meta import meta_train
from l2o_jax.meta import select_best_checkpoint
from l2o_jax.meta.unroll import learned_transform_for
from l2o_jax.optimizers import GraphL2O
from l2o_jax.optimizers import config_from_dict
from l2o_jax.optimizers import config_to_dict
from l2o_jax.optimizers import override
from l2o_jax.optimizers import register_config
from l2o_jax.tasks import TaskFamily
from l2o_jax.tasks import image_task


@register_config
@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """A meta-training run plus how its result is selected and judged.

    Attributes:
      meta: the meta-training run.
      meta_seeds: independent meta-training runs (meta-seeds ``meta.seed``, ``meta.seed + 1``, ...); each is
        selected and evaluated on its own, and tables show mean ± std across them.
      selection_task: ``image_task`` arguments of the task whose validation loss picks the checkpoint.
      selection_seeds: fresh optimizees whose mean validation loss scores a checkpoint.
      selection_length: inner steps of the selection runs. The presets use the evaluation horizon: a
        checkpoint picked after the 50 steps it was meta-trained on can be one that falls apart by step 100
        (measured on the quickstart run: 79.1 % vs 93.9 % held-out accuracy for the 50- and 100-step picks).
      eval_task: ``image_task`` arguments of the held-out evaluation task.
      eval_steps, seeds, eval_every: the evaluation protocol.
      baselines: hand-made optimizers (keys of ``evaluation.BASELINES``) tuned by grid search on the evaluation
        task's validation split at ``eval_steps``.
      learning_rates, weight_decays: the grid (default: the fine grid; ``evaluation.KOFINAS_*`` is Sbicego et al.'s).
      tuning_seeds, tuning_select_by: the baselines' selection rule: runs per grid point, and ``'loss'`` (mean
        validation loss at ``eval_steps``, the rule checkpoints are selected by) or ``'accuracy'``.
      compare_at: earlier steps (multiples of ``eval_every``) at which the report also compares the runs, e.g.
        ``(100,)``: the same runs, with the baselines still tuned for ``eval_steps``.
    """

    meta: MetaTrainConfig
    selection_task: dict
    eval_task: dict
    selection_length: int = 100
    meta_seeds: int = 3
    selection_seeds: int = 3
    eval_steps: int = 1000
    seeds: int = 5
    eval_every: int = 10
    baselines: tuple[str, ...] = ("adam", "rmsprop", "sgd_momentum", "adam_cosine")
    learning_rates: tuple[float, ...] = evaluation.FINE_LEARNING_RATES
    weight_decays: tuple[float, ...] = evaluation.FINE_WEIGHT_DECAYS
    tuning_seeds: int = 3
    tuning_select_by: str = "loss"
    compare_at: tuple[int, ...] = ()

    def to_json(self) -> str:
        """The study as JSON (the config encoding of ``l2o_jax.optimizers.config_to_dict``): a file a user can edit
        and pass back as ``l2o-jax meta-train --config FILE``."""
        return json.dumps(config_to_dict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "StudyConfig":
        """Inverse of ``to_json``; anything else is a clear error naming what is wrong.

        Example:
          >>> StudyConfig.from_json(preset('quickstart').to_json()) == preset('quickstart')
          True
        """
        config = config_from_dict(json.loads(text))
        if not isinstance(config, cls):
            raise ValueError(f"the JSON holds a {type(config).__name__}, not a {cls.__name__}.")
        return config

    def with_overrides(self, **changes) -> "StudyConfig":
        """A copy with meta-training fields (``outer_steps``, ``meta_lr``, ``seed``...) or study fields replaced."""
        meta_fields = {f.name for f in dataclasses.fields(MetaTrainConfig)}
        meta_changes = {k: v for k, v in changes.items() if k in meta_fields and v is not None}
        own = {k: v for k, v in changes.items() if k not in meta_fields and v is not None}
        study = dataclasses.replace(self, meta=dataclasses.replace(self.meta, **meta_changes), **own)
        if "outer_steps" in meta_changes and "checkpoint_every" not in meta_changes:
            every = max(1, min(study.meta.checkpoint_every, study.meta.outer_steps // 5 or 1))
            study = dataclasses.replace(study, meta=dataclasses.replace(study.meta, checkpoint_every=every))
        return study


def quickstart_preset() -> StudyConfig:
    """CPU: NG-GNN meta-trained with the long-horizon recipe on digits CNN-8 tasks (inner runs of
    100-3000 steps in 20-step truncations), judged over 1000 steps on a 2x wider CNN-16 against Adam and
    warmup-cosine Adam tuned for 1000 steps; three meta-training runs."""
    family = TaskFamily(datasets=("digits",), models=("cnn",), widths=(8,), depths=(2,), batch_size=64)
    meta = MetaTrainConfig(
        GraphL2O(hidden=16, layers=2, features=LONG_HORIZON_FEATURES),
        family,
        long_horizon_estimator(),
        outer_steps=250,
        meta_lr=3e-3,
        checkpoint_every=50,
    )
    return StudyConfig(
        meta=meta,
        selection_task=dict(dataset="digits", width=8, depth=2, batch_size=64),
        eval_task=dict(dataset="digits", width=16, depth=2, batch_size=64),
        selection_length=1000,  # the evaluation horizon, see StudyConfig
        eval_steps=1000,
        eval_every=50,
        compare_at=(100,),
        seeds=5,
        baselines=("adam", "adam_cosine"),
        weight_decays=(0.0,),
    )


def paper_preset() -> StudyConfig:
    """Seed 000's protocol (GPU): FashionMNIST CNN-32, K = 100, 1000 outer steps, Adam 3e-4 cosine; judged on
    CIFAR10 with a CNN-64 for 1000 steps over 5 seeds against tuned Adam and RMSProp."""
    family = TaskFamily(datasets=("fashion_mnist",), models=("cnn",), widths=(32,), depths=(3,), batch_size=128)
    meta = MetaTrainConfig(
        GraphL2O(hidden=32, layers=4),
        family,
        FullUnrollBPTT(lengths=(100,), num_tasks=8),
        outer_steps=1000,
        meta_lr=3e-4,
        checkpoint_every=100,
    )
    return StudyConfig(
        meta=meta,
        selection_task=dict(dataset="fashion_mnist", width=32, depth=3),
        eval_task=dict(dataset="cifar10", width=64, depth=3),
        selection_length=1000,  # the evaluation horizon, see StudyConfig
        eval_steps=1000,
        seeds=5,
    )


PRESETS = {"quickstart": quickstart_preset, "paper": paper_preset}


def preset(name: str) -> StudyConfig:
    """A named study configuration (``'quickstart'`` or ``'paper'``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {sorted(PRESETS)}.")
    return PRESETS[name]()


def load_config(name_or_path: str, settings: tuple[str, ...] | list[str] = ()) -> StudyConfig:
    """A preset by name or a JSON file written by ``StudyConfig.to_json``, with dotted overrides applied in order.

    A setting names a field of the study (``eval_steps=3000``) or of its meta-training run, with or without the
    ``meta.`` prefix (``outer_steps=300``, ``meta.estimator=pes``, ``learned_optimizer.hidden=32``); values are
    read as in ``l2o_jax.optimizers.override``.

    Example:
      >>> config = load_config('quickstart', ['outer_steps=300', 'estimator=pes', 'eval_task.width=32'])
    """
    if name_or_path in PRESETS:
        config = preset(name_or_path)
    elif os.path.isfile(name_or_path):
        with open(name_or_path) as f:
            try:
                config = StudyConfig.from_json(f.read())
            except (ValueError, TypeError) as error:
                raise ValueError(f"{name_or_path}: not a study configuration: {error}") from error
    else:
        raise ValueError(f"--config {name_or_path!r} is neither a preset ({sorted(PRESETS)}) nor a file.")
    return apply_settings(config, settings)


def apply_settings(config: StudyConfig, settings) -> StudyConfig:
    """``config`` with each ``'dotted.path=value'`` of ``settings`` applied (see ``load_config``).

    Example:
      >>> apply_settings(preset('quickstart'), ['meta_seeds=5']).meta_seeds
      5
    """
    study_fields = {f.name for f in dataclasses.fields(StudyConfig)}
    meta_fields = {f.name for f in dataclasses.fields(MetaTrainConfig)}
    for setting in settings:
        path = setting.partition("=")[0]
        head = path.split(".")[0]
        if head not in study_fields:
            if head not in meta_fields:
                raise ValueError(
                    f"cannot set {path!r}: neither the study ({sorted(study_fields)}) nor its meta-training run "
                    f"({sorted(meta_fields)}) has a field {head!r}."
                )
            setting = "meta." + setting
        config = override(config, setting)
    if config.meta.outer_steps % config.meta.checkpoint_every and not any(
        s.split("=")[0].endswith("checkpoint_every") for s in settings
    ):
        config = config.with_overrides(outer_steps=config.meta.outer_steps)  # checkpoints that divide the run
    return config


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


def selection_rule(study: StudyConfig) -> str:
    """The checkpoint selection rule in words, as pages state it."""
    task = ", ".join(f"{k}={v}" for k, v in study.selection_task.items())
    return (
        f"validation loss after {study.selection_length} steps on image_task({task}), mean over "
        f"{study.selection_seeds} seeds; every checkpoint of each meta-run scored"
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
    summary = _report(study, workdir, runs, results, tuned, eval_task, time.perf_counter() - started)
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


def _comparisons(learned: list, baselines: list, step: int) -> dict:
    """Every baseline against the meta-runs at ``step``: bootstrap intervals on test accuracy and loss."""

    def at(result, key):
        return getattr(result, key)[:, list(result.eval_steps).index(step)]

    learned_acc = np.stack([at(r, "eval_accuracy") for r in learned])  # [meta-runs, seeds]
    learned_loss = np.stack([at(r, "eval_loss") for r in learned])
    return {
        b.name: {
            "accuracy": dataclasses.asdict(evaluation.compare(learned_acc, at(b, "eval_accuracy"))),
            "loss": dataclasses.asdict(evaluation.compare(learned_loss, at(b, "eval_loss"), higher_is_better=False)),
            "learned_accuracy_per_run": learned_acc.mean(1).tolist(),
            "learned_loss_per_run": learned_loss.mean(1).tolist(),
            "baseline_accuracy": [float(at(b, "eval_accuracy").mean()), float(at(b, "eval_accuracy").std())],
            "baseline_loss": [float(at(b, "eval_loss").mean()), float(at(b, "eval_loss").std())],
        }
        for b in baselines
    }


def _comparison_table(name: str, meta_runs: int, step: int, comparisons: dict) -> str:
    """Markdown: the meta-runs (mean ± std across them) and each baseline at ``step``, with the intervals."""
    per_run = lambda values: f"{np.mean(values):.4f} ± {np.std(values):.4f}"
    accuracy = lambda values: f"{100 * np.mean(values):.2f} ± {100 * np.std(values):.2f}"
    first = next(iter(comparisons.values()), None)
    rows = [
        f"At step {step}:",
        "",
        "| optimizer | test accuracy (%) | test loss | vs it: accuracy (pp) | vs it: loss |",
        "|---|---|---|---|---|",
    ]
    if first is not None:
        rows.append(
            f"| {name}, {meta_runs} meta-runs (mean ± std across them) | "
            f"{accuracy(first['learned_accuracy_per_run'])} | {per_run(first['learned_loss_per_run'])} | | |"
        )
    for baseline, c in comparisons.items():
        acc = evaluation.Comparison(**c["accuracy"]).describe(scale=100)
        loss = evaluation.Comparison(**c["loss"]).describe(digits=4)
        (acc_mean, acc_std), (loss_mean, loss_std) = c["baseline_accuracy"], c["baseline_loss"]
        rows.append(
            f"| {baseline} (mean ± std over seeds) | {100 * acc_mean:.2f} ± {100 * acc_std:.2f} | "
            f"{loss_mean:.4f} ± {loss_std:.4f} | {name} {acc} | {name} {loss} |"
        )
    return "\n".join(rows) + "\n"


def _report(study, workdir, runs, results, tuned, eval_task, seconds) -> dict:
    learned, baselines = results[: len(runs)], results[len(runs) :]
    final = lambda r, key: getattr(r, key)[:, -1]
    learned_acc = np.stack([final(r, "eval_accuracy") for r in learned])  # [meta-runs, seeds]
    learned_loss = np.stack([final(r, "eval_loss") for r in learned])
    steps = (*(s for s in study.compare_at if s < study.eval_steps), study.eval_steps)
    comparisons_at = {step: _comparisons(learned, baselines, step) for step in steps}
    comparisons = {
        name: {k: c[k] for k in ("accuracy", "loss")} for name, c in comparisons_at[study.eval_steps].items()
    }
    plot = evaluation.plot_curves(
        results,
        os.path.join(workdir, "accuracy.png"),
        title=f"{eval_task.name}: test accuracy, mean ± std over {study.seeds} seeds, each meta-run",
    )
    evaluation.save_results(results, os.path.join(workdir, "results.json"))
    name = type(study.meta.learned_optimizer).__name__
    summary = {
        "eval_task": eval_task.name,
        "selection_rule": selection_rule(study),
        "meta_runs": [
            {
                "meta_seed": r["meta_seed"],
                "best_checkpoint": r["best_checkpoint"],
                "checkpoint_scores": {str(k): v for k, v in r["checkpoint_scores"].items()},
                "result": res.summary(),
            }
            for r, res in zip(runs, learned)
        ],
        "learned": {
            "name": name,
            "final_accuracy_per_run": learned_acc.mean(1).tolist(),
            "final_loss_per_run": learned_loss.mean(1).tolist(),
        },
        "tuned": [{**dataclasses.asdict(t), "selection": t.selection} for t in tuned],
        "comparisons": comparisons,
        "comparisons_at": {str(step): c for step, c in comparisons_at.items()},
        "results": [r.summary() for r in results],
        "seconds": round(seconds, 1),
        "devices": [str(d) for d in jax.devices()],
    }
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    tables = [_comparison_table(name, len(runs), step, comparisons_at[step]) for step in steps]
    meta = study.meta
    text = [
        f"# {name} vs tuned baselines on {eval_task.name}",
        "",
        f"Meta-trained {len(runs)} times (meta-seeds {', '.join(str(r['meta_seed']) for r in runs)}) on "
        f"{', '.join(meta.task_family.datasets)} {'/'.join(meta.task_family.models).upper()} width "
        f"{meta.task_family.widths}, depth {meta.task_family.depths} "
        f"for {meta.outer_steps} outer steps ({meta.estimator}). Checkpoint rule: {selection_rule(study)}; picked: "
        + ", ".join(f"step {r['best_checkpoint']} (meta-seed {r['meta_seed']})" for r in runs)
        + ".",
        f"Evaluated for {study.eval_steps} steps over {study.seeds} seeds on the test split. Baselines: "
        + "; ".join(f"{t.label}, {t.selection}" for t in tuned)
        + f"; grid lr {list(study.learning_rates)} x wd {list(study.weight_decays)}. Differences are {name} minus "
        "the baseline with a 95 % bootstrap interval over meta-runs x seeds; 'beats' and 'loses to' only when the "
        "interval excludes zero.",
        f"How {name} forms a step: {study.meta.learned_optimizer.output.describe()}",
        "",
        *tables,
        "Every meta-run:",
        "",
        evaluation.results_table(results, baselines[0].name if baselines else None),
        "",
        f"![accuracy]({os.path.basename(plot)})",
        "",
        f"Total time: {seconds:.0f} s on {jax.devices()[0].platform}.",
    ]
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write("\n".join(text) + "\n")
    return summary
