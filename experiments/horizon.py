"""Learned optimizers judged over whole training runs: long-horizon meta-training, evaluated far past its truncations.

    python -m experiments.horizon --workdir runs/horizon_smoke            # the smoke study (CPU, embedded data)
    python -m experiments.horizon --workdir runs/h --tiny                 # the pipeline in a minute

Every learned optimizer is meta-trained ``meta_seeds`` times (independent meta-seeds) with truncated BPTT over
inner runs of log-uniformly drawn lengths (``long_horizon_estimator``); each run's checkpoint is picked by a rule
fixed here, before any held-out number exists (validation loss after ``selection_length`` steps on the
meta-training architecture, over 3 seeds). Each held-out task then runs every meta-run over ``seeds`` evaluation
seeds to ``steps``; Adam and warmup-cosine Adam are tuned on the fine grid on the validation split once per
reported horizon (100, 1000, ...), so at every horizon the learned optimizer meets the baseline a practitioner
would have tuned for a run of that length. Claims come from ``l2o_jax.evaluation.stats.compare`` (bootstrap over
meta-runs x seeds); the speed-up is the first step at which the learned optimizer's mean test loss reaches tuned
Adam's at ``speedup_step``.

The study is a configuration of ``l2o_jax.study.run_study``, the one study pipeline: every stage caches its result
under ``--workdir`` (meta-training resumes from its checkpoints), so a killed run continues where it stopped. The
result is ``<out>/horizon_<scale>.json`` and its page, written by ``experiments/report.py`` after every held-out
task.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

from experiments import report
from l2o_jax import io
from l2o_jax.features import RUN_LENGTH_FEATURES
from l2o_jax.meta import MetaTrainConfig
from l2o_jax.meta import long_horizon_estimator
from l2o_jax.optimizers import LSTML2O
from l2o_jax.optimizers import RUN_LENGTH_OUTPUT
from l2o_jax.optimizers import GraphL2O
from l2o_jax.study import HeldOutTask
from l2o_jax.study import StudyConfig
from l2o_jax.study import run_study
from l2o_jax.study import study_stage_seconds
from l2o_jax.tasks import TaskFamily


def smoke_study() -> StudyConfig:
    """CPU, embedded digits: meta-trained on CNN-8 (depth 2), judged on a 2x and 4x wider, a 2-deeper CNN and
    MNIST-1D."""
    base = dict(dataset="digits", width=8, depth=2, batch_size=64)
    learned = {
        "NG-GNN": GraphL2O(hidden=16, layers=2, features=RUN_LENGTH_FEATURES, output=RUN_LENGTH_OUTPUT),
        "LSTM": LSTML2O(hidden=16, num_layers=2, features=RUN_LENGTH_FEATURES, output=RUN_LENGTH_OUTPUT),
    }
    family = TaskFamily(datasets=("digits",), models=("cnn",), widths=(8,), depths=(2,), batch_size=64)
    meta = MetaTrainConfig(
        learned["NG-GNN"], family, long_horizon_estimator(), outer_steps=150, meta_lr=1e-3, checkpoint_every=75
    )
    # The ablation: NG-GNN as it starts (warmup-cosine Adam at RUN_LENGTH_OUTPUT's peak plus a near-zero learned
    # correction), judged like the others, shows what meta-training adds to its starting point.
    learned["NG-GNN, not meta-trained"] = dataclasses.replace(meta, outer_steps=0)
    return StudyConfig(
        meta=meta,
        learned=learned,
        meta_seeds=3,
        selection_task=base,
        selection_length=3000,
        selection_seeds=3,
        eval_task={**base, "width": 16},
        eval_steps=3000,
        held_out=(
            HeldOutTask("digits CNN-16", {**base, "width": 16}, 3000, "2x wider"),
            HeldOutTask("mnist1d CNN-8", {**base, "dataset": "mnist1d"}, 3000, "other data (1-D signals, 1-D kernels)"),
            HeldOutTask("digits CNN-32", {**base, "width": 32}, 1000, "4x wider"),
            HeldOutTask("digits CNN-8, depth 4", {**base, "depth": 4}, 1000, "2 layers deeper"),
        ),
        seeds=5,
        eval_every=50,
        compare_at=(100, 1000),
        speedup_step=1000,
        # The capped twin is warmup-cosine Adam with the start's update cap: the hand-made optimizer the learned ones
        # start from, so what meta-training adds is read against it.
        baselines=("adam", "adam_cosine", "adam_cosine_capped"),
        weight_decays=(0.0,),
    )


def tiny_study() -> StudyConfig:
    """Every stage at the smallest size: for tests and for trying the pipeline."""
    base = dict(dataset="digits", model="mlp", width=4, depth=2, batch_size=16)
    family = TaskFamily(datasets=("digits",), models=("mlp",), widths=(4,), depths=(2,), batch_size=16)
    estimator = long_horizon_estimator(truncation_length=3, low=4, high=12, num_tasks=2)
    meta = MetaTrainConfig(
        GraphL2O(hidden=8, layers=1), family, estimator, outer_steps=2, meta_lr=1e-3, checkpoint_every=1
    )
    return StudyConfig(
        meta=meta,
        learned={"NG-GNN": meta.learned_optimizer},
        meta_seeds=2,
        selection_task=base,
        selection_length=10,
        selection_seeds=1,
        eval_task={**base, "width": 8},
        eval_steps=20,
        held_out=(HeldOutTask("digits MLP-8", {**base, "width": 8}, 20, "2x wider"),),
        seeds=2,
        eval_every=10,
        compare_at=(10,),
        speedup_step=10,
        baselines=("adam",),
        learning_rates=(1e-3, 1e-2),
        weight_decays=(0.0,),
        tuning_seeds=1,
    )


STUDIES = {"smoke": smoke_study, "tiny": tiny_study}

#: What the long-horizon study is judged by (issue 15), checked on its page from the data: the learned optimizer at
#: least as accurate as each tuned baseline at every reported step and ``speedup`` times faster to its step-1000
#: loss; its advantage at least the per-parameter comparator's; and what meta-training adds over its start.
TARGETS = {
    "source": "issue 15",
    "learned": "NG-GNN",
    "comparator": "LSTM",
    "ablation": "NG-GNN, not meta-trained",
    "speedup": 2.0,
}


def run(
    study: StudyConfig,
    workdir: str,
    out: str,
    scale: str,
    progress: bool = True,
    log=print,
    *,
    name: str = "horizon",
    title: str = "Long-horizon learned optimizers ({scale} scale)",
    targets: dict | None = None,
    note: str | None = None,
) -> dict:
    """The whole study; returns the result's data, also written (with its page and figures) to ``out`` as
    ``<name>_<scale>.json`` after every held-out task, so a study cut short still has a page for the tasks it
    finished. ``title`` may name ``{scale}``; ``targets`` (see ``TARGETS``) go into the data, and the page checks
    them; ``note`` goes into the provenance (e.g. which cached stages were copied from another study)."""
    started = time.perf_counter()

    def publish(data):
        if targets:
            data["targets"] = targets
        data["provenance"] = report.provenance(started, stage_seconds=study_stage_seconds(study, workdir))
        if note:
            data["provenance"]["note"] = note
        report.save(data, os.path.join(out, f"{name}_{scale}.json"))

    return run_study(
        study,
        workdir,
        title=title.format(scale=scale),
        figures=out,
        figure_prefix=f"{name}_{scale}_",
        progress=progress,
        log=log,
        on_task=publish,
    )


def main(
    argv=None,
    *,
    studies=None,
    name: str = "horizon",
    title: str | None = None,
    description: str = "",
    targets: dict | None = None,
) -> dict:
    """The command line of a study script: ``--scale`` picks one of ``studies`` (default: this module's), the result
    goes to ``<out>/<name>_<scale>.json`` (see ``run``)."""
    if studies is None:  # this module's own studies, judged by its targets unless told otherwise
        studies, targets = STUDIES, TARGETS if targets is None else targets
    parser = argparse.ArgumentParser(description=description or __doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=f"runs/{name}", help="meta-training runs and cached stages")
    parser.add_argument("--out", default=None, help="where the JSON, page and figures go (default: docs/results)")
    parser.add_argument("--scale", choices=sorted(studies), default="smoke")
    parser.add_argument("--learned", nargs="+", help="only these learned optimizers (default: all of the study's)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--note", help="a line for the page's provenance, e.g. which stages were copied from where")
    args = parser.parse_args(argv)
    out = args.out or (report.RESULTS if args.scale == "smoke" else os.path.join(args.workdir, "results"))
    study = studies[args.scale]()
    if args.learned:
        unknown = sorted(set(args.learned) - set(study.learned))
        if unknown:
            parser.error(f"unknown learned optimizers {unknown}; the study has {sorted(study.learned)}")
        study = dataclasses.replace(study, learned={k: v for k, v in study.learned.items() if k in args.learned})
    titled = {} if title is None else {"title": title}
    io.use_compilation_cache(os.path.join(args.workdir, "jax_cache"))
    return run(
        study,
        args.workdir,
        out,
        args.scale,
        progress=not args.no_progress,
        name=name,
        targets=targets,
        note=args.note,
        **titled,
    )


if __name__ == "__main__":
    main()
