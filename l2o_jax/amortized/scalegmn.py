"""ScaleGMN: a graph metanetwork equivariant to hidden-neuron permutations and per-neuron scalings.

A trained network θ is read as a neural graph (biases on nodes, weights on edges, conv kernels as K cells
per edge) and mapped in one forward pass to new parameters ``θ' = θ + Δ``. Hidden neuron ``i`` of a tanh
network may flip sign (``q_i ∈ {±1}``) and one of a ReLU network may be rescaled (``q_i > 0``): its bias
and incoming weights scale by ``q_i``, its outgoing weights by ``1/q_i``. Every feature of ScaleGMN
transforms the same way, so ``Δ`` and ``θ'`` do too:

* a node's features scale like its neuron (``q_i``); an edge's like its weight (``q_i / q_j``);
* products ``h_j ⊙ e_ji`` of a sender's features and an edge's scale like the receiver;
* invariants ``ρ`` are sign-symmetrised (``φ(z) + φ(-z)``, tanh) or scale-normalised (``φ(z / ‖z‖)``,
  ReLU);
* every update is ``(W z) ⊙ g(ρ(·), structure)`` with a bias-free ``W``, plus a residual.

Products compound magnitudes from layer to layer, so features are kept bounded: for sign flips by
``x / sqrt(1 + mean(x²))`` (the norm is invariant), for positive scaling by scale normalisation of the
input network (each hidden neuron divided by its scale ``r_i``, see ``neuron_scales``; the output is
multiplied back).

With ``symmetry='none'`` the same dataflow uses plain MLPs and un-normalised embeddings: the GMN ablation
of Kuipers et al., equivariant to permutations only.

References:
  Kalogeropoulos et al., *Scale Equivariant Graph Metanetworks*, NeurIPS 2024.
  Kuipers et al., *Symmetry-Aware Fully-Amortized Optimization with Scale Equivariant Graph
  Metanetworks*.
"""

from __future__ import annotations

import dataclasses
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
from l2o_jax.graphs import graph_spec
from l2o_jax.graphs import graph_to_params
from l2o_jax.graphs import tree_to_graph_arrays
from l2o_jax.nn import MLP
from l2o_jax.optimizers import MetaParams
from l2o_jax.optimizers import register_family
from l2o_jax.optimizers import tiny_mlp_params

#: The symmetry group each supported activation has besides permutations.
ACTIVATION_SYMMETRY = {'tanh': 'sign', 'relu': 'scale'}
SYMMETRIES = ('auto', 'sign', 'scale', 'none')
# Added to squared norms before a square root or a division: finite gradients at 0, negligible otherwise.
_EPS = 1e-12
# Inside ``inverse``: keeps h⁻¹ bounded for features near zero.
_INVERSE_EPS = 1e-6


@register_family
@dataclasses.dataclass(frozen=True)
class ScaleGMN:
    """Config of a ScaleGMN (or, with ``symmetry='none'``, the symmetry-broken GMN) single-shot metanetwork.

    Attributes:
      activation: the hidden activation of the networks it will fine-tune (``'tanh'`` or ``'relu'``).
      symmetry: ``'auto'`` (sign flips for tanh, positive scaling for ReLU), ``'sign'``, ``'scale'``, or
        ``'none'`` for the GMN ablation (permutation equivariance only).
      hidden: feature width of nodes and edges.
      layers: message-passing layers.
      bidirectional: also pass messages backwards, from a neuron's consumers to it (ScaleGMN-B).
      output_init_scale: standard deviation of the read-out weights, so ``θ' ≈ θ`` at initialisation.
      positional: learn an embedding per input and per output neuron (they are never permuted or rescaled,
        and which pixel or class a neuron stands for is what lets the metanetwork learn data-specific
        corrections); otherwise one embedding per role.
      window: conv kernel window ``(h, w)``; set by ``init`` from the example network when ``None``.
      io_sizes: ``(inputs, outputs)`` of the networks, for ``positional``; set by ``init`` when ``None``.
      input_scales: ``(weights, biases)``: fixed divisors that bring weights and biases to unit scale inside
        the metanetwork (``Δ`` is multiplied back); set by ``init`` from the example network when ``None``.
        Constants commute with every symmetry, so equivariance is untouched.

    Example:
      >>> metanet = ScaleGMN(activation='tanh', hidden=16, layers=2)
      >>> meta_params = metanet.init(jax.random.key(0), params)
      >>> new_params = finetune(meta_params, params)
    """

    activation: str = 'relu'
    symmetry: str = 'auto'
    hidden: int = 16
    layers: int = 2
    bidirectional: bool = True
    output_init_scale: float = 1e-2
    positional: bool = True
    window: tuple[int, int] | None = None
    io_sizes: tuple[int, int] | None = None
    input_scales: tuple[float, float] | None = None

    def __post_init__(self):
        if self.symmetry not in SYMMETRIES:
            raise ValueError(f'ScaleGMN.symmetry must be one of {SYMMETRIES}, got {self.symmetry!r}.')
        if self.symmetry == 'auto' and self.activation not in ACTIVATION_SYMMETRY:
            raise ValueError(
                f"ScaleGMN: no known scaling symmetry for activation {self.activation!r} (known: "
                f"{sorted(ACTIVATION_SYMMETRY)}); pass symmetry='sign', 'scale' or 'none'."
            )
        if self.hidden < 1 or self.layers < 0:
            raise ValueError(f'ScaleGMN needs hidden >= 1 and layers >= 0, got {self.hidden}, {self.layers}.')

    @property
    def group(self) -> str:
        """The resolved symmetry: ``'sign'``, ``'scale'`` or ``'none'``."""
        return ACTIVATION_SYMMETRY[self.activation] if self.symmetry == 'auto' else self.symmetry

    @property
    def name(self) -> str:
        return ('GMN' if self.group == 'none' else 'ScaleGMN') + ('-B' if self.bidirectional else '')

    def spec(self, params) -> GraphSpec:
        """The neural graph of ``params`` as this metanetwork reads it."""
        spec = graph_spec(params, activations=self.activation, window=self.window)
        io_sizes = (spec.widths[0], spec.widths[-1])
        if self.positional and self.io_sizes is not None and io_sizes != self.io_sizes:
            raise ValueError(
                f'{self.name}: these meta-parameters embed {self.io_sizes[0]} inputs and '
                f'{self.io_sizes[1]} outputs, but the network has {io_sizes[0]} and {io_sizes[1]} '
                '(hidden widths and depth may differ; inputs and outputs may not when '
                'positional=True).'
            )
        return spec

    def structure(self, spec: GraphSpec) -> 'GraphStructure':
        """The static structure this metanetwork reads from a graph."""
        return graph_structure(spec, positional=self.positional)

    def network(self) -> nn.Module:
        return ScaleGMNNetwork(
            group=self.group,
            hidden=self.hidden,
            layers=self.layers,
            bidirectional=self.bidirectional,
            output_init_scale=self.output_init_scale,
            tokens=sum(self.io_sizes) + 1 if self.positional else 3,
            input_scales=self.input_scales,
        )

    def init(self, key: jax.Array, params=None) -> MetaParams:
        """Random meta-parameters for networks shaped like ``params`` (concrete arrays, not tracers).

        They apply to other widths and depths too, with the same kernel window (and, when ``positional``,
        the same numbers of inputs and outputs). ``params`` may be left out once ``window``, ``io_sizes`` and
        ``input_scales`` are set, as in the config of existing meta-parameters (loading uses that).

        Example:
          >>> meta_params = ScaleGMN(activation='relu').init(jax.random.key(0), params)
          >>> same_shapes = meta_params.config.init(jax.random.key(1))
        """
        if params is None:
            if None in (self.window, self.io_sizes, self.input_scales):
                raise ValueError(
                    f"{self.name}.init needs an example network's params until window, io_sizes and input_scales "
                    "are set (init sets them from the example)."
                )
            # A stand-in with the same inputs and outputs, read with the same window: the same meta-parameter shapes.
            params = tiny_mlp_params(*self.io_sizes)
        spec = graph_spec(params, window=self.window)
        config = dataclasses.replace(self, window=spec.window, io_sizes=(spec.widths[0], spec.widths[-1]))
        structure = config.structure(spec)
        edges, nodes = tree_to_graph_arrays(params, spec)
        if config.input_scales is None:
            config = dataclasses.replace(config, input_scales=_rms_scales(edges, nodes, structure, config.group))
        variables = config.network().init(key, edges, nodes, structure)
        return MetaParams(arrays={'net': variables['params']}, config=config)


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


def _edge_ratio(r: jax.Array, graph: GraphStructure) -> jax.Array:
    """``r_receiver / r_sender`` per edge, shaped to broadcast over kernel cells."""
    return (r[graph.receivers] / r[graph.senders])[:, None]


def _rms_scales(edges, nodes, graph: GraphStructure, group: str) -> tuple[float, float]:
    """RMS of the real weight cells and of the non-input biases (scale-normalised for ``'scale'``)."""
    if group == 'scale':
        r = neuron_scales(edges, nodes, graph)
        edges, nodes = edges / _edge_ratio(r, graph), nodes / r
    mask = np.asarray(graph.kernel_mask, bool)
    weights = float(np.sqrt(np.mean(np.square(np.asarray(edges)[mask]))))
    weights = weights if weights > 0 else 1.0
    biases = float(np.sqrt(np.mean(np.square(np.asarray(nodes)[graph.node_role != ROLE_INPUT]))))
    return weights, biases if biases > 1e-3 * weights else weights


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
            edge_unit, node_unit = weight_scale * _edge_ratio(r, graph), bias_scale * r
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


def _check_config(meta_params) -> ScaleGMN:
    config = getattr(meta_params, 'config', None)
    if not isinstance(meta_params, MetaParams) or not isinstance(config, ScaleGMN):
        raise TypeError(
            'finetune expects MetaParams of a ScaleGMN (from ScaleGMN(...).init(key, params) or '
            f'train_metanetwork), got {type(meta_params).__name__} with config '
            f'{type(config).__name__}.'
        )
    return config


@jax.jit
def finetune(meta_params: MetaParams, params):
    """Single-shot fine-tuning: ``θ' = f_φ(G, θ)`` in one jitted forward pass of the metanetwork.

    Args:
      meta_params: a ScaleGMN's (or GMN's) meta-parameters.
      params: one network's parameters (Linen variables of an MLP or CNN). For a stack of networks use
        ``jax.vmap(finetune, in_axes=(None, 0))``.

    Returns:
      New parameters with the structure, shapes and dtypes of ``params``.

    Example:
      >>> new_params = finetune(meta_params, params)
      >>> task.evaluate(new_params)['accuracy']
    """
    config = _check_config(meta_params)
    spec = config.spec(params)
    edges, nodes = tree_to_graph_arrays(params, spec)
    new_edges, new_nodes = config.network().apply(
        {'params': meta_params.arrays['net']}, edges, nodes, config.structure(spec)
    )
    return graph_to_params(new_edges, new_nodes, spec)
