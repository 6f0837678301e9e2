"""Sbicego et al.'s Figure 3: learned optimizers on CNNs of growing width and depth, each size with its own tuned
baselines; the study's page plus the advantage along each axis."""

from __future__ import annotations

from experiments.pages import renderer
from experiments.pages import verdict
from l2o_jax.study import markdown


@renderer("generalization")
def render(data: dict) -> str:
    """The study's comparisons per size, then the advantage over the first tuned baseline along each axis."""
    family = data["protocol"]["meta_training"]["task_family"]
    baseline = data["protocol"]["baselines"][0]
    parts = [markdown(data)]
    for axis, other, reference in (("width", "depth", family["depths"][0]), ("depth", "width", family["widths"][0])):
        rows = [f"| {axis} | learned | final test accuracy minus tuned {baseline} (pp, 95 % CI) |", "|---|---|---|"]
        for task in data["tasks"].values():
            if task["task"][other] != reference:
                continue
            for c in task["comparisons"]:
                if c["baseline"] == baseline and c["step"] == task["steps"]:
                    rows.append(f"| {task['task'][axis]} | {c['learned']} | {verdict(c['eval_accuracy'], 100, 2)} |")
        parts += [f"## Advantage along {axis} ({other} {reference}, the meta-training {other})", "\n".join(rows)]
        if data.get("figures", {}).get(axis):
            parts.append(f"![advantage vs {axis}]({data['figures'][axis]})")
    return "\n\n".join(parts)
