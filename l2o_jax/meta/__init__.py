"""Meta-training: the one inner-training loop (``rollout``), inner unrolls, meta-gradient estimators, the outer
loop, sharding, model selection."""

from l2o_jax.meta.estimators import ESTIMATORS
from l2o_jax.meta.estimators import PES
from l2o_jax.meta.estimators import AntitheticES
from l2o_jax.meta.estimators import FullUnrollBPTT
from l2o_jax.meta.estimators import LogUniformHorizon
from l2o_jax.meta.estimators import TruncatedBPTT
from l2o_jax.meta.estimators import long_horizon_estimator
from l2o_jax.meta.runs import checkpoint_steps
from l2o_jax.meta.runs import load_checkpoint
from l2o_jax.meta.runs import run_learned_optimizer
from l2o_jax.meta.runs import select_best_checkpoint
from l2o_jax.meta.sharding import shard_tasks
from l2o_jax.meta.sharding import task_mesh
from l2o_jax.meta.trainer import MetaTrainConfig
from l2o_jax.meta.trainer import MetaTrainingDiverged
from l2o_jax.meta.trainer import MetaTrainResult
from l2o_jax.meta.trainer import meta_train
from l2o_jax.meta.trainer import outer_optimizer
from l2o_jax.meta.trainer import read_metrics
from l2o_jax.meta.unroll import InnerState
from l2o_jax.meta.unroll import Trace
from l2o_jax.meta.unroll import UnrollConfig
from l2o_jax.meta.unroll import fresh_unroll_loss
from l2o_jax.meta.unroll import init_inner_state
from l2o_jax.meta.unroll import init_state
from l2o_jax.meta.unroll import optax_rule
from l2o_jax.meta.unroll import rollout
from l2o_jax.meta.unroll import unroll

__all__ = [
    "ESTIMATORS",
    "PES",
    "AntitheticES",
    "FullUnrollBPTT",
    "InnerState",
    "Trace",
    "LogUniformHorizon",
    "MetaTrainConfig",
    "MetaTrainResult",
    "MetaTrainingDiverged",
    "TruncatedBPTT",
    "UnrollConfig",
    "checkpoint_steps",
    "fresh_unroll_loss",
    "init_inner_state",
    "init_state",
    "optax_rule",
    "rollout",
    "load_checkpoint",
    "long_horizon_estimator",
    "meta_train",
    "outer_optimizer",
    "read_metrics",
    "run_learned_optimizer",
    "select_best_checkpoint",
    "shard_tasks",
    "task_mesh",
    "unroll",
]
