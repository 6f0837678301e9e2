"""The single-shot ScaleGMN network: an encoder, the scale-equivariant layers of
``l2o_jax.nn.scale_equivariant`` and a read-out to ``θ' = θ + Δ`` (see ``l2o_jax.amortized.scalegmn`` for the
symmetries it keeps).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from l2o_jax.graphs import ROLE_HIDDEN
from l2o_jax.nn.scale_equivariant import GraphStructure
from l2o_jax.nn.scale_equivariant import ScaleGMNLayer
from l2o_jax.nn.scale_equivariant import edge_ratio
from l2o_jax.nn.scale_equivariant import group_dense
from l2o_jax.nn.scale_equivariant import neuron_scales


class ScaleGMNNetwork(nn.Module):
    """Encoder, ``layers`` ScaleGMN layers and a read-out: ``(edges (E, K), nodes (N,)) -> (edges', nodes')``.

    Returns ``θ' = θ + Δ`` in graph form; padding cells of conv windows are left at zero. For ``'scale'``
    the layers see the scale-normalised network and ``Δ`` is scaled back per neuron.

    ``symmetric=False`` is the GMN control: the same modules, widths and parameter names, with the symmetry
    constraints switched off and nothing else: Dense layers get biases, invariants see ``z`` itself instead
    of its canonical form, hidden neurons get a learned embedding, and the network is not scale-normalised (its
    features are bounded by ``squash`` instead, as for sign flips; unbounded products overflow on ReLU zoos).
    """

    group: str
    hidden: int
    layers: int
    bidirectional: bool
    output_init_scale: float
    tokens: int
    input_scales: tuple[float, float]
    symmetric: bool = True

    @nn.compact
    def __call__(self, edges: jax.Array, nodes: jax.Array, graph: GraphStructure) -> tuple[jax.Array, jax.Array]:
        weight_scale, bias_scale = self.input_scales
        symmetric = self.symmetric
        if self.group == 'scale' and symmetric:
            r = neuron_scales(edges, nodes, graph)
            edge_unit, node_unit = weight_scale * edge_ratio(r, graph), bias_scale * r
        else:
            edge_unit, node_unit = weight_scale, bias_scale
        node_embedding = nn.Embed(self.tokens, self.hidden)(jnp.asarray(graph.node_token))
        if symmetric:
            # A hidden neuron's features must scale with it; inputs and outputs have no symmetry.
            node_embedding = node_embedding * (graph.node_role != ROLE_HIDDEN)[:, None]
        h = group_dense(self.hidden, self.group, symmetric)((nodes / node_unit)[:, None]) + node_embedding
        e = group_dense(self.hidden, self.group, symmetric)(edges / edge_unit)
        for _ in range(self.layers):
            h, e = ScaleGMNLayer(self.hidden, self.group, self.bidirectional, symmetric)(h, e, graph)
        readout = nn.initializers.normal(self.output_init_scale)
        delta_e = group_dense(edges.shape[-1], self.group, symmetric, kernel_init=readout)(e) * graph.kernel_mask
        delta_n = group_dense(1, self.group, symmetric, kernel_init=readout)(h)[:, 0]
        return edges + edge_unit * delta_e, nodes + node_unit * delta_n
