"""A study's result as markdown and figures: comparisons with intervals at every horizon, speed-ups, and test
accuracy and loss against steps (log x). The CLI's ``results.md`` and the ``docs/results`` pages of kind
``horizon`` are both this markdown.
"""

from __future__ import annotations

import os

import numpy as np


def mean_std(values, digits: int = 4, scale: float = 1.0) -> str:
    """``'0.1234 ± 0.0056'``: mean ± std over the leading axis (seeds).

    Example:
      >>> mean_std([0.9, 0.92], 2, 100)
      '91.00 ± 1.00'
    """
    values = scale * np.asarray(values, np.float64)
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


def verdict(c: dict, scale: float, digits: int) -> str:
    """A comparison dict (``stats.Comparison`` as data) as ``'beats (+1.20, CI +0.40 to +2.00)'``.

    Example:
      >>> verdict({'verdict': 'ties', 'mean_difference': 0.01, 'low': -0.01, 'high': 0.03}, 100, 1)
      '**ties** (+1.0, CI -1.0 to +3.0)'
    """
    m, lo, hi = (scale * c[k] for k in ("mean_difference", "low", "high"))
    return f"**{c['verdict']}** ({m:+.{digits}f}, CI {lo:+.{digits}f} to {hi:+.{digits}f})"


def across_runs(values, scale: float = 100.0, digits: int = 2) -> str:
    """``'95.10 ± 0.40'``: mean ± std across meta-runs of the per-run mean over seeds (``[runs, seeds]``), times
    ``scale`` (default: fractions as %); a diverged run shows as inf or nan.

    Example:
      >>> across_runs([[0.9, 0.92], [0.94, 0.96]])
      '93.00 ± 2.00'
    """
    per_run = scale * np.asarray(values, np.float64).reshape(-1, np.shape(values)[-1]).mean(1)
    return f"{per_run.mean():.{digits}f} ± {per_run.std():.{digits}f}"


def describe_meta_training(protocol: dict) -> str:
    """The meta-training run of a study's protocol in one sentence."""
    meta = protocol["meta_training"]
    estimator = meta["estimator"]
    if "truncation_length" in estimator:
        horizon = estimator["horizon"]
        if isinstance(horizon, dict):
            stagger = ", staggered" if estimator.get("stagger") else ""
            horizon = f"{horizon['low']}-{horizon['high']} steps (log-uniform{stagger})"
        else:
            horizon = f"{horizon} steps"
        truncation = estimator["truncation_length"]
        how = f"`{estimator['type']}` with {truncation}-step truncations of inner runs lasting {horizon}"
    else:
        how = f"`{estimator['type']}` through whole inner runs of {'/'.join(map(str, estimator['lengths']))} steps"
    count = estimator.get("num_tasks", estimator.get("num_pairs"))
    return (
        f"Meta-training ({protocol['meta_seeds']} independent meta-seeds per learned optimizer): {how}, meta-loss "
        f"`{estimator['unroll']['meta_loss']}`, {meta['outer_steps']} outer steps of Adam {meta['meta_lr']:g} "
        f"({meta['schedule']}), {count} optimizees per step. Checkpoint rule: {protocol['selection_rule']}."
    )


def markdown(data: dict) -> str:
    """The body of a study's page (``run_study``'s data): protocol, per-task comparisons and speed-ups, figures.

    Example:
      >>> text = markdown(run_study(preset('quickstart'), 'runs/quickstart'))
    """
    p = data["protocol"]
    steps = p.get("step") or {
        "every learned optimizer here": "`update = -lr * exp(b * tanh(m / b)) * (adam + d)`, Adam's bias-corrected "
        "direction plus a learned correction `d`, scaled by a learned per-parameter magnitude `m` bounded by `b` "
        "and a learned global step size `lr`."
    }
    parts = [
        describe_meta_training(p),
        "How a step is formed: " + "; ".join(f"{label}: {text.rstrip('.')}" for label, text in steps.items()) + ".",
        f"Baselines ({', '.join(p['baselines'])}) tuned on the validation split for each horizon separately "
        f"(learning rates {min(p['learning_rates']):g}-{max(p['learning_rates']):g}, x2 grid, weight decay "
        f"{p['weight_decays']}, {p['tuning_seeds']} seeds; horizons beyond {p['full_grid_until']} steps search the "
        f"grid points within {p['zoom']:g}x of the previous horizon's pick, widened to the whole grid when the pick "
        f"lands on that zoom's edge{_edge_rule(p)}); every optimizer evaluated on the test split over "
        f"{p['seeds']} seeds (the same seeds for all). Differences: learned minus baseline, 95 % bootstrap interval "
        "over meta-runs x seeds; **beats**/**loses to** only when it excludes zero.",
    ]
    if data.get("selection"):
        parts.append(selected_checkpoints(data["selection"]))
        if scores := checkpoint_scores(data["selection"]):
            parts.append(scores)
    for label, task in data["tasks"].items():
        parts += [
            f"## {label} ({task['changes']}; {task['steps']} steps)",
            comparison_table(task),
            "Speed-up (first evaluated step at which the mean test loss over meta-runs and seeds reaches the "
            "baseline's):",
            "\n".join(
                f"- {s['learned']} reaches {s['baseline']}'s step-{p['speedup_step']} test loss "
                f"({s['target_loss']:.4f}) "
                + (f"at step {s['step']}: **{s['ratio']:.2f}x**" if s["step"] is not None else "**never** in the run")
                for s in task["speedups"]
            ),
            f"![test accuracy and loss vs step]({task['figure']})",
        ]
    if data.get("not_run"):
        parts.append("Held-out tasks of the protocol that were not run: " + ", ".join(data["not_run"]) + ".")
    return "\n\n".join(parts)


def _edge_rule(protocol: dict) -> str:
    widen = protocol.get("widen_edges", 0)
    if not widen:
        return ""
    return f"; a pick on the whole grid's edge extends the grid by two points beyond that edge, up to {widen} times"


def selected_checkpoints(selection: dict) -> str:
    """One line per learned optimizer: the outer step each meta-run's rule selected (0 is the initialisation).

    Example:
      >>> selected_checkpoints({'NG-GNN': [{'selected_step': 0}, {'selected_step': 150}]})
      'Selected checkpoints (outer step; 0 is the initialisation, before any meta-training): NG-GNN: 0, 150.'
    """
    runs = "; ".join(f"{label}: {', '.join(str(r['selected_step']) for r in rs)}" for label, rs in selection.items())
    return f"Selected checkpoints (outer step; 0 is the initialisation, before any meta-training): {runs}."


def checkpoint_scores(selection: dict) -> str:
    """Markdown: every scored checkpoint's validation loss (the selection rule's score), one row per meta-run of
    each learned optimizer that has more than its initialisation, the selected one in bold; ``''`` if none has.

    Example:
      >>> checkpoint_scores({'NG-GNN': [{'meta_seed': 0, 'selected_step': 0, 'validation_loss': {'0': 0.2, '5': 0.3}}]})
      '... | NG-GNN | 0 | **0.2000** | 0.3000 |'
    """
    runs = [(label, r) for label, rs in selection.items() for r in rs if len(r.get("validation_loss", {})) > 1]
    if not runs:
        return ""
    steps = sorted({int(step) for _, r in runs for step in r["validation_loss"]})

    def cell(run, step):
        loss = run["validation_loss"].get(str(step))
        text = "" if loss is None else f"{loss:.4f}"
        return f"**{text}**" if step == run["selected_step"] else text

    lines = [
        "Validation loss of every checkpoint under the selection rule (selected in bold; outer step 0 is the "
        "initialisation):",
        "",
        "| learned | meta-seed | " + " | ".join(f"step {step}" for step in steps) + " |",
        "|---|---|" + "---|" * len(steps),
    ]
    lines += [f"| {label} | {r['meta_seed']} | " + " | ".join(cell(r, s) for s in steps) + " |" for label, r in runs]
    return "\n".join(lines)


def comparison_table(task: dict) -> str:
    """Markdown: one row per (horizon, learned optimizer, baseline) of a task's entry, with the intervals."""
    rows = [
        "| step | learned | baseline (tuned for this horizon) | learned acc. (%), across meta-runs | "
        "baseline acc. (%), across seeds | difference (pp) | test loss difference |",
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
    return "\n".join(rows)


def plot_task(curves: dict, path: str | os.PathLike, title: str) -> str:
    """Test accuracy and loss against steps (log x): learned optimizers' mean over meta-runs x seeds with the
    spread across meta-runs, and each baseline for its longest tuned horizon.

    Example:
      >>> plot_task(curves, 'runs/quickstart/digits-cnn-16.png', 'digits CNN-16 (2x wider)')
    """
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
    fig.savefig(os.fspath(path), dpi=110)
    return os.fspath(path)
