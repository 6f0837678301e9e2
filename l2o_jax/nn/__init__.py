"""Flax Linen meta-networks: graph networks over neural graphs and per-parameter baselines.

Every graph layer takes plain arrays `(nodes (N, D), edges (E, D), senders (E,),
receivers (E,), edge_mask=None, node_mask=None)` and returns `(nodes, edges)`.
"""

from l2o_jax.nn.mlp import MLP
from l2o_jax.nn.pna import PNA
from l2o_jax.nn.pna import PNALayer
from l2o_jax.nn.recurrent import CoordinateLSTM
from l2o_jax.nn.transformer import RelationalTransformer
from l2o_jax.nn.transformer import RelationalTransformerLayer

__all__ = [
    'MLP',
    'PNALayer',
    'PNA',
    'RelationalTransformerLayer',
    'RelationalTransformer',
    'CoordinateLSTM',
]
