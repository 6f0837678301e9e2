"""Learned optimizers over whole training runs, against baselines tuned for each horizon."""

from __future__ import annotations

from experiments.pages import across_runs
from experiments.pages import mean_std
from experiments.pages import renderer
from experiments.pages import verdict


@renderer("horizon")
def _horizon(data: dict) -> str:
    """Issue 15: learned optimizers over whole runs, against baselines tuned for each horizon."""
    p = data["protocol"]
    meta = p["meta_training"]
    estimator = meta["estimator"]
    parts = [
        f"Meta-training ({p['meta_seeds']} independent meta-seeds per learned optimizer): "
        f"`{estimator['type']}` with {estimator['truncation_length']}-step truncations of inner runs lasting "
        f"{estimator['horizon']['low']}-{estimator['horizon']['high']} steps (log-uniform, staggered), meta-loss "
        f"`{estimator['unroll']['meta_loss']}`, {meta['outer_steps']} outer steps of Adam {meta['meta_lr']:g} "
        f"({meta['schedule']}), {estimator['num_tasks']} optimizees per step. Checkpoint rule: {p['selection_rule']}.",
        "How a step is formed (every learned optimizer here): `update = -lr * exp(b * tanh(m / b)) * (adam + d)`, "
        "Adam's bias-corrected direction plus a learned correction `d`, scaled by a learned per-parameter "
        "magnitude `m` bounded by `b` and a learned global step size `lr`.",
        f"Baselines ({', '.join(p['baselines'])}) tuned on the validation split for each horizon separately "
        f"(learning rates {min(p['learning_rates']):g}-{max(p['learning_rates']):g}, x2 grid, weight decay "
        f"{p['weight_decays']}, {p['tuning_seeds']} seeds; horizons beyond {p['full_grid_until']} steps search the "
        f"grid points within {p['zoom']:g}x of the previous horizon's pick, widened to the whole grid when the pick "
        f"lands on that zoom's edge); every optimizer evaluated on the test split over "
        f"{p['seeds']} seeds (the same seeds for all). Differences: learned minus baseline, 95 % bootstrap interval "
        "over meta-runs x seeds; **beats**/**loses to** only when it excludes zero.",
    ]
    for label, task in data["tasks"].items():
        rows = [
            "| step | learned | baseline (tuned for this horizon) | learned acc. (%), across meta-runs | "
            "baseline acc. (%), across seeds | "
            "difference (pp) | test loss difference |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in task["comparisons"]:
            tuned = task["tuned"][c["baseline"]][str(c["step"])]
            edge = ", on the grid's edge" if tuned.get("on_edge") else ""
            acc, loss = c["eval_accuracy"], c["eval_loss"]
            rows.append(
                f"| {c['step']} | {c['learned']} | {c['baseline']} (lr {tuned['learning_rate']:g}{edge}) | "
                f"{across_runs(acc['learned'])} | {mean_std(acc['baseline'], 2, 100)} | {verdict(acc, 100, 2)} | "
                f"{verdict(loss, 1, 4)} |"
            )
        speed = [
            f"- {s['learned']} reaches {s['baseline']}'s step-{p['speedup_step']} test loss ({s['target_loss']:.4f}) "
            + (f"at step {s['step']}: **{s['ratio']:.2f}x**" if s["step"] is not None else "**never** in the run")
            for s in task["speedups"]
        ]
        parts += [
            f"## {label} ({task['changes']}; {task['steps']} steps)",
            "\n".join(rows),
            "Speed-up (first evaluated step at which the mean test loss over meta-runs and seeds reaches the "
            "baseline's):",
            "\n".join(speed),
            f"![test accuracy and loss vs step]({task['figure']})",
        ]
    if data.get("not_run"):
        parts.append("Held-out tasks of the protocol that were not run: " + ", ".join(data["not_run"]) + ".")
    return "\n\n".join(parts)
