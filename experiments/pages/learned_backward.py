"""A learned backward pass by message passing, against true gradients, over several meta-training runs."""

from __future__ import annotations

import numpy as np

from experiments.pages import across_runs
from experiments.pages import markdown_table
from experiments.pages import mean_std
from experiments.pages import renderer
from experiments.pages import verdict


def _setup(data: dict) -> str:
    setup, tuning = data["setup"], data["tuning"]
    picks = ", ".join(
        f"{name} {lr:g}" + (" (on the grid's edge)" if tuning["on_edge"][name] else "")
        for name, lr in tuning["learning_rates"].items()
    )
    return "\n\n".join(
        [
            f"Meta-training: `{setup['train_task']}` family, BPTT through {setup['unroll']}-step unrolls x "
            f"{setup['num_tasks']} optimizees, {setup['outer_steps']} outer steps of Adam {setup['meta_lr']:g} "
            f"(cosine); node and edge networks of width {setup['hidden']}, {setup['layers']} hidden layers "
            f"({setup['meta_parameters']} meta-parameters). {setup['meta_seeds']} independent meta-training runs "
            "(meta-seeds) per optimizer, each from the backprop initialisation and under that optimizer at the "
            f"learning rate tuned for it on true gradients. Checkpoint rule, fixed before evaluation: "
            f"{setup['selection_rule']}.",
            "Tuning: "
            + ", ".join(f"{k} {[float(f'{v:.4g}') for v in grid]}" for k, grid in tuning["grid"].items())
            + f" (x2 grids), {tuning['rule']} on the validation split of the meta-training architecture after "
            f"{tuning['steps']} steps (the evaluation's horizon), {tuning['seeds']} seeds: {picks}.",
            f"Evaluation: fresh optimizees of each held-out task trained for {setup['eval_steps']} steps "
            f"({setup['eval_steps'] / setup['unroll']:g}x the unroll) with true and with learned gradients under the "
            f"same optimizer and learning rate, over the same {len(setup['eval_seeds'])} seeds (same initialisations "
            "and batches); test split. Learned values: mean ± std across meta-runs of each run's mean over seeds; "
            "true gradients: mean ± std over seeds. Differences: learned minus true, 95 % bootstrap interval over "
            "meta-runs x seeds (a diverged run counts as the worst outcome); **beats** / **loses to** only when it "
            "excludes zero. Diverged: runs x seeds whose test loss is not finite at that step.",
        ]
    )


def _meta_training(data: dict) -> str:
    header = ["optimizer", "meta-seed", "meta-loss, backprop init", "meta-loss, meta-trained",
              "first → last 10 training meta-losses", "s"]  # fmt: skip
    rows = [
        [
            f"{name} {data['tuning']['learning_rates'][name]:g}",
            r["meta_seed"],
            f"{r['before']:.4f}",
            f"{r['after']:.4f}",
            f"{r['first_10']:.4f} → {r['last_10']:.4f}",
            f"{r['seconds']:.0f}",
        ]  # fmt: skip
        for name, runs in data["meta_training"].items()
        for r in runs
    ]
    return markdown_table(header, rows)


def _comparisons(task: dict) -> str:
    header = ["step", "optimizer", "true gradients: acc. (%)", "learned backward: acc. (%)",
              "accuracy difference (pp)", "true gradients: test loss", "learned backward: test loss",
              "test loss difference", "diverged (learned; true)"]  # fmt: skip
    rows = []
    for c in sorted(task["comparisons"], key=lambda c: c["step"]):
        acc, loss = c["eval_accuracy"], c["eval_loss"]
        learned, true = (np.asarray(loss[k], np.float64) for k in ("learned", "baseline"))
        diverged = f"{(~np.isfinite(learned)).sum()}/{learned.size}; {(~np.isfinite(true)).sum()}/{true.size}"
        rows.append([
            c["step"], f"{c['baseline'].split(',')[0]} ({len(acc['learned'])} meta-runs)",
            mean_std(acc["baseline"], 2, 100), across_runs(acc["learned"]), verdict(acc, 100, 2),
            mean_std(loss["baseline"]), across_runs(loss["learned"], 1.0, 4), verdict(loss, 1, 4), diverged,
        ])  # fmt: skip
    return markdown_table(header, rows)


def _tally(data: dict) -> str:
    last = data["setup"]["eval_steps"]
    lines = []
    for step in (data["setup"]["unroll"], last):
        found = [(label, c) for label, t in data["tasks"].items() for c in t["comparisons"] if c["step"] == step]
        counts = {v: sum(c["eval_accuracy"]["verdict"] == v for _, c in found) for v in ("beats", "ties", "loses to")}
        lines.append(
            f"- Step {step}: on test accuracy the learned backward pass "
            + ", ".join(f"{v} true gradients {n} times" for v, n in counts.items())
            + f" (of {len(found)}: {len(data['tasks'])} held-out tasks x {len(data['optimizers'])} optimizers)."
        )
    return "\n".join(lines)


@renderer("learned_backward")
def _learned_backward(data: dict) -> str:
    """Seed 001: a learned backward pass against true gradients under the same optimizer and learning rate."""
    parts = [
        _setup(data),
        "## Summary",
        _tally(data),
        "## Meta-loss on held-out seeds (mean training loss over the unroll)",
        _meta_training(data),
    ]
    for label, task in data["tasks"].items():
        parts += [
            f"## {label}: `{task['task']}`",
            _comparisons(task),
            f"![test accuracy and loss vs step, log x]({task['figure']})",
        ]
    return "\n\n".join(parts)
