"""ScaleGraph L2O (scale/sign-equivariant iterative learned optimizer) against NG-GNN and tuned Adam, one long-horizon
study per activation, each rendered as a ``horizon`` page."""

from __future__ import annotations

from experiments.pages import RENDERERS
from experiments.pages import renderer
from experiments.pages import verdict

_SYMMETRY_TEXT = {
    "sign": "sign flips of hidden neurons (tanh is odd)",
    "scale": "positive rescalings of hidden neurons (ReLU is positively homogeneous); its step is formed on the "
    "scale-normalised network and multiplied back by each parameter's unit (`r_receiver / r_sender`)",
}


@renderer("scale_graph")
def _scale_graph(data: dict) -> str:
    """Issue 17, item 5: the ScaleGMN layers as the body of an iterative learned optimizer."""
    parts = [
        "ScaleGraph L2O (`l2o_jax.scale_graph_l2o`) is made of ScaleGMN's equivariant layers: its update of every "
        "parameter transforms like the parameter under permutations and sign flips (tanh) or positive rescalings "
        "(ReLU) of hidden neurons, so from any of the equivalent parametrisations of a network it trains the same "
        "functions (tests: `tests/test_scale_graph.py`, 1e-5). NG-GNN is equivariant to permutations only. Both are "
        "meta-trained with the same long-horizon recipe on the same tasks; Adam is tuned for each horizon. "
        "ScaleGraph's learned direction is bounded (`d -> b * tanh(d / b)`, b = `direction_bound`), and on ReLU "
        "networks its bracket `(adam + d)` is formed on the scale-normalised network and multiplied by each "
        "parameter's unit; the step-formula line below is otherwise shared by both learned optimizers."
    ]
    for activation, study in data["studies"].items():
        body = RENDERERS["horizon"](study).replace("\n## ", "\n### ")
        rows = [
            "| task | step | test accuracy, ScaleGraph - NG-GNN (pp) | test loss, ScaleGraph - NG-GNN |",
            "|---|---|---|---|",
        ]
        for label, task in study["tasks"].items():
            for c in task.get("head_to_head", []):
                accuracy, loss = verdict(c["eval_accuracy"], 100, 2), verdict(c["eval_loss"], 1, 4)
                rows.append(f"| {label} | {c['step']} | {accuracy} | {loss} |")
        parts += [
            f"## {activation} networks: ScaleGraph keeps {_SYMMETRY_TEXT[study['symmetry']]}",
            "ScaleGraph against NG-GNN (95 % bootstrap interval over both optimizers' meta-runs and the shared "
            "evaluation seeds; **beats**/**loses to** only when it excludes zero):",
            "\n".join(rows),
            body,
        ]
    return "\n\n".join(parts)
