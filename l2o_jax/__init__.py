"""l2o_jax: learned optimizers that see the network they train as a graph.

The factories here are those of ``l2o_jax.optimizers`` that also take the name of a pretrained entry
(``l2o_jax.pretrained.available()``) in place of meta-parameters.

Example:
  >>> import jax, optax, l2o_jax
  >>> meta_params = l2o_jax.GraphL2O(hidden=32, layers=4).init(jax.random.key(0))
  >>> tx = optax.chain(l2o_jax.graph_l2o(meta_params))
  >>> tx = optax.chain(l2o_jax.graph_l2o("ng-gnn-digits", total_steps=5000))
"""

import functools

from l2o_jax import amortized
from l2o_jax import backward
from l2o_jax import io
from l2o_jax import optimizers
from l2o_jax import pretrained
from l2o_jax.features import FeatureConfig
from l2o_jax.features import ProbeConfig
from l2o_jax.io import load_meta_params
from l2o_jax.io import save_meta_params
from l2o_jax.optimizers import LSTML2O
from l2o_jax.optimizers import MLPL2O
from l2o_jax.optimizers import RUN_LENGTH_OUTPUT
from l2o_jax.optimizers import GraphL2O
from l2o_jax.optimizers import LiMalikL2O
from l2o_jax.optimizers import MetaParams
from l2o_jax.optimizers import OutputConfig
from l2o_jax.optimizers import RecurrentGraphL2O
from l2o_jax.optimizers import ScaleGraphL2O
from l2o_jax.optimizers import TransformerL2O


def _by_name(factory):
    """``factory``, also taking the name of a pretrained entry for its meta-parameters."""

    @functools.wraps(factory)
    def factory_by_name(meta_params, *args, **kwargs):
        return factory(pretrained.resolve(meta_params), *args, **kwargs)

    return factory_by_name


graph_l2o = _by_name(optimizers.graph_l2o)
transformer_l2o = _by_name(optimizers.transformer_l2o)
recurrent_graph_l2o = _by_name(optimizers.recurrent_graph_l2o)
mlp_l2o = _by_name(optimizers.mlp_l2o)
lstm_l2o = _by_name(optimizers.lstm_l2o)
li_malik_l2o = _by_name(optimizers.li_malik_l2o)
scale_graph_l2o = _by_name(optimizers.scale_graph_l2o)

__version__ = "0.1.0"

__all__ = [
    "amortized",
    "backward",
    "FeatureConfig",
    "GraphL2O",
    "LSTML2O",
    "LiMalikL2O",
    "MLPL2O",
    "MetaParams",
    "OutputConfig",
    "RUN_LENGTH_OUTPUT",
    "ProbeConfig",
    "RecurrentGraphL2O",
    "ScaleGraphL2O",
    "TransformerL2O",
    "graph_l2o",
    "io",
    "li_malik_l2o",
    "load_meta_params",
    "lstm_l2o",
    "mlp_l2o",
    "optimizers",
    "pretrained",
    "recurrent_graph_l2o",
    "save_meta_params",
    "scale_graph_l2o",
    "transformer_l2o",
]
