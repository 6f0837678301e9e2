"""Li & Malik (2017): policy-search optimizers against tuned baselines."""

from __future__ import annotations

from experiments.pages import objective_table
from experiments.pages import renderer


@renderer("li_malik")
def _li_malik(data: dict) -> str:
    """Seed 003: policy-search optimizers and tuned baselines, the training objective along the run."""
    setup, tuning = data["setup"], data["tuning"]
    parts = [
        f"Meta-training task: `{setup['train_task']}`; unroll {setup['unroll']} steps; policy LSTM width "
        f"{setup['hidden']}.",
        "Meta-training wall time (s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in setup["meta_training_seconds"].items())
        + ".",
        f"Baseline learning rates tuned on `{tuning['task']}` over {tuning['steps']} steps ({tuning['seeds']} "
        f"seeds, {tuning['rule']}): " + ", ".join(f"{k} {v:g}" for k, v in tuning["learning_rates"].items()) + ".",
    ]
    for task, curves in data["tasks"].items():
        seeds = curves[0]["seeds"]
        parts += [
            f"**{task}** (full-batch training objective; mean ± std over {seeds} seeds)",
            objective_table(curves, tuple(data["marks"])),
        ]
    parts.append(f"![objective vs iteration]({data['figure']})")
    return "\n\n".join(parts)
