"""Learned optimizers as optax transformations."""

from l2o_jax.optimizers.base import L2OState
from l2o_jax.optimizers.base import LearnedOptimizer
from l2o_jax.optimizers.base import MetaParams
from l2o_jax.optimizers.base import OutputConfig
from l2o_jax.optimizers.base import learned_transform
from l2o_jax.optimizers.graph import GraphL2O
from l2o_jax.optimizers.graph import RecurrentGraphL2O
from l2o_jax.optimizers.graph import TransformerL2O
from l2o_jax.optimizers.graph import graph_l2o
from l2o_jax.optimizers.graph import recurrent_graph_l2o
from l2o_jax.optimizers.graph import transformer_l2o
from l2o_jax.optimizers.li_malik import LiMalikL2O
from l2o_jax.optimizers.li_malik import li_malik_l2o
from l2o_jax.optimizers.per_parameter import LSTML2O
from l2o_jax.optimizers.per_parameter import MLPL2O
from l2o_jax.optimizers.per_parameter import lstm_l2o
from l2o_jax.optimizers.per_parameter import mlp_l2o

#: Every learned optimizer family by name (used to rebuild configs from checkpoints).
FAMILIES = {cls.__name__: cls for cls in (GraphL2O, TransformerL2O, RecurrentGraphL2O, LSTML2O, MLPL2O, LiMalikL2O)}

__all__ = [
    "FAMILIES",
    "GraphL2O",
    "L2OState",
    "LSTML2O",
    "LearnedOptimizer",
    "LiMalikL2O",
    "MLPL2O",
    "MetaParams",
    "OutputConfig",
    "RecurrentGraphL2O",
    "TransformerL2O",
    "graph_l2o",
    "learned_transform",
    "li_malik_l2o",
    "lstm_l2o",
    "mlp_l2o",
    "recurrent_graph_l2o",
    "transformer_l2o",
]
