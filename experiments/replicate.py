"""Sbicego et al., experiment 1: NG-GNN, NG-T, LSTM and MLP meta-trained on one CNN, evaluated on a wider held-out CNN
against Adam and RMSProp, each tuned once on that task and shared by every learned optimizer (Figure 1).

    python experiments/replicate.py --scale smoke --workdir runs/replicate_smoke     # embedded digits, CPU
    python experiments/replicate.py --scale paper --workdir runs/replicate_paper     # FashionMNIST -> CIFAR10, GPU
    python experiments/replicate.py --scale smoke --workdir runs/tiny --outer-steps 2 --inner-steps 5 \\
        --train-width 4 --eval-width 8 --eval-steps 10 --eval-every 5 --seeds 2 --learning-rates 1e-2

A configuration of the one study pipeline (``l2o_jax.study.run_study``): each learned optimizer meta-trained over
the protocol's meta-seeds, baselines tuned for the horizon, bootstrap intervals. The page is
``docs/results/replication_smoke.json``/``.md`` at smoke scale (``--out`` elsewhere); ``--workdir`` caches every
stage, and ``experiments/generalization.py`` with the same ``--workdir`` reuses the meta-training runs.
"""

from __future__ import annotations

import sys

from common import run_experiment

#: Sbicego et al.'s four, and NG-GNN and LSTM with Kofinas et al.'s step (the network's output, no Adam direction).
OPTIMIZERS = ("NG-GNN", "NG-T", "LSTM", "MLP", "NG-GNN (base none)", "LSTM (base none)")


def main(argv: list[str] | None = None) -> dict:
    """Runs the study; ``argv`` as on the command line (``None``: ``sys.argv[1:]``). Returns its data."""
    return run_experiment(
        "replicate.py", argv, OPTIMIZERS, "Figure 1: learned optimizers vs tuned baselines", "replication"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
