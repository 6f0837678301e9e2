"""The layers of ScaleGMN (see ``l2o_jax.amortized.scalegmn`` for the symmetries they keep): the static
structure of a neural graph they read, per-neuron scales, and the invariant, equivariant and product maps
every update is built from.
"""

from __future__ import annotations

from typing import NamedTuple
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from l2o_jax.graphs import ROLE_HIDDEN
from l2o_jax.graphs import ROLE_INPUT
from l2o_jax.graphs import ROLE_OUTPUT
from l2o_jax.graphs import GraphSpec
from l2o_jax.nn import MLP

# Added to squared norms before a square root or a division: finite gradients at 0, negligible otherwise.
_EPS = 1e-12
# Inside ``inverse``: keeps h⁻¹ bounded for features near zero.
_INVERSE_EPS = 1e-6


class GraphStructure(NamedTuple):
    """The static (numpy) structure of a neural graph that ScaleGMN reads; see ``graph_structure``."""

    senders: np.ndarray
    receivers: np.ndarray
    in_degree: np.ndarray
    out_degree: np.ndarray
    node_role: np.ndarray
    node_layer: np.ndarray
    edge_layer: np.ndarray
    node_token: np.ndarray
    node_context: np.ndarray
    edge_context: np.ndarray
    kernel_mask: np.ndarray


def graph_structure(spec: GraphSpec, positional: bool = True) -> GraphStructure:
    """Indices, degrees and permutation- and scale-invariant descriptors (roles, layer kinds) of a graph.

    ``node_token`` indexes the node embedding: with ``positional``, input neuron ``k`` is ``k``, output
    neuron ``k`` is ``inputs + k`` and every hidden neuron shares ``inputs + outputs``; otherwise the role.
    """
    n_node = spec.n_node
    inputs, outputs = spec.widths[0], spec.widths[-1]
    token = np.where(
        spec.node_role == ROLE_INPUT,
        spec.node_position,
        np.where(spec.node_role == ROLE_OUTPUT, inputs + spec.node_position, inputs + outputs),
    )
    role = np.eye(3, dtype=np.float32)
    edge_context = np.concatenate(
        [
            np.eye(2, dtype=np.float32)[spec.edge_kind],
            role[spec.node_role[spec.senders]],
            role[spec.node_role[spec.receivers]],
        ],
        axis=1,
    )
    degree = lambda index: np.maximum(np.bincount(index, minlength=n_node), 1).astype(np.float32)[:, None]
    return GraphStructure(
        senders=spec.senders,
        receivers=spec.receivers,
        in_degree=degree(spec.receivers),
        out_degree=degree(spec.senders),
        node_role=spec.node_role,
        node_layer=spec.node_layer,
        edge_layer=spec.edge_layer,
        node_token=(token if positional else spec.node_role).astype(np.int32),
        node_context=role[spec.node_role],
        edge_context=edge_context,
        kernel_mask=spec.edge_kernel_mask.astype(np.float32),
    )


def neuron_scales(edges: jax.Array, nodes: jax.Array, graph: GraphStructure) -> jax.Array:
    """Per-neuron scales ``r`` that rescale exactly like the neurons (``r_i -> q_i r_i`` for ``q_i > 0``).

    ``r_i = sqrt(b_i² + Σ_j ‖w_ji‖² r_j²)`` for hidden neurons, layer by layer; 1 for inputs and outputs.
    Dividing by them (``b_i / r_i``, ``w_ji r_j / r_i``) gives the scale-normalised network, which
    positive rescalings of hidden neurons leave unchanged.

    Returns:
      ``(n_node,)`` scales.
    """
    r = jnp.ones_like(nodes)
    squared = jnp.sum(edges * edges, axis=-1)
    for layer in range(1, int(graph.node_layer.max())):
        incoming = jnp.where(graph.edge_layer == layer, squared * r[graph.senders] ** 2, 0.0)
        total = nodes**2 + jax.ops.segment_sum(incoming, graph.receivers, nodes.shape[0])
        r = jnp.where(graph.node_layer == layer, jnp.sqrt(total + _EPS), r)
    return r


def edge_ratio(r: jax.Array, graph: GraphStructure) -> jax.Array:
    """``r_receiver / r_sender`` per edge, shaped to broadcast over kernel cells."""
    return (r[graph.receivers] / r[graph.senders])[:, None]


def _dense(features: int, group: str, **kwargs) -> nn.Dense:
    """A Dense layer that commutes with scalings: bias-free unless the symmetry is broken."""
    return nn.Dense(features, use_bias=group == 'none', **kwargs)


def squash(x: jax.Array, group: str) -> jax.Array:
    """``x / sqrt(1 + mean(x²))``: bounds features, equivariant to sign flips (identity for ``'scale'``)."""
    if group == 'scale':
        return x
    return x * jax.lax.rsqrt(1.0 + jnp.mean(x * x, axis=-1, keepdims=True))


def inverse(h: jax.Array, group: str) -> jax.Array:
    """A vector that scales like ``1/q`` when ``h`` scales like ``q``.

    ``'scale'``: ``h / ‖h‖²``; ``'sign'`` and ``'none'``: ``h`` itself (``1/q = q`` for sign flips).
    """
    if group != 'scale':
        return h
    return h / (jnp.sum(h * h, axis=-1, keepdims=True) + _INVERSE_EPS)


class Invariant(nn.Module):
    """``ρ``: an embedding of ``z`` invariant to ``z -> q z`` (sign flips or positive scaling).

    ``'sign'``: ``φ(z) + φ(-z)``; ``'scale'``: ``φ(z / ‖z‖)``; ``'none'``: ``φ(z)`` (not invariant), with
    ``φ = gelu ∘ Dense``.
    """

    features: int
    group: str

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        phi = nn.Dense(self.features)
        if self.group == 'sign':
            return nn.gelu(phi(z)) + nn.gelu(phi(-z))
        if self.group == 'scale':
            z = z * jax.lax.rsqrt(jnp.sum(z * z, axis=-1, keepdims=True) + _EPS)
        return nn.gelu(phi(z))


class Equivariant(nn.Module):
    """``(W x) ⊙ (1 + g(invariants))``: scales like ``x``. With ``group='none'``, ``MLP([x, invariants])``."""

    features: int
    group: str

    @nn.compact
    def __call__(self, x: jax.Array, invariants: Sequence[jax.Array]) -> jax.Array:
        gate_inputs = jnp.concatenate(list(invariants), axis=-1)
        if self.group == 'none':
            return MLP((self.features, self.features))(jnp.concatenate([x, gate_inputs], axis=-1))
        # 1 + g: the ungated linear path lets features propagate like the network's own signals from the start.
        return _dense(self.features, self.group)(x) * (1.0 + MLP((self.features, self.features))(gate_inputs))


class Product(nn.Module):
    """``(A a) ⊙ (B b)``: scales like the product of ``a``'s and ``b``'s scalings (``'none'``: a Dense of both)."""

    features: int
    group: str

    @nn.compact
    def __call__(self, a: jax.Array, b: jax.Array) -> jax.Array:
        if self.group == 'none':
            return nn.Dense(self.features)(jnp.concatenate([a, b], axis=-1))
        return _dense(self.features, self.group)(a) * _dense(self.features, self.group)(b)


class ScaleGMNLayer(nn.Module):
    """One round of message passing: node update, then edge update from the updated nodes.

    Edge ``e_ji`` runs from neuron ``j`` (layer l-1) to ``i`` (layer l). Its forward message
    ``z = [h_i, h_j ⊙ e_ji]`` scales like ``i``; the backward message to ``j`` is ``h_j`` gated by
    invariants of ``z`` and ``e_ji``. Messages are averaged over each neuron's fan-in / fan-out. The edge
    update adds ``[e_ji, h_i ⊙ h_j⁻¹]`` (both scale like the weight) gated by invariants, so a weight can
    change by more than a multiple of itself.
    """

    hidden: int
    group: str
    bidirectional: bool

    @nn.compact
    def __call__(self, h: jax.Array, e: jax.Array, graph: GraphStructure) -> tuple[jax.Array, jax.Array]:
        n_node, group = h.shape[0], self.group
        h_send, h_recv = h[graph.senders], h[graph.receivers]
        z = jnp.concatenate([h_recv, Product(self.hidden, group)(h_send, e)], axis=-1)
        inv_z = Invariant(self.hidden, group)(z)
        inv_e = Invariant(self.hidden, group)(e)
        forward = Equivariant(self.hidden, group)(z, [inv_z, graph.edge_context])
        parts = [h, jax.ops.segment_sum(forward, graph.receivers, n_node) / graph.in_degree]
        if self.bidirectional:
            backward = Equivariant(self.hidden, group)(h_send, [inv_z, inv_e, graph.edge_context])
            parts.append(jax.ops.segment_sum(backward, graph.senders, n_node) / graph.out_degree)
        u = jnp.concatenate(parts, axis=-1)
        h = h + Equivariant(self.hidden, group)(u, [Invariant(self.hidden, group)(u), graph.node_context])
        h = squash(h, group)
        pair = Product(self.hidden, group)(h[graph.receivers], inverse(h[graph.senders], group))
        v = jnp.concatenate([e, pair], axis=-1)
        e = e + Equivariant(self.hidden, group)(v, [Invariant(self.hidden, group)(v), inv_e, graph.edge_context])
        return h, squash(e, group)


class ScaleGMNNetwork(nn.Module):
    """Encoder, ``layers`` ScaleGMN layers and a read-out: ``(edges (E, K), nodes (N,)) -> (edges', nodes')``.

    Returns ``θ' = θ + Δ`` in graph form; padding cells of conv windows are left at zero. For ``'scale'``
    the layers see the scale-normalised network and ``Δ`` is scaled back per neuron.
    """

    group: str
    hidden: int
    layers: int
    bidirectional: bool
    output_init_scale: float
    tokens: int
    input_scales: tuple[float, float]

    @nn.compact
    def __call__(self, edges: jax.Array, nodes: jax.Array, graph: GraphStructure) -> tuple[jax.Array, jax.Array]:
        weight_scale, bias_scale = self.input_scales
        if self.group == 'scale':
            r = neuron_scales(edges, nodes, graph)
            edge_unit, node_unit = weight_scale * edge_ratio(r, graph), bias_scale * r
        else:
            edge_unit, node_unit = weight_scale, bias_scale
        node_embedding = nn.Embed(self.tokens, self.hidden)(jnp.asarray(graph.node_token))
        if self.group != 'none':
            # A hidden neuron's features must scale with it; inputs and outputs have no symmetry.
            node_embedding = node_embedding * (graph.node_role != ROLE_HIDDEN)[:, None]
        h = _dense(self.hidden, self.group)((nodes / node_unit)[:, None]) + node_embedding
        e = _dense(self.hidden, self.group)(edges / edge_unit)
        for _ in range(self.layers):
            h, e = ScaleGMNLayer(self.hidden, self.group, self.bidirectional)(h, e, graph)
        readout = nn.initializers.normal(self.output_init_scale)
        delta_e = _dense(edges.shape[-1], self.group, kernel_init=readout)(e) * graph.kernel_mask
        delta_n = _dense(1, self.group, kernel_init=readout)(h)[:, 0]
        return edges + edge_unit * delta_e, nodes + node_unit * delta_n
