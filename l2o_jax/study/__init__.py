"""The one study pipeline, as data and one function: meta-train learned optimizers over several meta-seeds, pick
each run's checkpoint by a rule fixed in advance, and judge them on held-out tasks against baselines tuned for
every reported horizon, with bootstrap intervals, speed-ups and log-step curves.

``l2o-jax quickstart`` runs the ``quickstart`` preset; ``l2o-jax meta-train --config paper|FILE`` any other;
``experiments/horizon.py`` and the replication scripts are configurations of it.

The package: ``config`` (what a study is), ``pipeline`` (its cached stages and ``run_study``), ``report`` (the
markdown and figures).
"""

from l2o_jax.study.config import PRESETS
from l2o_jax.study.config import HeldOutTask
from l2o_jax.study.config import StudyConfig
from l2o_jax.study.config import apply_settings
from l2o_jax.study.config import load_config
from l2o_jax.study.config import paper_preset
from l2o_jax.study.config import preset
from l2o_jax.study.config import quickstart_preset
from l2o_jax.study.config import selection_rule
from l2o_jax.study.pipeline import compare_curves
from l2o_jax.study.pipeline import curve_at
from l2o_jax.study.pipeline import evaluate_task
from l2o_jax.study.pipeline import protocol
from l2o_jax.study.pipeline import run_study
from l2o_jax.study.pipeline import selected_path
from l2o_jax.study.pipeline import slug
from l2o_jax.study.pipeline import study_stage_seconds
from l2o_jax.study.pipeline import task_result
from l2o_jax.study.pipeline import train_and_select
from l2o_jax.study.pipeline import tune_baselines
from l2o_jax.study.report import markdown

__all__ = [
    "PRESETS",
    "HeldOutTask",
    "StudyConfig",
    "apply_settings",
    "compare_curves",
    "curve_at",
    "evaluate_task",
    "load_config",
    "markdown",
    "paper_preset",
    "preset",
    "protocol",
    "quickstart_preset",
    "run_study",
    "selected_path",
    "selection_rule",
    "slug",
    "task_result",
    "study_stage_seconds",
    "train_and_select",
    "tune_baselines",
]
