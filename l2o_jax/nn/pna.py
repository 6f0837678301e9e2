"""Principal Neighbourhood Aggregation with edge updates over a layered neural graph.

References:
  Corso et al., "Principal Neighbourhood Aggregation for Graph Nets", NeurIPS 2020.
  Kofinas et al., "Graph Neural Networks for Learning Equivariant Representations
  of Neural Networks", ICLR 2024.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from l2o_jax.nn.mlp import MLP
from l2o_jax.nn.mlp import GatheredDense
from l2o_jax.nn.mlp import MatmulLayerNorm

_STD_EPS = 1e-5


def graph_masks(
    num_nodes: int,
    senders: jax.Array,
    receivers: jax.Array,
    edge_mask: jax.Array | None,
    node_mask: jax.Array | None,
) -> tuple[jax.Array, jax.Array]:
    """Returns boolean (edge_mask (E,), node_mask (N,)); an edge touching a padded node is padding."""
    if node_mask is None:
        node_mask = jnp.ones((num_nodes,), bool)
    if edge_mask is None:
        edge_mask = jnp.ones(senders.shape, bool)
    edge_mask = edge_mask & node_mask[senders] & node_mask[receivers]
    return edge_mask, node_mask


def check_width(nodes: jax.Array, edges: jax.Array, features: int) -> None:
    """Raises ValueError unless node and edge states are `features` wide (needed by the residuals)."""
    if nodes.shape[-1] != features or edges.shape[-1] != features:
        raise ValueError(
            f'node and edge states must have {features} features (the layer width), '
            f'got nodes {nodes.shape} and edges {edges.shape}; embed the inputs first.'
        )


def _segment_mean(messages, ids, num_nodes, degree):
    total = jax.ops.segment_sum(messages, ids, num_nodes)
    return total / jnp.maximum(degree, 1.0)[:, None]


def _segment_std(messages, ids, num_nodes, degree):
    mean = _segment_mean(messages, ids, num_nodes, degree)
    mean_sq = _segment_mean(messages**2, ids, num_nodes, degree)
    # eps keeps sqrt differentiable when a neighbourhood is constant.
    return jnp.sqrt(jax.nn.relu(mean_sq - mean**2) + _STD_EPS)


def _segment_max(messages, ids, num_nodes, degree):
    del degree
    return jax.ops.segment_max(messages, ids, num_nodes)


def _segment_min(messages, ids, num_nodes, degree):
    del degree
    return jax.ops.segment_min(messages, ids, num_nodes)


def _segment_sum(messages, ids, num_nodes, degree):
    del degree
    return jax.ops.segment_sum(messages, ids, num_nodes)


AGGREGATORS = {
    'mean': _segment_mean,
    'sum': _segment_sum,
    'min': _segment_min,
    'max': _segment_max,
    'std': _segment_std,
}
SCALERS = ('identity', 'amplification', 'attenuation')


def aggregate(
    messages: jax.Array,
    segment_ids: jax.Array,
    edge_mask: jax.Array,
    node_mask: jax.Array,
    aggregators: Sequence[str],
    scalers: Sequence[str],
    delta: float | None = None,
) -> jax.Array:
    """PNA aggregation of edge messages at their target nodes.

    Args:
      messages: (E, D) one message per edge.
      segment_ids: (E,) int target node of each message.
      edge_mask: (E,) bool; False messages are ignored.
      node_mask: (N,) bool; padded nodes do not enter the degree normaliser.
      aggregators: names from `AGGREGATORS`.
      scalers: names from `SCALERS`.
      delta: the degree normaliser: a fixed number (PNA's mean log(d + 1) over its training graphs), or None for
        the mean over this graph's nodes with messages.

    Returns:
      (N, len(scalers) * len(aggregators) * D) aggregates; exactly 0 at nodes
      without messages.
    """
    num_nodes = node_mask.shape[0]
    # Out-of-range ids are dropped by the segment ops: that is how padding is skipped.
    ids = jnp.where(edge_mask, segment_ids, num_nodes)
    degree = jax.ops.segment_sum(jnp.ones(ids.shape, messages.dtype), ids, num_nodes)
    has_messages = degree > 0
    per_aggregator = [AGGREGATORS[name](messages, ids, num_nodes, degree) for name in aggregators]
    aggregated = jnp.where(has_messages[:, None], jnp.concatenate(per_aggregator, -1), 0.0)

    log_degree = jnp.log1p(degree)
    counted = has_messages & node_mask
    if delta is None:
        delta = jnp.sum(jnp.where(counted, log_degree, 0.0)) / jnp.maximum(jnp.sum(counted), 1)
        delta = jnp.where(delta > 0, delta, 1.0)
    scales = {
        'identity': jnp.ones_like(degree),
        'amplification': log_degree / delta,
        'attenuation': jnp.where(has_messages, delta / jnp.where(has_messages, log_degree, 1.0), 0.0),
    }
    return jnp.concatenate([aggregated * scales[name][:, None] for name in scalers], -1)


def _check_names(aggregators: Sequence[str], scalers: Sequence[str]) -> None:
    unknown = [a for a in aggregators if a not in AGGREGATORS] + [s for s in scalers if s not in SCALERS]
    if unknown:
        raise ValueError(f'unknown aggregators/scalers {unknown}; choose from {sorted(AGGREGATORS)} and {SCALERS}')


class PNALayer(nn.Module):
    """One PNA message-passing layer with FiLM-modulated edge updates on a directed graph.

    Edges first update from their endpoints (FiLM: the edge state scales and
    shifts the message MLP). Nodes then aggregate messages separately from
    incoming edges (forward, from the sender side) and outgoing edges (backward,
    from the receiver side) with the PNA aggregators and degree scalers; the
    degree normaliser delta is, by default, the mean log(d + 1) over nodes with
    neighbours in the current graph, so the layer applies to any architecture
    and its scalers are unchanged when every layer widens by the same factor;
    a fixed ``delta`` (PNA's: from the training graphs) makes them grow with
    the degree instead. Nodes are never told their index, so the layer is
    equivariant to node permutations.

    Attributes:
      features: width D of node and edge states (inputs and outputs).
      aggregators: any of 'mean', 'sum', 'min', 'max', 'std'.
      scalers: any of 'identity', 'amplification', 'attenuation'.
      delta: a fixed degree normaliser, or None (per graph, above).

    Returns (from `__call__`):
      Updated (nodes (N, D), edges (E, D)); padded nodes and edges are zero.

    Example:
      >>> layer = PNALayer(16)
      >>> senders, receivers = jnp.array([0, 1]), jnp.array([2, 2])
      >>> nodes, edges = jnp.ones((3, 16)), jnp.ones((2, 16))
      >>> params = layer.init(jax.random.key(0), nodes, edges, senders, receivers)
      >>> nodes, edges = layer.apply(params, nodes, edges, senders, receivers)
    """

    features: int
    aggregators: Sequence[str] = ('mean', 'min', 'max', 'std')
    scalers: Sequence[str] = ('identity', 'amplification', 'attenuation')
    delta: float | None = None

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
        _check_names(self.aggregators, self.scalers)
        edge_mask, node_mask = graph_masks(nodes.shape[0], senders, receivers, edge_mask, node_mask)
        width = self.features

        message = MLP((width, width), name='edge_mlp')(edges, (nodes, senders), (nodes, receivers))
        gamma, beta = GatheredDense(2 * width, chunks=2, name='edge_film')(edges)
        edges = MatmulLayerNorm(name='edge_norm')(edges + gamma * message + beta)
        edges = jnp.where(edge_mask[:, None], edges, 0.0)

        forward = GatheredDense(width, name='forward_message')(edges, (nodes, senders))
        backward = GatheredDense(width, name='backward_message')(edges, (nodes, receivers))
        pooled = [
            aggregate(forward, receivers, edge_mask, node_mask, self.aggregators, self.scalers, self.delta),
            aggregate(backward, senders, edge_mask, node_mask, self.aggregators, self.scalers, self.delta),
        ]
        update = MLP((width, width), name='node_mlp')(jnp.concatenate([nodes, *pooled], -1))
        nodes = nn.LayerNorm(name='node_norm')(nodes + update)
        return jnp.where(node_mask[:, None], nodes, 0.0), edges


class PNA(nn.Module):
    """A stack of `num_layers` `PNALayer`s with the same call signature as one layer.

    Attributes:
      features: width D of node and edge states.
      num_layers: number of layers.
      aggregators: passed to every `PNALayer`.
      scalers: passed to every `PNALayer`.
      delta: passed to every `PNALayer` (None: each graph's own degree normaliser).

    Example:
      >>> gnn = PNA(features=16, num_layers=3)
      >>> params = gnn.init(jax.random.key(0), nodes, edges, senders, receivers)
      >>> nodes, edges = gnn.apply(params, nodes, edges, senders, receivers)
    """

    features: int
    num_layers: int
    aggregators: Sequence[str] = ('mean', 'min', 'max', 'std')
    scalers: Sequence[str] = ('identity', 'amplification', 'attenuation')
    delta: float | None = None

    @nn.compact
    def __call__(self, nodes, edges, senders, receivers, edge_mask=None, node_mask=None):
        """Same arguments and returns as `PNALayer.__call__`."""
        for _ in range(self.num_layers):
            nodes, edges = PNALayer(self.features, self.aggregators, self.scalers, self.delta)(
                nodes, edges, senders, receivers, edge_mask, node_mask
            )
        return nodes, edges
