"""The whole pipeline of Sbicego et al. as data and one function: meta-train, select the best checkpoint on
validation, evaluate against tuned baselines on a held-out (wider) network, and write tables and figures.

``l2o-jax quickstart`` runs the ``quickstart`` preset; ``l2o-jax meta-train --config paper`` the paper's.

The package: ``config`` (what a study is), ``pipeline`` (its stages), ``report`` (the workdir's tables and figure).
"""

from l2o_jax.study.config import PRESETS
from l2o_jax.study.config import StudyConfig
from l2o_jax.study.config import apply_settings
from l2o_jax.study.config import load_config
from l2o_jax.study.config import paper_preset
from l2o_jax.study.config import preset
from l2o_jax.study.config import quickstart_preset
from l2o_jax.study.config import selection_rule
from l2o_jax.study.pipeline import evaluate_optimizers
from l2o_jax.study.pipeline import run_study
from l2o_jax.study.pipeline import train_and_select
from l2o_jax.study.pipeline import tune_baselines

__all__ = [
    "PRESETS",
    "StudyConfig",
    "apply_settings",
    "evaluate_optimizers",
    "load_config",
    "paper_preset",
    "preset",
    "quickstart_preset",
    "run_study",
    "selection_rule",
    "train_and_select",
    "tune_baselines",
]
