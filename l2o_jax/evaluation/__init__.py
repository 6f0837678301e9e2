"""Evaluation over seeds, tuned baselines, bootstrap comparisons, tables and plots."""

from l2o_jax.evaluation.evaluate import BASELINES
from l2o_jax.evaluation.evaluate import FINE_LEARNING_RATES
from l2o_jax.evaluation.evaluate import FINE_WEIGHT_DECAYS
from l2o_jax.evaluation.evaluate import KOFINAS_LEARNING_RATES
from l2o_jax.evaluation.evaluate import KOFINAS_WEIGHT_DECAYS
from l2o_jax.evaluation.evaluate import MIN_VALIDATION_EXAMPLES
from l2o_jax.evaluation.evaluate import PAPER_LEARNING_RATES
from l2o_jax.evaluation.evaluate import PAPER_WEIGHT_DECAYS
from l2o_jax.evaluation.evaluate import EvalResult
from l2o_jax.evaluation.evaluate import TuningResult
from l2o_jax.evaluation.evaluate import baseline
from l2o_jax.evaluation.evaluate import evaluate
from l2o_jax.evaluation.evaluate import results_table
from l2o_jax.evaluation.evaluate import save_results
from l2o_jax.evaluation.evaluate import training_run
from l2o_jax.evaluation.evaluate import tune_baseline
from l2o_jax.evaluation.plots import plot_advantage
from l2o_jax.evaluation.plots import plot_curves
from l2o_jax.evaluation.stats import Comparison
from l2o_jax.evaluation.stats import Speedup
from l2o_jax.evaluation.stats import compare
from l2o_jax.evaluation.stats import speedup

__all__ = [
    "BASELINES",
    "Comparison",
    "FINE_LEARNING_RATES",
    "FINE_WEIGHT_DECAYS",
    "KOFINAS_LEARNING_RATES",
    "KOFINAS_WEIGHT_DECAYS",
    "MIN_VALIDATION_EXAMPLES",
    "PAPER_LEARNING_RATES",
    "PAPER_WEIGHT_DECAYS",
    "Speedup",
    "EvalResult",
    "TuningResult",
    "baseline",
    "compare",
    "evaluate",
    "plot_advantage",
    "plot_curves",
    "results_table",
    "save_results",
    "speedup",
    "training_run",
    "tune_baseline",
]
