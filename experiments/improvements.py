"""Sbicego et al., experiment 2: RecurrentGNN (a per-parameter LSTM feeding the GNN) and GNN-variable (the GNN
meta-trained on inner lengths drawn from 0.75..2.5 K: 75..250 at K = 100) against the GNN (Figure 2).

    python experiments/improvements.py --scale smoke --workdir runs/improvements_smoke
    python experiments/improvements.py --scale smoke --workdir runs/replicate_smoke   # reuses the replication's GNN
    python experiments/improvements.py --scale paper --workdir runs/improvements_paper

Outputs as ``replicate.py``: ``docs/results/improvements_smoke.json``/``.md`` at smoke scale.
"""

from __future__ import annotations

import sys

from common import run_experiment

OPTIMIZERS = ("NG-GNN", "RecurrentGNN", "GNN-variable")


def main(argv: list[str] | None = None) -> dict:
    """Runs the study; ``argv`` as on the command line (``None``: ``sys.argv[1:]``). Returns its data."""
    return run_experiment(
        "improvements.py", argv, OPTIMIZERS, "Figure 2: RecurrentGNN and GNN-variable vs the GNN", "improvements"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
