"""The quickstart study (``l2o-jax quickstart``) as a page under ``docs/results/``.

    python -m experiments.quickstart --workdir runs/quickstart          # the quickstart preset (CPU, embedded data)
    python -m experiments.quickstart --workdir runs/q --scale tiny      # the same pipeline at its dry-run size
    python -m experiments.quickstart --workdir runs/q4 --scale 4x-meta-training   # 600 outer steps, and the start

The study is exactly ``l2o_jax.study.preset('quickstart')``, run by the same pipeline as ``l2o-jax quickstart``
(``l2o_jax.study.run_study``), so a workdir made by the command line resumes here from its cached stages and the
other way round. The only difference is where the result goes: ``<out>/quickstart_<scale>.json`` with its page and
figure (default ``docs/results``), with the provenance every page records.
"""

from __future__ import annotations

import dataclasses

from experiments import horizon
from l2o_jax import cli
from l2o_jax import study


def longer_meta_training() -> study.StudyConfig:
    """The quickstart with 4x its meta-training (600 outer steps, a checkpoint every 150), beside its own
    not-meta-trained start judged alike: does more meta-training add to the start?"""
    quickstart = study.quickstart_preset()
    meta = dataclasses.replace(quickstart.meta, outer_steps=600, checkpoint_every=150)
    learned = {"NG-GNN": meta, "NG-GNN, not meta-trained": dataclasses.replace(meta, outer_steps=0)}
    return dataclasses.replace(quickstart, meta=meta, learned=learned)


STUDIES = {
    "smoke": study.quickstart_preset,
    "4x-meta-training": longer_meta_training,
    "tiny": lambda: cli.dry_run(study.quickstart_preset()),
}


def main(argv=None) -> dict:
    return horizon.main(
        argv,
        studies=STUDIES,
        name="quickstart",
        title="The quickstart study ({scale}): NG-GNN meta-trained on CPU, judged on a 2x wider CNN",
        description=__doc__.split("\n\n")[0],
    )


if __name__ == "__main__":
    main()
