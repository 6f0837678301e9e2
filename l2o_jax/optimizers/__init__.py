"""Learned optimizers as optax transformations: the core (``MetaParams``, the learned-optimizer protocol, the
registry of families and their config encoding) and one module per family.

These factories take ``MetaParams``; the top-level ones (``l2o_jax.graph_l2o``, ...) also take the name of a
pretrained entry.
"""

from l2o_jax.optimizers.base import RUN_LENGTH_OUTPUT
from l2o_jax.optimizers.base import L2OState
from l2o_jax.optimizers.base import LearnedOptimizer
from l2o_jax.optimizers.base import MetaParams
from l2o_jax.optimizers.base import OutputConfig
from l2o_jax.optimizers.base import cap_relative_updates
from l2o_jax.optimizers.base import check_meta_params
from l2o_jax.optimizers.base import learned_transform
from l2o_jax.optimizers.base import relative_update_cap
from l2o_jax.optimizers.base import tiny_mlp_params
from l2o_jax.optimizers.graph import GraphL2O
from l2o_jax.optimizers.graph import RecurrentGraphL2O
from l2o_jax.optimizers.graph import TransformerL2O
from l2o_jax.optimizers.graph import degree_normaliser
from l2o_jax.optimizers.graph import graph_l2o
from l2o_jax.optimizers.graph import recurrent_graph_l2o
from l2o_jax.optimizers.graph import transformer_l2o
from l2o_jax.optimizers.li_malik import LiMalikL2O
from l2o_jax.optimizers.li_malik import li_malik_l2o
from l2o_jax.optimizers.per_parameter import LSTML2O
from l2o_jax.optimizers.per_parameter import MLPL2O
from l2o_jax.optimizers.per_parameter import lstm_l2o
from l2o_jax.optimizers.per_parameter import mlp_l2o
from l2o_jax.optimizers.registry import abstract_meta_params
from l2o_jax.optimizers.registry import config_from_dict
from l2o_jax.optimizers.registry import config_to_dict
from l2o_jax.optimizers.registry import families
from l2o_jax.optimizers.registry import override
from l2o_jax.optimizers.registry import register_config
from l2o_jax.optimizers.registry import register_family
from l2o_jax.optimizers.scale_graph import ScaleGraphL2O
from l2o_jax.optimizers.scale_graph import scale_graph_l2o
from l2o_jax.optimizers.schedules import warmup_cosine

__all__ = [
    "GraphL2O",
    "L2OState",
    "LSTML2O",
    "LearnedOptimizer",
    "LiMalikL2O",
    "MLPL2O",
    "MetaParams",
    "OutputConfig",
    "RUN_LENGTH_OUTPUT",
    "cap_relative_updates",
    "relative_update_cap",
    "degree_normaliser",
    "RecurrentGraphL2O",
    "ScaleGraphL2O",
    "TransformerL2O",
    "abstract_meta_params",
    "check_meta_params",
    "config_from_dict",
    "config_to_dict",
    "families",
    "override",
    "graph_l2o",
    "learned_transform",
    "li_malik_l2o",
    "lstm_l2o",
    "mlp_l2o",
    "recurrent_graph_l2o",
    "register_config",
    "register_family",
    "scale_graph_l2o",
    "tiny_mlp_params",
    "transformer_l2o",
    "warmup_cosine",
]
