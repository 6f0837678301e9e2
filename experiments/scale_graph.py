"""ScaleGraph L2O (``l2o_jax.scale_graph_l2o``) against NG-GNN and tuned Adam over whole training runs, on tanh
and on ReLU networks.

    python -m experiments.scale_graph --workdir /work/runs/scale_graph/study      # the smoke study (CPU)
    python -m experiments.scale_graph --workdir ... --activations tanh           # one half (e.g. in parallel)

One long-horizon study (``experiments.horizon``: meta-training with ``long_horizon_estimator`` over independent
meta-seeds, the checkpoint rule fixed in advance, Adam tuned per horizon, bootstrap comparisons) per activation:
on tanh MLPs ScaleGraph is sign-equivariant, on ReLU MLPs scale-equivariant, and NG-GNN (permutations only) is
meta-trained with the same recipe on the same tasks. Every stage is cached under ``--workdir/<activation>``, so
the halves can run as two processes and a last run without ``--activations`` writes the page from the caches.
The result is ``<out>/scale_graph_<scale>.json`` and its page.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np

from experiments import horizon
from experiments import report
from l2o_jax import evaluation
from l2o_jax import study
from l2o_jax.features import LONG_HORIZON_FEATURES
from l2o_jax.meta import MetaTrainConfig
from l2o_jax.meta import long_horizon_estimator
from l2o_jax.optimizers import GraphL2O
from l2o_jax.optimizers import ScaleGraphL2O
from l2o_jax.tasks import TaskFamily

#: The symmetry of each activation's hidden neurons that ScaleGraph keeps.
SYMMETRY = {"tanh": "sign", "relu": "scale"}


def smoke_study(activation: str) -> study.StudyConfig:
    """CPU, embedded digits: meta-trained on MLPs with two hidden layers of 8, judged on a 4x wider MLP and on
    MNIST-1D, 3000 steps (10x the longest meta-training inner run, 300x its truncations)."""
    base = dict(dataset="digits", model="mlp", width=8, depth=3, activation=activation, batch_size=64)
    learned = {
        "ScaleGraph": ScaleGraphL2O(symmetry=SYMMETRY[activation], hidden=16, layers=2, features=LONG_HORIZON_FEATURES),
        "NG-GNN": GraphL2O(hidden=16, layers=2, features=LONG_HORIZON_FEATURES),
    }
    family = TaskFamily(
        datasets=("digits",), models=("mlp",), widths=(8,), depths=(3,), activations=(activation,), batch_size=64
    )
    estimator = long_horizon_estimator(
        truncation_length=10, low=30, high=300, num_tasks=4, meta_loss="log_mean", method="tbptt"
    )
    meta = MetaTrainConfig(learned["ScaleGraph"], family, estimator, outer_steps=40, meta_lr=3e-3, checkpoint_every=20)
    return study.StudyConfig(
        meta=meta,
        learned=learned,
        meta_seeds=3,
        selection_task=base,
        selection_length=1000,
        selection_seeds=2,
        eval_task={**base, "width": 32},
        eval_steps=3000,
        held_out=(
            study.HeldOutTask("digits MLP-32", {**base, "width": 32}, 3000, "4x wider"),
            study.HeldOutTask("mnist1d MLP-8", {**base, "dataset": "mnist1d"}, 3000, "other data (1-D signals)"),
        ),
        seeds=3,
        eval_every=50,
        compare_at=(100, 1000),
        speedup_step=1000,
        baselines=("adam",),
        weight_decays=(0.0,),
        tuning_seeds=2,
    )


def tiny_study(activation: str) -> study.StudyConfig:
    """Every stage at the smallest size: for trying the pipeline."""
    tiny = horizon.tiny_study()
    base = {**tiny.selection_task, "activation": activation}
    family = dataclasses.replace(tiny.meta.task_family, activations=(activation,))
    return dataclasses.replace(
        tiny,
        meta=dataclasses.replace(tiny.meta, task_family=family),
        learned={
            "ScaleGraph": ScaleGraphL2O(symmetry=SYMMETRY[activation], hidden=4, layers=1),
            "NG-GNN": GraphL2O(hidden=4, layers=1),
        },
        selection_task=base,
        held_out=(study.HeldOutTask("digits MLP-8", {**base, "width": 8}, 20, "2x wider"),),
    )


STUDIES = {"smoke": smoke_study, "tiny": tiny_study}


def head_to_head(config: study.StudyConfig, learned: dict, steps: int) -> list[dict]:
    """ScaleGraph minus NG-GNN at every horizon of a task, on test accuracy and loss, with bootstrap intervals that
    draw both optimizers' meta-runs and the shared evaluation seeds."""
    rows = []
    for step in config.horizons(steps):
        row = {"step": step}
        for key, higher in (("eval_accuracy", True), ("eval_loss", False)):
            ours, theirs = (
                np.stack([study.curve_at(r, key, step) for r in learned[k]]) for k in ("ScaleGraph", "NG-GNN")
            )
            row[key] = dataclasses.asdict(evaluation.compare(ours, theirs, higher_is_better=higher))
        rows.append(row)
    return rows


def run(scale: str, activations, workdir: str, out: str, progress: bool = True, log=print) -> dict:
    """The study for each activation (cached stages under ``workdir/<activation>``); the result is written to
    ``out`` after every held-out task and returned."""
    started = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    data = {"kind": "scale_graph", "title": f"ScaleGraph L2O on tanh and ReLU networks ({scale} scale)", "studies": {}}
    for activation in activations:
        config = STUDIES[scale](activation)
        part_dir = os.path.join(workdir, activation)
        part = data["studies"][activation] = {
            "symmetry": SYMMETRY[activation],
            "protocol": study.protocol(config),
            "selection": study.train_and_select(config, part_dir, progress=progress, log=log),
            "tasks": {},
        }
        for held_out in config.tasks():
            figure = os.path.join(out, f"scale_graph_{scale}_{activation}_{report.slug(held_out.label)}.png")
            result = part["tasks"][held_out.label] = study.task_result(config, held_out, part_dir, figure, log)
            result["head_to_head"] = head_to_head(config, result["curves"]["learned"], held_out.steps)
            part["not_run"] = [t.label for t in config.tasks() if t.label not in part["tasks"]]
            data["provenance"] = report.provenance(started)
            report.save(data, os.path.join(out, f"scale_graph_{scale}.json"))
    return data


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="runs/scale_graph", help="meta-training runs and cached stages")
    parser.add_argument("--out", default=None, help="where the JSON, page and figures go (default: docs/results)")
    parser.add_argument("--scale", choices=sorted(STUDIES), default="smoke")
    parser.add_argument("--activations", nargs="+", choices=sorted(SYMMETRY), default=["tanh", "relu"])
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    out = args.out or (report.RESULTS if args.scale == "smoke" else os.path.join(args.workdir, "results"))
    return run(args.scale, args.activations, args.workdir, out, progress=not args.no_progress)


if __name__ == "__main__":
    main()
