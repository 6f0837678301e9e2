"""Seed 000, experiment 1: NG-GNN, NG-T, LSTM and MLP meta-trained on one CNN, evaluated on a wider held-out CNN
against Adam and RMSProp, each tuned once on that task and shared by every learned optimizer (Figure 1).

    python experiments/replicate.py --scale smoke --workdir runs/replicate_smoke     # embedded digits, CPU
    python experiments/replicate.py --scale paper --workdir runs/replicate_paper     # FashionMNIST -> CIFAR10, GPU
    python experiments/replicate.py --scale smoke --workdir runs/tiny --outer-steps 2 --inner-steps 5 \\
        --train-width 4 --eval-width 8 --eval-steps 10 --eval-every 5 --seeds 2 --learning-rates 1e-2

Writes ``figure1_accuracy.png``, ``summary.md`` (tables and the command), ``summary.json``, ``results.json``
(curves), ``configs.json`` and one meta-training run per learned optimizer (checkpoints, metrics,
``best_meta_params/``) into ``--workdir``; ``experiments/generalization.py --from-run`` reuses the latter.
"""

from __future__ import annotations

import sys

from common import run_comparison

OPTIMIZERS = ("NG-GNN", "NG-T", "LSTM", "MLP")


def main(argv: list[str] | None = None) -> dict:
    """Runs the replication; ``argv`` as on the command line (``None``: ``sys.argv[1:]``)."""
    return run_comparison(
        "replicate.py", argv, OPTIMIZERS, "Figure 1: learned optimizers vs tuned baselines", "figure1_accuracy.png"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
