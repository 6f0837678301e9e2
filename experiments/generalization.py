"""Sbicego et al., experiment 3: the meta-trained NG-GNN, NG-T and LSTM on CNNs of growing width (at the
meta-training depth) and depth (at the meta-training width). Each size is a held-out task with its own tuned
baselines; the advantage is a learned optimizer's final test accuracy minus tuned Adam's with its 95 % bootstrap
interval over meta-runs x seeds (Figure 3: ``generalization_<scale>_width.png`` and ``..._depth.png``).

    python experiments/generalization.py --scale smoke --workdir runs/replicate_smoke   # reuses replicate.py's runs
    python experiments/generalization.py --scale paper --workdir runs/replicate_paper

A configuration of the one study pipeline (``l2o_jax.study.run_study``); the page is
``docs/results/generalization_smoke.json``/``.md`` at smoke scale.
"""

from __future__ import annotations

import os
import sys

from common import held_out_task
from common import run_experiment
from common import task_label

from l2o_jax import evaluation

OPTIMIZERS = ("NG-GNN", "NG-T", "LSTM")


def add_arguments(parser) -> None:
    parser.add_argument("--widths", nargs="+", type=int, help="width sweep (at the meta-training depth)")
    parser.add_argument("--depths", nargs="+", type=int, help="depth sweep (at the meta-training width)")


def sizes(protocol, scale, args) -> tuple:
    """Every width of the sweep at the meta-training depth, then every depth at the meta-training width."""
    family = protocol.meta.task_family
    pairs = [(w, family.depths[0]) for w in args.widths or scale.widths]
    pairs += [(family.widths[0], d) for d in args.depths or scale.depths]
    tasks = [{**protocol.eval_task, "width": w, "depth": d} for w, d in dict.fromkeys(pairs)]
    return tuple(held_out_task(task_label(t), protocol, t, protocol.eval_steps) for t in tasks)


def advantages(data: dict, axis: str) -> dict:
    """``{learned: (xs, means, half-widths)}``: each learned optimizer's test-accuracy difference to the first
    baseline (pp) at the end of the run, along the sweep of ``axis`` at the other axis's meta-training value."""
    family = data["protocol"]["meta_training"]["task_family"]
    fixed = {"width": ("depth", family["depths"][0]), "depth": ("width", family["widths"][0])}[axis]
    baseline = data["protocol"]["baselines"][0]
    out = {}
    for task in data["tasks"].values():
        if task["task"][fixed[0]] != fixed[1]:
            continue
        for c in task["comparisons"]:
            if c["baseline"] == baseline and c["step"] == task["steps"]:
                acc = c["eval_accuracy"]
                xs, means, errors = out.setdefault(c["learned"], ([], [], []))
                xs.append(task["task"][axis])
                means.append(100 * acc["mean_difference"])
                errors.append(50 * (acc["high"] - acc["low"]))
    return out


def plot_advantages(data: dict, out: str, prefix: str) -> None:
    """Figure 3's two panels from the data; their file names go into ``data['figures']``."""
    family = data["protocol"]["meta_training"]["task_family"]
    data["figures"] = {}
    for axis, reference in (("width", family["widths"][0]), ("depth", family["depths"][0])):
        along = advantages(data, axis)
        curves = {name: (means, errors) for name, (_, means, errors) in along.items()}
        xs = next(iter(along.values()))[0]
        path = os.path.join(out, f"{prefix}{axis}.png")
        evaluation.plot_advantage(
            xs, curves, path, xlabel=f"CNN {axis}", reference=reference, title=f"advantage over tuned Adam vs {axis}"
        )
        data["figures"][axis] = os.path.basename(path)


def main(argv: list[str] | None = None) -> dict:
    """Runs the generalization study; ``argv`` as on the command line (``None``: ``sys.argv[1:]``)."""
    return run_experiment(
        "generalization.py",
        argv,
        OPTIMIZERS,
        "Figure 3: generalization to wider and deeper CNNs",
        "generalization",
        kind="generalization",
        add_arguments=add_arguments,
        held_out=sizes,
        finish=plot_advantages,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
