"""The quickstart study (``l2o-jax quickstart``) as a page under ``docs/results/``.

    python -m experiments.quickstart --workdir runs/quickstart          # the quickstart preset (CPU, embedded data)
    python -m experiments.quickstart --workdir runs/q --scale tiny      # the same pipeline at its dry-run size

The study is exactly ``l2o_jax.study.preset('quickstart')``, run by the same pipeline as ``l2o-jax quickstart``
(``l2o_jax.study.run_study``), so a workdir made by the command line resumes here from its cached stages and the
other way round. The only difference is where the result goes: ``<out>/quickstart_<scale>.json`` with its page and
figure (default ``docs/results``), with the provenance every page records.
"""

from __future__ import annotations

from experiments import horizon
from l2o_jax import cli
from l2o_jax import study

STUDIES = {"smoke": study.quickstart_preset, "tiny": lambda: cli.dry_run(study.quickstart_preset())}


def main(argv=None) -> dict:
    return horizon.main(
        argv,
        studies=STUDIES,
        name="quickstart",
        title="The quickstart study: NG-GNN meta-trained on CPU, judged on a 2x wider CNN ({scale} scale)",
        description=__doc__.split("\n\n")[0],
    )


if __name__ == "__main__":
    main()
