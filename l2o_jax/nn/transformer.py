"""Relational transformer: dense self-attention over all neurons, with edge features in it.

References:
  Diao & Loynd, "Relational Attention: Generalizing Transformers for
  Graph-Structured Tasks", ICLR 2023 (arXiv:2210.05062).
  Kofinas et al., "Graph Neural Networks for Learning Equivariant Representations
  of Neural Networks", ICLR 2024.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from l2o_jax.nn.mlp import MLP
from l2o_jax.nn.mlp import MatmulLayerNorm
from l2o_jax.nn.pna import check_width
from l2o_jax.nn.pna import graph_masks


def _heads(x: jax.Array, num_heads: int) -> jax.Array:
    """(M, H * d) -> (M, H, d)."""
    return x.reshape(x.shape[0], num_heads, -1)


class RelationalTransformerLayer(nn.Module):
    """Relational self-attention over every pair of neurons, then node and edge updates.

    Node i attends to every node j: logit_ij = q_i . k_j / sqrt(d), plus, where an
    edge joins i and j, q_i . k(e) / sqrt(d) with separate key projections k_in
    (edge j -> i, seen by its receiver) and k_out (edge i -> j, seen by its
    sender); the value of such a pair is v_j + v_in(e) (or v_out(e)). The dense
    part is a (H, N, N) logit matrix; the edge terms are gathered per edge,
    scattered into it and summed back with segment sums, so no (N, N, D) tensor is
    built. Cost: O(H N^2) memory and O(N^2 D) time in the number of neurons N
    (plus O(E D) for edges), which is what limits this model to small optimizees.

    Attributes:
      features: width D of node and edge states (inputs and outputs); divisible by num_heads.
      num_heads: number of attention heads.

    Returns (from `__call__`):
      Updated (nodes (N, D), edges (E, D)); padded nodes and edges are zero.

    Example:
      >>> layer = RelationalTransformerLayer(16, num_heads=4)
      >>> senders, receivers = jnp.array([0, 1]), jnp.array([2, 2])
      >>> nodes, edges = jnp.ones((3, 16)), jnp.ones((2, 16))
      >>> params = layer.init(jax.random.key(0), nodes, edges, senders, receivers)
      >>> nodes, edges = layer.apply(params, nodes, edges, senders, receivers)
    """

    features: int
    num_heads: int = 4

    @nn.compact
    def __call__(
        self,
        nodes: jax.Array,
        edges: jax.Array,
        senders: jax.Array,
        receivers: jax.Array,
        edge_mask: jax.Array | None = None,
        node_mask: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Args: nodes (N, D), edges (E, D), senders/receivers (E,) int, optional bool masks (E,), (N,)."""
        check_width(nodes, edges, self.features)
        if self.features % self.num_heads:
            raise ValueError(f'features={self.features} is not divisible by num_heads={self.num_heads}')
        edge_mask, node_mask = graph_masks(nodes.shape[0], senders, receivers, edge_mask, node_mask)
        num_nodes, width, heads = nodes.shape[0], self.features, self.num_heads
        project = lambda name, x: _heads(nn.Dense(width, name=name)(x), heads)
        query, key, value = (project(name, nodes) for name in ('query', 'key', 'value'))
        key_in, key_out = project('edge_key_in', edges), project('edge_key_out', edges)
        value_in, value_out = project('edge_value_in', edges), project('edge_value_out', edges)
        scale = (width // heads) ** -0.5
        valid = edge_mask.astype(nodes.dtype)[:, None]

        logits = jnp.einsum('ihd,jhd->hij', query, key) * scale
        bias_in = jnp.einsum('ehd,ehd->eh', query[receivers], key_in) * scale * valid
        bias_out = jnp.einsum('ehd,ehd->eh', query[senders], key_out) * scale * valid
        logits = logits.at[:, receivers, senders].add(bias_in.T)
        logits = logits.at[:, senders, receivers].add(bias_out.T)
        # A finite floor, not -inf: a fully padded row then stays NaN-free.
        logits = jnp.where(node_mask[None, None, :], logits, jnp.finfo(logits.dtype).min)
        weights = jax.nn.softmax(logits, axis=-1)

        attended = jnp.einsum('hij,jhd->ihd', weights, value)
        weight_in = weights[:, receivers, senders].T * valid
        weight_out = weights[:, senders, receivers].T * valid
        attended += jax.ops.segment_sum(weight_in[..., None] * value_in, receivers, num_nodes)
        attended += jax.ops.segment_sum(weight_out[..., None] * value_out, senders, num_nodes)
        attended = nn.Dense(width, name='attention_out')(attended.reshape(num_nodes, width))

        nodes = nn.LayerNorm(name='attention_norm')(nodes + attended)
        nodes = nn.LayerNorm(name='node_norm')(nodes + MLP((width, width), name='node_mlp')(nodes))
        nodes = jnp.where(node_mask[:, None], nodes, 0.0)

        update = MLP((width, width), name='edge_mlp')(edges, (nodes, senders), (nodes, receivers))
        edges = MatmulLayerNorm(name='edge_norm')(edges + update)
        return nodes, jnp.where(edge_mask[:, None], edges, 0.0)


class RelationalTransformer(nn.Module):
    """A stack of `num_layers` `RelationalTransformerLayer`s with a single layer's call signature.

    Attributes:
      features: width D of node and edge states.
      num_layers: number of layers.
      num_heads: attention heads per layer.

    Example:
      >>> rt = RelationalTransformer(features=16, num_layers=2, num_heads=4)
      >>> params = rt.init(jax.random.key(0), nodes, edges, senders, receivers)
      >>> nodes, edges = rt.apply(params, nodes, edges, senders, receivers)
    """

    features: int
    num_layers: int
    num_heads: int = 4

    @nn.compact
    def __call__(self, nodes, edges, senders, receivers, edge_mask=None, node_mask=None):
        """Same arguments and returns as `RelationalTransformerLayer.__call__`."""
        for _ in range(self.num_layers):
            nodes, edges = RelationalTransformerLayer(self.features, self.num_heads)(
                nodes, edges, senders, receivers, edge_mask, node_mask
            )
        return nodes, edges
