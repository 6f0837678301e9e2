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

With ``symmetry='none'`` the same layers, widths and parameters are built with the symmetry constraints
switched off (Dense layers with biases, invariants of ``z`` itself rather than its canonical form, embeddings
for hidden neurons, no scale normalisation, so features are bounded like those of the sign-flip layers): the
GMN ablation of Kuipers et al., equivariant to permutations only, differing from ScaleGMN in nothing else.

References:
  Kalogeropoulos et al., *Scale Equivariant Graph Metanetworks*, NeurIPS 2024.
  Kuipers et al., *Symmetry-Aware Fully-Amortized Optimization with Scale Equivariant Graph
  Metanetworks*.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import numpy as np

from l2o_jax.amortized.layers import ScaleGMNNetwork
from l2o_jax.graphs import ROLE_INPUT
from l2o_jax.graphs import GraphSpec
from l2o_jax.graphs import graph_spec
from l2o_jax.graphs import graph_to_params
from l2o_jax.graphs import tree_to_graph_arrays
from l2o_jax.nn.scale_equivariant import GraphStructure
from l2o_jax.nn.scale_equivariant import edge_ratio
from l2o_jax.nn.scale_equivariant import graph_structure
from l2o_jax.nn.scale_equivariant import neuron_scales
from l2o_jax.optimizers import MetaParams
from l2o_jax.optimizers import register_family
from l2o_jax.optimizers import tiny_mlp_params

#: The symmetry group each supported activation has besides permutations.
ACTIVATION_SYMMETRY = {'tanh': 'sign', 'relu': 'scale'}
SYMMETRIES = ('auto', 'sign', 'scale', 'none')


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
    def architecture(self) -> str:
        """The layers built: the activation's group (``'sign'`` for activations without a known one), also for
        the GMN control, which differs only in ``symmetric=False``."""
        if self.group != 'none':
            return self.group
        return ACTIVATION_SYMMETRY.get(self.activation, 'sign')

    @property
    def name(self) -> str:
        return ('GMN' if self.group == 'none' else 'ScaleGMN') + ('-B' if self.bidirectional else '')

    def spec(self, params) -> GraphSpec:
        """The neural graph of ``params`` as this metanetwork reads it."""
        spec = graph_spec(params, activations=self.activation, window=self.window, strict=True)
        io_sizes = (spec.widths[0], spec.widths[-1])
        if self.positional and self.io_sizes is not None and io_sizes != self.io_sizes:
            raise ValueError(
                f'{self.name}: these meta-parameters embed {self.io_sizes[0]} inputs and '
                f'{self.io_sizes[1]} outputs, but the network has {io_sizes[0]} and {io_sizes[1]} '
                '(hidden widths and depth may differ; inputs and outputs may not when '
                'positional=True).'
            )
        return spec

    def structure(self, spec: GraphSpec) -> GraphStructure:
        """The static structure this metanetwork reads from a graph."""
        return graph_structure(spec, positional=self.positional)

    def network(self) -> nn.Module:
        return ScaleGMNNetwork(
            group=self.architecture,
            symmetric=self.group != 'none',
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
        spec = graph_spec(params, window=self.window, strict=True)
        config = dataclasses.replace(self, window=spec.window, io_sizes=(spec.widths[0], spec.widths[-1]))
        structure = config.structure(spec)
        edges, nodes = tree_to_graph_arrays(params, spec)
        if config.input_scales is None:
            config = dataclasses.replace(config, input_scales=_rms_scales(edges, nodes, structure, config.group))
        variables = config.network().init(key, edges, nodes, structure)
        return MetaParams(arrays={'net': variables['params']}, config=config)


def _rms_scales(edges, nodes, graph: GraphStructure, group: str) -> tuple[float, float]:
    """RMS of the real weight cells and of the non-input biases (scale-normalised for ``'scale'``)."""
    if group == 'scale':
        r = neuron_scales(edges, nodes, graph)
        edges, nodes = edges / edge_ratio(r, graph), nodes / r
    mask = np.asarray(graph.kernel_mask, bool)
    weights = float(np.sqrt(np.mean(np.square(np.asarray(edges)[mask]))))
    weights = weights if weights > 0 else 1.0
    biases = float(np.sqrt(np.mean(np.square(np.asarray(nodes)[graph.node_role != ROLE_INPUT]))))
    return weights, biases if biases > 1e-3 * weights else weights


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
