"""l2o_jax: learned optimizers that see the network they train as a graph.

Example:
  >>> import jax, optax, l2o_jax
  >>> meta_params = l2o_jax.GraphL2O(hidden=32, layers=4).init(jax.random.key(0))
  >>> tx = optax.chain(l2o_jax.graph_l2o(meta_params))
"""

from l2o_jax import backward
from l2o_jax import pretrained
from l2o_jax.checkpoints import load_meta_params
from l2o_jax.checkpoints import save_meta_params
from l2o_jax.features import FeatureConfig
from l2o_jax.features import ProbeConfig
from l2o_jax.optimizers import LSTML2O
from l2o_jax.optimizers import MLPL2O
from l2o_jax.optimizers import GraphL2O
from l2o_jax.optimizers import LiMalikL2O
from l2o_jax.optimizers import MetaParams
from l2o_jax.optimizers import OutputConfig
from l2o_jax.optimizers import RecurrentGraphL2O
from l2o_jax.optimizers import TransformerL2O
from l2o_jax.optimizers import graph_l2o
from l2o_jax.optimizers import li_malik_l2o
from l2o_jax.optimizers import lstm_l2o
from l2o_jax.optimizers import mlp_l2o
from l2o_jax.optimizers import recurrent_graph_l2o
from l2o_jax.optimizers import transformer_l2o

__version__ = "0.1.0"

__all__ = [
    "backward",
    "FeatureConfig",
    "GraphL2O",
    "LSTML2O",
    "LiMalikL2O",
    "MLPL2O",
    "MetaParams",
    "OutputConfig",
    "ProbeConfig",
    "RecurrentGraphL2O",
    "TransformerL2O",
    "graph_l2o",
    "li_malik_l2o",
    "load_meta_params",
    "lstm_l2o",
    "mlp_l2o",
    "pretrained",
    "recurrent_graph_l2o",
    "save_meta_params",
    "transformer_l2o",
]
