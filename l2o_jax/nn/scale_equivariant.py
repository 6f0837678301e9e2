"""Layers equivariant to hidden-neuron permutations and to sign flips or positive rescalings of hidden neurons
(ScaleGMN, Kalogeropoulos et al. 2024): the static structure of a neural graph they read, per-neuron scales,
and the invariant, equivariant and product maps every update is built from.

Hidden neuron ``i`` of a tanh network may flip sign (``q_i in {+-1}``) and one of a ReLU network may be rescaled
(``q_i > 0``) without changing the network's function. A node's features scale like its neuron (``q_i``), an
edge's like its weight (``q_i / q_j``); every map here keeps those laws (``group='sign'`` or ``'scale'``), or,
with ``symmetric=False``, only permutations: the same maps, widths and parameter names with the constraints
switched off (Dense layers with biases, invariants of ``z`` itself rather than of its canonical form), the
GMN control of Kuipers et al. that differs in nothing else. ``group='none'`` is ``'sign'`` with
``symmetric=False``.

The single-shot ScaleGMN (``l2o_jax.amortized``) and the iterative ``scale_graph_l2o`` are built from them.

References:
  Kalogeropoulos et al., Scale Equivariant Graph Metanetworks, NeurIPS 2024.
"""

from __future__ import annotations

from typing import NamedTuple
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from l2o_jax.graphs import ROLE_INPUT
from l2o_jax.graphs import ROLE_OUTPUT
from l2o_jax.graphs import GraphSpec
from l2o_jax.nn.mlp import MLP

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


def constrained(group: str, symmetric: bool = True) -> bool:
    """Whether maps of ``group`` keep the scaling symmetry (``False`` for ``'none'`` or ``symmetric=False``)."""
    return symmetric and group != 'none'


def group_dense(features: int, group: str, symmetric: bool = True, **kwargs) -> nn.Dense:
    """A Dense layer that commutes with scalings: bias-free unless the symmetry is switched off."""
    return nn.Dense(features, use_bias=not constrained(group, symmetric), **kwargs)


def squash(x: jax.Array, group: str, symmetric: bool = True) -> jax.Array:
    """``x / sqrt(1 + mean(x²))``: bounds features, equivariant to sign flips.

    The identity for ``'scale'``, whose positive-scaling equivariance forbids it (scale-equivariant networks are
    kept bounded by scale-normalising their input instead); unconstrained maps of either group are bounded.
    """
    if group == 'scale' and constrained(group, symmetric):
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

    ``'sign'``: ``φ(z) + φ(-z)``; ``'scale'``: ``φ(z / ‖z‖)``; unconstrained: ``φ(z)`` (not invariant), with
    ``φ = gelu ∘ Dense``.
    """

    features: int
    group: str
    symmetric: bool = True

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        phi = nn.Dense(self.features)
        if not constrained(self.group, self.symmetric):
            return nn.gelu(phi(z))
        if self.group == 'sign':
            return nn.gelu(phi(z)) + nn.gelu(phi(-z))
        if self.group == 'scale':
            z = z * jax.lax.rsqrt(jnp.sum(z * z, axis=-1, keepdims=True) + _EPS)
        return nn.gelu(phi(z))


class Equivariant(nn.Module):
    """``(W x) ⊙ (1 + g(invariants))``: scales like ``x`` (``W`` gets a bias when unconstrained)."""

    features: int
    group: str
    symmetric: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, invariants: Sequence[jax.Array]) -> jax.Array:
        gate = MLP((self.features, self.features))(jnp.concatenate(list(invariants), axis=-1))
        # 1 + g: the ungated linear path lets features propagate like the network's own signals from the start.
        return group_dense(self.features, self.group, self.symmetric)(x) * (1.0 + gate)


class Product(nn.Module):
    """``(A a) ⊙ (B b)``: scales like the product of ``a``'s and ``b``'s scalings (``A``, ``B`` biased when
    unconstrained)."""

    features: int
    group: str
    symmetric: bool = True

    @nn.compact
    def __call__(self, a: jax.Array, b: jax.Array) -> jax.Array:
        dense = lambda: group_dense(self.features, self.group, self.symmetric)
        return dense()(a) * dense()(b)


class ScaleGMNLayer(nn.Module):
    """One round of message passing: node update, then edge update from the updated nodes.

    Edge ``e_ji`` runs from neuron ``j`` (layer l-1) to ``i`` (layer l). Its forward message
    ``z = [h_i, h_j ⊙ e_ji]`` scales like ``i``; the backward message to ``j`` is ``h_j`` gated by
    invariants of ``z`` and ``e_ji``. Messages are averaged over each neuron's fan-in / fan-out. The edge
    update adds ``[e_ji, h_i ⊙ h_j⁻¹]`` (both scale like the weight) gated by invariants, so a weight can
    change by more than a multiple of itself. ``symmetric=False``: the same maps, unconstrained.
    """

    hidden: int
    group: str
    bidirectional: bool
    symmetric: bool = True

    @nn.compact
    def __call__(self, h: jax.Array, e: jax.Array, graph: GraphStructure) -> tuple[jax.Array, jax.Array]:
        n_node, group, symmetric = h.shape[0], self.group, self.symmetric
        invariant = lambda: Invariant(self.hidden, group, symmetric)
        equivariant = lambda: Equivariant(self.hidden, group, symmetric)
        product = lambda: Product(self.hidden, group, symmetric)
        h_send, h_recv = h[graph.senders], h[graph.receivers]
        z = jnp.concatenate([h_recv, product()(h_send, e)], axis=-1)
        inv_z, inv_e = invariant()(z), invariant()(e)
        forward = equivariant()(z, [inv_z, graph.edge_context])
        parts = [h, jax.ops.segment_sum(forward, graph.receivers, n_node) / graph.in_degree]
        if self.bidirectional:
            backward = equivariant()(h_send, [inv_z, inv_e, graph.edge_context])
            parts.append(jax.ops.segment_sum(backward, graph.senders, n_node) / graph.out_degree)
        u = jnp.concatenate(parts, axis=-1)
        h = squash(h + equivariant()(u, [invariant()(u), graph.node_context]), group, symmetric)
        pair = product()(h[graph.receivers], inverse(h[graph.senders], group))
        v = jnp.concatenate([e, pair], axis=-1)
        e = e + equivariant()(v, [invariant()(v), inv_e, graph.edge_context])
        return h, squash(e, group, symmetric)
