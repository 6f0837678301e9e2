"""The static structure of a neural graph: ``LayerSpec`` and ``GraphSpec``, the roles and categories of
neurons, and the warning for parameters the graph cannot place (built by ``l2o_jax.graphs.spec.graph_spec``)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any
from typing import Sequence

import numpy as np

#: Roles of a neuron; hidden neurons of one layer are interchangeable, inputs and outputs are not.
ROLE_INPUT, ROLE_HIDDEN, ROLE_OUTPUT = 0, 1, 2
#: Activation categories understood by the meta-networks (index = category id).
ACTIVATION_CATEGORIES = ("linear", "relu", "tanh", "gelu", "sigmoid", "swish", "other")
LAYER_KINDS = ("dense", "conv")
#: Names Flax's attention modules give their projections; their 3-D kernels are not 1-D convolutions.
ATTENTION_PROJECTIONS = ("query", "key", "value", "out")


class UnplacedParametersWarning(UserWarning):
    """Some parameters are not part of the neural graph; learned optimizers step them as coordinates without
    message passing. Pass ``strict=True`` to ``graph_spec`` or a graph optimizer's factory to refuse them."""


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One parameterised layer: where its leaves live and how it connects.

    Attributes:
      path: the layer's path in the pytree (tuple of keys), e.g. ``('params', 'Conv_0')``.
      kernel_leaf: index of the kernel among the flattened leaves.
      bias_leaf: index of the bias leaf, or ``None`` for a layer without bias.
      kind: ``'dense'`` (kernel ``(in, out)``) or ``'conv'`` (kernel ``(*spatial, in, out)``).
      fan_in, fan_out: neurons of the previous / this layer.
      spatial: the kernel's spatial shape, ``()`` for dense layers.
      activation: name of the activation applied after this layer.
      cell_leaves: for an attention module's first layer, its query, key and value kernels ``(in, heads,
        head_dim)``, one per cell of each edge (``spatial == (1, 3)``); ``()`` otherwise.
      input_tables: ``(leaf, rows)`` of embedding tables ``(rows, fan_out)`` read as extra input neurons after the
        kernel's (first layer only); ``fan_in`` counts them.
      attention: whether the layer is one of an attention module's two (its activation is ``'linear'``).
    """

    path: tuple
    kernel_leaf: int
    bias_leaf: int | None
    kind: str
    fan_in: int
    fan_out: int
    spatial: tuple[int, ...]
    activation: str
    cell_leaves: tuple[int, ...] = ()
    input_tables: tuple[tuple[int, int], ...] = ()
    attention: bool = False

    @property
    def name(self) -> str:
        return path_to_str(self.path)

    @property
    def kernel_leaves(self) -> tuple[int, ...]:
        """The kernels whose values the layer's edges carry, one per cell group."""
        return self.cell_leaves or (self.kernel_leaf,)

    @property
    def kernel_rows(self) -> int:
        """Input neurons the kernel reads (``fan_in`` less the embedding tables' rows)."""
        return self.fan_in - sum(rows for _, rows in self.input_tables)


@dataclasses.dataclass(frozen=True, eq=False)
class GraphSpec:
    """The static graph of one architecture.

    Node ``i`` is a neuron; nodes are laid out layer by layer (inputs first). Edge ``e`` of layer ``l``
    connects input neuron ``a`` to output neuron ``b`` and sits at ``edge_offsets[l] + a * fan_out + b``,
    which is the row-major order of the kernel's ``(in, out)`` axes. Conv kernels are zero-padded,
    centred, to ``window`` and flattened, so every edge carries ``kernel_size = prod(window)`` values.

    Attributes:
      layers: the layers in forward order.
      treedef, leaf_shapes, leaf_dtypes, leaf_paths: of the parameter pytree (for the way back).
      window: the common 2-D padding window ``(h, w)``; dense layers use the centre cell only.
      senders, receivers: ``int32[n_edge]``.
      node_layer: ``int32[n_node]`` layer index of each neuron (0 = inputs).
      node_role: ``int32[n_node]`` one of ROLE_INPUT / ROLE_HIDDEN / ROLE_OUTPUT.
      node_position: ``int32[n_node]`` index of an input/output neuron within its layer, -1 for hidden.
      node_activation: ``int32[n_node]`` activation category of the neuron (inputs: 'linear').
      edge_layer: ``int32[n_edge]`` layer index (1-based like the receiving neurons).
      edge_kind: ``int32[n_edge]`` index into LAYER_KINDS.
      kernel_mask: ``bool[n_layers, kernel_size]`` which window cells hold real kernel values per layer.
      unplaced: indices (among the flattened leaves) of the parameters that are not part of the graph, in
        leaf order; ``unplaced_values`` / ``graph_to_params`` carry them as one ``(unplaced_size,)`` vector.
      residual_senders, residual_receivers: ``int32[n_residual]`` identity edges of residual connections, read
        from the model's computation (``graph_spec(..., apply_fn=, example_input=)``); they carry no parameter.
      neuron_params: ``(leaf, layer, kind)`` of the parameters with one value per neuron of ``layer`` (1-based)
        besides its bias, read from the computation: ``kind`` is ``'scale'`` (multiplied into the neurons' values,
        a normalisation's scale) or ``'shift'`` (added, a normalisation's shift or an attention bias).
        ``neuron_param_values`` / ``graph_to_params`` carry them as one ``(neuron_param_size,)`` vector.
    """

    layers: tuple[LayerSpec, ...]
    treedef: Any
    leaf_shapes: tuple[tuple[int, ...], ...]
    leaf_dtypes: tuple[Any, ...]
    leaf_paths: tuple[tuple, ...]
    window: tuple[int, int]
    senders: np.ndarray
    receivers: np.ndarray
    node_layer: np.ndarray
    node_role: np.ndarray
    node_position: np.ndarray
    node_activation: np.ndarray
    edge_layer: np.ndarray
    edge_kind: np.ndarray
    kernel_mask: np.ndarray
    unplaced: tuple[int, ...] = ()
    residual_senders: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
    residual_receivers: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
    neuron_params: tuple[tuple[int, int, str], ...] = ()

    @property
    def widths(self) -> tuple[int, ...]:
        """Neurons per layer, inputs first: ``(d_0, d_1, ..., d_L)``."""
        return (self.layers[0].fan_in,) + tuple(layer.fan_out for layer in self.layers)

    @property
    def n_node(self) -> int:
        return int(sum(self.widths))

    @property
    def n_edge(self) -> int:
        return int(sum(layer.fan_in * layer.fan_out for layer in self.layers))

    @property
    def kernel_size(self) -> int:
        return int(self.window[0] * self.window[1])

    @property
    def node_offsets(self) -> np.ndarray:
        """First node id of each layer (inputs = layer 0), plus the total at the end."""
        return np.concatenate([[0], np.cumsum(self.widths)]).astype(np.int64)

    @property
    def edge_offsets(self) -> np.ndarray:
        """First edge id of each parameterised layer, plus the total at the end."""
        sizes = [layer.fan_in * layer.fan_out for layer in self.layers]
        return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    @property
    def edge_kernel_mask(self) -> np.ndarray:
        """``bool[n_edge, kernel_size]``: real (not padding) kernel cells of every edge."""
        return self.kernel_mask[self.edge_layer - 1]

    @functools.cached_property  # read by every step; the spec is immutable
    def real_cells(self) -> np.ndarray:
        """``int64[n_cells]``: flat indices (``edge * kernel_size + cell``) of the real kernel cells, ascending."""
        return np.flatnonzero(self.edge_kernel_mask)

    @property
    def message_senders(self) -> np.ndarray:
        """``int32[n_edge + n_residual]``: the senders of every message, the edges' then the residual connections'."""
        return np.concatenate([self.senders, self.residual_senders]).astype(np.int32)

    @property
    def message_receivers(self) -> np.ndarray:
        """``int32[n_edge + n_residual]``: the receivers, in ``message_senders``' order."""
        return np.concatenate([self.receivers, self.residual_receivers]).astype(np.int32)

    @property
    def unplaced_size(self) -> int:
        """Number of scalar parameters outside the graph."""
        return int(sum(np.prod(self.leaf_shapes[i]) for i in self.unplaced))

    @property
    def unplaced_paths(self) -> tuple[str, ...]:
        """Paths of the parameters outside the graph, e.g. ``('params/LayerNorm_0/scale', ...)``."""
        return tuple(path_to_str(self.leaf_paths[i]) for i in self.unplaced)

    @property
    def num_params(self) -> int:
        return int(sum(np.prod(s) for s in self.leaf_shapes))

    @property
    def neuron_param_size(self) -> int:
        """Number of scalar neuron parameters (normalisation scales and shifts, attention biases)."""
        return int(sum(np.prod(self.leaf_shapes[leaf]) for leaf, _, _ in self.neuron_params))

    @property
    def neuron_param_nodes(self) -> np.ndarray:
        """``int32[neuron_param_size]``: the neuron each neuron parameter acts on."""
        offsets = self.node_offsets
        parts = [offsets[layer] + np.arange(self.widths[layer]) for _, layer, _ in self.neuron_params]
        return np.concatenate(parts or [np.zeros(0)]).astype(np.int32)

    @property
    def neuron_param_is_scale(self) -> np.ndarray:
        """``bool[neuron_param_size]``: which neuron parameters are scales (the others are shifts)."""
        parts = [np.full(self.widths[layer], kind == "scale") for _, layer, kind in self.neuron_params]
        return np.concatenate(parts or [np.zeros(0, bool)])

    @property
    def sequential(self) -> bool:
        """Whether the graph is a plain chain of Dense/Conv layers and covers every parameter (what probe
        features and the learned backward pass run through)."""
        plain = all(not layer.cell_leaves and not layer.input_tables for layer in self.layers)
        return plain and not self.unplaced and not self.neuron_params and not len(self.residual_senders)

    def __repr__(self) -> str:
        return (
            f"GraphSpec(widths={self.widths}, n_node={self.n_node}, n_edge={self.n_edge}, "
            f"window={self.window}, layers={[layer.name for layer in self.layers]}, unplaced={len(self.unplaced)}, "
            f"residual={len(self.residual_senders)}, neuron_params={len(self.neuron_params)})"
        )


def path_to_str(path: Sequence) -> str:
    """Human-readable form of a pytree path, e.g. ``params/Conv_0/kernel``."""
    return "/".join(str(k) for k in path)
