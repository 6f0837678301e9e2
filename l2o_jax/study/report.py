"""A study's workdir report: comparisons with intervals, the markdown tables, the figure and ``summary.json``."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import numpy as np

from l2o_jax import evaluation
from l2o_jax.study.config import selection_rule


def compare_at_step(learned: list, baselines: list, step: int) -> dict:
    """Every baseline against the meta-runs at ``step``: bootstrap intervals on test accuracy and loss.

    Example:
      >>> compare_at_step(learned_results, baseline_results, 1000)['adam (tuned lr=0.0064)']['accuracy']['verdict']
      'loses to'
    """

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


def comparison_table(name: str, meta_runs: int, step: int, comparisons: dict) -> str:
    """Markdown: the meta-runs (mean ± std across them) and each baseline at ``step``, with the intervals.

    Example:
      >>> print(comparison_table('GraphL2O', 3, 1000, compare_at_step(learned_results, baseline_results, 1000)))
    """
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


def write_report(study, workdir, runs, results, tuned, eval_task, seconds) -> dict:
    """Writes ``summary.json`` (every meta-run's numbers and the comparisons), ``results.md``, ``results.json`` and
    ``accuracy.png`` into ``workdir``; returns the summary.

    Example:
      >>> summary = write_report(study, workdir, runs, results, tuned, eval_task, seconds=812.0)
    """
    learned, baselines = results[: len(runs)], results[len(runs) :]
    final = lambda r, key: getattr(r, key)[:, -1]
    learned_acc = np.stack([final(r, "eval_accuracy") for r in learned])  # [meta-runs, seeds]
    learned_loss = np.stack([final(r, "eval_loss") for r in learned])
    steps = (*(s for s in study.compare_at if s < study.eval_steps), study.eval_steps)
    comparisons_at = {step: compare_at_step(learned, baselines, step) for step in steps}
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
    tables = [comparison_table(name, len(runs), step, comparisons_at[step]) for step in steps]
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
