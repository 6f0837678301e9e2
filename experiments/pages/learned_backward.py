"""A learned backward pass by message passing, against true gradients."""

from __future__ import annotations

from experiments.pages import final_table
from experiments.pages import renderer


@renderer("learned_backward")
def _learned_backward(data: dict) -> str:
    """Seed 001: a learned backward pass against true gradients under the same optimizer and learning rate."""
    setup, tuning = data["setup"], data["tuning"]
    meta_rows = [
        "| optimizer | meta-loss, backprop init | meta-loss, meta-trained | first → last 10 training meta-losses | s |",
        "|---|---|---|---|---|",
    ]
    for name, r in data["meta_training"].items():
        meta_rows.append(
            f"| {name} {r['lr']:g} | {r['before']:.4f} | {r['after']:.4f} | {r['first_10']:.4f} → "
            f"{r['last_10']:.4f} | {r['seconds']:.0f} |"
        )
    gaps = []
    for task, curves in data["tasks"].items():
        for name in data["optimizers"]:
            true = next(c for c in curves if c["name"].startswith(name + " ") and c["name"].endswith("true gradients"))
            learned = next(c for c in curves if c["name"].startswith(name + " ") and c["name"].endswith("backward"))
            gap = 100 * (learned["final_accuracy"] - true["final_accuracy"])
            loss_gap = learned["final_loss"] - true["final_loss"]
            gaps.append(f"- {task}, {name}: learned − true = {gap:+.2f} pp accuracy, {loss_gap:+.4f} test loss")
    first = next(iter(data["tasks"].values()))[0]
    return "\n\n".join(
        [
            f"Meta-training: `{setup['train_task']}` family, BPTT through {setup['unroll']}-step unrolls x "
            f"{setup['num_tasks']} optimizees, {setup['outer_steps']} outer steps of Adam {setup['meta_lr']:g} "
            f"(cosine); node and edge networks of width {setup['hidden']}, {setup['layers']} hidden layers "
            f"({setup['meta_parameters']} meta-parameters). One learned backward pass per optimizer, meta-trained "
            "under it at the learning rate tuned for it on true gradients (grid "
            + ", ".join(f"{k} {list(v)}" for k, v in tuning["grid"].items())
            + f"; {tuning['rule']} after {tuning['steps']} steps on the meta-training architecture, "
            f"{tuning['seeds']} seeds): " + ", ".join(f"{k} {v:g}" for k, v in tuning["learning_rates"].items()) + ".",
            "## Meta-loss on held-out seeds (mean training loss over the unroll)",
            "\n".join(meta_rows),
            f"## Held-out tasks: {first['steps']} steps, {first['seeds']} seeds (mean ± std)",
            final_table(data["tasks"]),
            "Learned backward minus true gradients under the same optimizer and learning rate:",
            "\n".join(gaps),
            f"![test loss and accuracy vs step]({data['figure']})",
        ]
    )
