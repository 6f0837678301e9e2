"""Fully-amortized single-shot optimization (Kuipers et al.): model zoos, ScaleGMN/GMN metanetworks, SGD baselines.

Example:
  >>> from l2o_jax import amortized
  >>> zoo = amortized.build_zoo(dataset='digits', model='mlp', activation='tanh', members=2000)
  >>> meta_params, _ = amortized.train_metanetwork(amortized.ScaleGMN(activation='tanh'), zoo)
  >>> new_params = amortized.finetune(meta_params, zoo.split('test').member(0))
"""

from l2o_jax.amortized.layers import ScaleGMNNetwork
from l2o_jax.amortized.objective import SPARSITY_THRESHOLD
from l2o_jax.amortized.objective import evaluate_splits
from l2o_jax.amortized.objective import evaluate_stack
from l2o_jax.amortized.objective import l1_norm
from l2o_jax.amortized.objective import objective
from l2o_jax.amortized.objective import run_optimizer
from l2o_jax.amortized.objective import sparsity
from l2o_jax.amortized.scalegmn import ACTIVATION_SYMMETRY
from l2o_jax.amortized.scalegmn import ScaleGMN
from l2o_jax.amortized.scalegmn import finetune
from l2o_jax.amortized.train import BASELINE_OPTIMIZERS
from l2o_jax.amortized.train import SGD_EPOCHS
from l2o_jax.amortized.train import TrainConfig
from l2o_jax.amortized.train import baseline_optimizer
from l2o_jax.amortized.train import meta_objective
from l2o_jax.amortized.train import same_time_baseline
from l2o_jax.amortized.train import seconds_per_step
from l2o_jax.amortized.train import sgd_baseline
from l2o_jax.amortized.train import steps_per_epoch
from l2o_jax.amortized.train import steps_to_match
from l2o_jax.amortized.train import timed_finetune
from l2o_jax.amortized.train import train_metanetwork
from l2o_jax.amortized.train import tune_learning_rate
from l2o_jax.amortized.zoo import Zoo
from l2o_jax.amortized.zoo import ZooConfig
from l2o_jax.amortized.zoo import build_zoo
from l2o_jax.amortized.zoo import load_zoo_dataset

__all__ = [
    "ACTIVATION_SYMMETRY",
    "BASELINE_OPTIMIZERS",
    "SGD_EPOCHS",
    "SPARSITY_THRESHOLD",
    "ScaleGMN",
    "ScaleGMNNetwork",
    "TrainConfig",
    "Zoo",
    "ZooConfig",
    "baseline_optimizer",
    "build_zoo",
    "evaluate_splits",
    "evaluate_stack",
    "finetune",
    "l1_norm",
    "load_zoo_dataset",
    "meta_objective",
    "objective",
    "run_optimizer",
    "same_time_baseline",
    "seconds_per_step",
    "sgd_baseline",
    "sparsity",
    "steps_per_epoch",
    "steps_to_match",
    "timed_finetune",
    "train_metanetwork",
    "tune_learning_rate",
]
