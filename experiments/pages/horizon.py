"""Learned optimizers over whole training runs, against baselines tuned for each horizon: the page of a study run
by ``l2o_jax.study.run_study`` (the CLI's ``results.md`` is the same markdown)."""

from __future__ import annotations

from experiments.pages import renderer
from l2o_jax.study import markdown

renderer("horizon")(markdown)
