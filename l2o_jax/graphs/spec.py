"""Static structure of a neural graph, inferred once per architecture from a parameter pytree.

A feed-forward MLP or CNN with layer widths d_0 (inputs), d_1, ..., d_L becomes a graph with one node per
neuron (input neurons included, conv channels as neurons) and one edge per (input neuron, output neuron)
pair of each layer. Everything here is numpy, computed at trace time; nothing runs per step.

Read from parameter shapes and names alone, chained Dense/Conv layers are a sequential network and every other
parameter (normalisation scales, embeddings, attention projections, layers that do not chain) is *unplaced*: the
spec lists it and learned optimizers step it as a coordinate without message passing, after a warning
(``UnplacedParametersWarning``); ``strict=True`` refuses it instead.

Read from the model's computation (``graph_spec(..., apply_fn=, example_input=)``, ``l2o_jax.graphs.trace``),
the graph follows Kofinas et al. (2024) further: layers in the order the computation runs them; residual
connections as identity edges; a normalisation's scale and shift (and any other parameter with one value per
neuron, multiplied into or added to a layer's outputs, such as the query/key/value biases) as *neuron
parameters*, features and outputs of the neurons they act on; an attention module as two layers, the first from
its inputs to its ``heads * head_dim`` attention neurons with the query, key and value weights as the three cells
of each edge (like a 1x3 kernel), the second its output projection; an embedding table added to the first layer's
outputs (a position embedding) as extra input neurons, one per row, whose edges carry the table.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from typing import Any
from typing import Sequence

import jax
import numpy as np

from l2o_jax.graphs.trace import read_computation

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


def _key_name(key) -> Any:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return getattr(key, attr)
    return str(key)


def _strip_variable_value(path: tuple) -> tuple:
    """NNX states end a parameter's path in the Variable's ``value`` attribute; the layer path is before it."""
    return path[:-1] if len(path) > 1 and path[-1] == "value" else path


def _natural_key(path: tuple) -> tuple:
    """Sort key that orders ``Dense_2`` before ``Dense_10`` and list index 2 before 10."""
    parts = []
    for k in path:
        for chunk in re.split(r"(\d+)", str(k)):
            if chunk:
                parts.append((0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk))
    return tuple(parts)


def _category(activation: str) -> int:
    name = activation.lower()
    return ACTIVATION_CATEGORIES.index(name) if name in ACTIVATION_CATEGORIES else len(ACTIVATION_CATEGORIES) - 1


def _reject(unplaced: dict[int, str], leaves, message: str, strict: bool) -> None:
    """Leaves the graph cannot place: today's clear error under ``strict``, else recorded with the reason."""
    if strict:
        raise ValueError(message)
    for leaf in leaves:
        unplaced.setdefault(leaf, message)


def _group_layers(paths: list[tuple], shapes: list[tuple], unplaced: dict, strict: bool) -> dict[tuple, dict]:
    """Group 'kernel' / 'bias' leaves into layers by their parent path; every layer needs a kernel."""
    groups: dict[tuple, dict[str, int]] = {}
    for i, (path, shape) in enumerate(zip(paths, shapes)):
        leaf = path[-1]
        if leaf not in ("kernel", "bias"):
            message = (
                f"graph_spec: unsupported parameter {path_to_str(path)!r} with shape {shape}: only 'kernel' and "
                "'bias' leaves of Dense/Conv layers can be read (normalisation scales, embeddings and the like "
                "are not part of a neural graph)."
            )
            _reject(unplaced, [i], message, strict)
            continue
        groups.setdefault(path[:-1], {})[leaf] = i
    for parent, leaves in list(groups.items()):
        if "kernel" not in leaves:
            _reject(
                unplaced,
                leaves.values(),
                f"graph_spec: layer {path_to_str(parent)!r} has a bias but no kernel.",
                strict,
            )
            del groups[parent]
    return groups


def _layer_from_shapes(parent: tuple, leaves: dict[str, int], shapes: list[tuple], activation: str) -> LayerSpec:
    kernel_shape = shapes[leaves["kernel"]]
    where = path_to_str(parent + ("kernel",))
    if len(kernel_shape) == 3 and parent and parent[-1] in ATTENTION_PROJECTIONS:
        raise ValueError(
            f"graph_spec: kernel {where!r} of shape {kernel_shape} is a multi-head attention projection; attention "
            "is not part of the neural graph yet."
        )
    if len(kernel_shape) == 2:
        kind, spatial = "dense", ()
    elif len(kernel_shape) in (3, 4):
        kind, spatial = "conv", tuple(kernel_shape[:-2])
    else:
        raise ValueError(
            f"graph_spec: kernel {where!r} has shape {kernel_shape}; supported are dense (in, out) and 1-D/2-D "
            "conv kernels (k, in, out) / (kh, kw, in, out)."
        )
    fan_in, fan_out = kernel_shape[-2:]
    bias = leaves.get("bias")
    if bias is not None and shapes[bias] != (fan_out,):
        raise ValueError(
            f"graph_spec: bias {path_to_str(parent + ('bias',))!r} has shape {shapes[bias]}, "
            f"expected ({fan_out},) to match kernel {where!r} of shape {kernel_shape}."
        )
    return LayerSpec(
        path=parent,
        kernel_leaf=leaves["kernel"],
        bias_leaf=bias,
        kind=kind,
        fan_in=int(fan_in),
        fan_out=int(fan_out),
        spatial=spatial,
        activation=activation,
    )


def _resolve_activations(activations, layers: Sequence[LayerSpec]) -> tuple[str, ...]:
    n_layers = len(layers)
    if activations is None:
        return ("relu",) * (n_layers - 1) + ("linear",)
    if isinstance(activations, str):
        return (activations,) * (n_layers - 1) + ("linear",)
    activations = tuple(activations)
    attention = [layer.attention for layer in layers]
    if len(activations) == n_layers - sum(attention):  # one per Dense/Conv layer: attention layers are linear
        given = iter(activations)
        activations = tuple("linear" if a else next(given) for a in attention)
    if len(activations) != n_layers:
        raise ValueError(f"graph_spec: got {len(activations)} activations for {n_layers} layers.")
    return activations


def _window(layers: Sequence[LayerSpec], window) -> tuple[int, int]:
    as_2d = [(1,) * (2 - len(l.spatial)) + l.spatial if l.spatial else (1, 1) for l in layers]
    needed = (max(s[0] for s in as_2d), max(s[1] for s in as_2d))
    if window is None:
        return needed
    window = tuple(int(w) for w in window)
    if len(window) != 2 or window[0] < needed[0] or window[1] < needed[1]:
        big = [l.name for l, s in zip(layers, as_2d) if s[0] > window[0] or s[1] > window[1]]
        raise ValueError(
            f"graph_spec: kernel window {window} is smaller than the kernels of layers {big} (need at least {needed})."
        )
    return window


def _kernel_mask(layer: LayerSpec, window: tuple[int, int]) -> np.ndarray:
    spatial = (1,) * (2 - len(layer.spatial)) + layer.spatial if layer.spatial else (1, 1)
    mask = np.zeros(window, bool)
    top, left = (window[0] - spatial[0]) // 2, (window[1] - spatial[1]) // 2
    mask[top : top + spatial[0], left : left + spatial[1]] = True
    return mask.reshape(-1)


def _chains(prev: LayerSpec, layer: LayerSpec) -> bool:
    return prev.fan_out == layer.fan_in and not (prev.kind == "dense" and layer.kind == "conv")


def _check_chaining(layers: Sequence[LayerSpec]) -> None:
    for prev, layer in zip(layers, layers[1:]):
        if prev.fan_out != layer.fan_in:
            raise ValueError(
                f"graph_spec: layer {layer.name!r} takes {layer.fan_in} inputs but the layer before it, "
                f"{prev.name!r}, has {prev.fan_out} outputs. Pass order=[...] with the layer paths in forward "
                "order if the natural order of the names is not the forward order."
            )
        if prev.kind == "dense" and layer.kind == "conv":
            raise ValueError(
                f"graph_spec: conv layer {layer.name!r} follows dense layer {prev.name!r}; only "
                "conv layers followed by (global pooling and) dense layers are supported."
            )


def _order_layers(groups: dict, order, unplaced: dict, strict: bool) -> list[tuple]:
    if order is None:
        return sorted(groups, key=_natural_key)
    by_name = {path_to_str(p): p for p in groups}
    wanted = [path_to_str(o) if not isinstance(o, str) else o for o in order]
    unknown = [w for w in wanted if w not in by_name]
    missing = [n for n in by_name if n not in wanted]
    if unknown or (missing and strict):
        raise ValueError(
            f"graph_spec: order= names unknown layers {unknown} and leaves out {missing}; "
            f"the layers are {sorted(by_name)}."
        )
    for name in missing:
        _reject(unplaced, groups[by_name[name]].values(), f"graph_spec: layer {name!r} is not named in order=.", strict)
    return [by_name[w] for w in wanted]


def _place_layers(ordered: list[tuple], groups: dict, shapes: list[tuple], unplaced: dict, strict: bool) -> list:
    """The layers that chain into a feed-forward graph; each other layer is rejected whole.

    Under ``strict`` every layer must chain with the one before it. Otherwise the chain (in ``order``) with the
    most kernel parameters wins, so a stray layer (an attention projection whose 3-D kernel reads as a 1-D
    conv, a layer off the main path) is left out rather than cutting the network short.
    """
    candidates = []
    for parent in ordered:
        try:
            candidates.append(_layer_from_shapes(parent, groups[parent], shapes, "linear"))
        except ValueError as error:
            _reject(unplaced, groups[parent].values(), str(error), strict)
    if strict:
        _check_chaining(candidates)
        return candidates
    chain = _heaviest_chain(candidates, shapes)
    for layer in candidates:
        if layer not in chain:
            message = f"graph_spec: layer {layer.name!r} is not on the longest chain of Dense/Conv layers."
            _reject(unplaced, groups[layer.path].values(), message, strict)
    return chain


def _heaviest_chain(layers: list[LayerSpec], shapes: list[tuple]) -> list[LayerSpec]:
    """The subsequence of ``layers`` in which each layer feeds the next, with the most kernel parameters."""
    size = [int(np.prod(shapes[layer.kernel_leaf])) for layer in layers]
    best, previous = list(size), [None] * len(layers)
    for i, layer in enumerate(layers):
        for j in range(i):
            if _chains(layers[j], layer) and best[j] + size[i] > best[i]:
                best[i], previous[i] = best[j] + size[i], j
    chain, i = [], int(np.argmax(best)) if layers else None
    while i is not None:
        chain.append(layers[i])
        i = previous[i]
    return chain[::-1]


def _warn_unplaced(unplaced: dict[int, str], paths: list[tuple]) -> None:
    names = ", ".join(repr(path_to_str(paths[i])) for i in sorted(unplaced))
    warnings.warn(
        f"graph_spec: {len(unplaced)} parameter(s) are not part of the neural graph and are stepped as coordinates "
        f"without message passing (the per-parameter encoder and decoder, global features and the mean graph "
        f"state only): {names}. Pass strict=True to refuse them instead.",
        UnplacedParametersWarning,
        stacklevel=3,
    )


def graph_spec(
    params, *, activations=None, order=None, window=None, strict=False, apply_fn=None, example_input=None
) -> GraphSpec:
    """Infers the neural graph of a model from its parameter pytree, or from its computation.

    Without ``apply_fn``, the Dense/Conv layers (``kernel`` and ``bias`` leaves) are read in ``order`` and
    chained (each layer's inputs are the previous one's outputs). Layers off the chain with the most kernel
    parameters, and every other parameter (``LayerNorm`` scales, ``Embed`` tables, attention projections, ...),
    are *unplaced*: listed in ``GraphSpec.unplaced`` and named in one ``UnplacedParametersWarning``.

    With ``apply_fn`` and ``example_input``, the model's jaxpr is read once (shapes only): the layers in the order
    it runs them, residual connections (additions of two neuron layers) as identity edges, normalisation scales
    and shifts and attention biases as parameters of the neurons they act on, attention modules as two layers
    (query/key/value weights as the three cells of each edge, then the output projection), a position embedding
    as extra input neurons (see the module docstring). What it cannot place stays unplaced, as above.

    Args:
      params: Flax Linen variables (``{'params': {'Dense_0': {'kernel', 'bias'}, ...}}``), a Flax NNX
        ``nnx.State`` of ``nnx.Param`` s, or any pytree whose leaves are named ``kernel`` / ``bias``. Only
        shapes are read (arrays, tracers and ``jax.ShapeDtypeStruct`` all work).
      activations: one name for all hidden layers, or one name per layer (last usually ``'linear'``); read from
        the computation, attention layers may be left out of the list (they are ``'linear'``).
        Default: ReLU between layers, linear output.
      order: layer paths (``'params/Conv_0'`` strings or key tuples) in forward order. Default: the natural
        order of the paths (``Dense_2`` before ``Dense_10``), or with ``apply_fn`` the computation's order.
      window: 2-D ``(h, w)`` window conv kernels are padded to; default the largest kernel in the network.
        Fix it to make networks with different kernel sizes share edge-feature shapes.
      strict: raise a ValueError naming the first parameter that cannot be placed instead of warning.
      apply_fn, example_input: the model's ``apply_fn(params, inputs)`` and an input batch, to read the graph
        from its computation (traced once, shapes only; see ``l2o_jax.graphs.trace``).

    Returns:
      The static ``GraphSpec``.

    Raises:
      ValueError: when no Dense/Conv layer can be placed, or ``order`` names unknown layers; with ``strict``,
        naming the parameter path, for leaves that cannot be placed, kernels that are neither dense nor
        1-D/2-D conv, biases that do not fit their kernel, or layers that do not chain.

    Example:
      >>> import jax, flax.linen as nn
      >>> params = nn.Dense(3).init(jax.random.key(0), jax.numpy.ones((1, 4)))
      >>> graph_spec(params).widths
      (4, 3)
      >>> model, x = nn.Sequential([nn.Dense(3), nn.LayerNorm()]), jax.numpy.ones((1, 4))
      >>> graph_spec(model.init(jax.random.key(0), x)).unplaced_paths   # with an UnplacedParametersWarning
      ('params/layers_1/bias', 'params/layers_1/scale')
      >>> graph_spec(model.init(jax.random.key(0), x), apply_fn=model.apply, example_input=x).neuron_params
      ((2, 1, 'shift'), (3, 1, 'scale'))
    """
    if (apply_fn is None) != (example_input is None):
        raise ValueError("graph_spec: pass apply_fn and example_input together (to read the model's computation).")
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    if not flat:
        raise ValueError("graph_spec: the parameter pytree has no leaves.")
    paths = [_strip_variable_value(tuple(_key_name(k) for k in path)) for path, _ in flat]
    shapes = [tuple(int(d) for d in leaf.shape) for _, leaf in flat]
    dtypes = tuple(np.dtype(leaf.dtype) for _, leaf in flat)
    unplaced: dict[int, str] = {}
    pairs, neuron_params = (), ()
    if apply_fn is None:
        groups = _group_layers(paths, shapes, unplaced, strict)
        layers = _place_layers(_order_layers(groups, order, unplaced, strict), groups, shapes, unplaced, strict)
    else:
        read = _read_layers(apply_fn, params, example_input, paths, shapes, order, unplaced, strict)
        layers, pairs, neuron_params = read
        if strict and unplaced:
            raise ValueError(unplaced[min(unplaced)])
    if not layers:
        raise ValueError(
            f"graph_spec: no Dense/Conv layer to build a neural graph from; the parameters are "
            f"{[path_to_str(p) for p in paths]}."
        )
    names = _resolve_activations(activations, layers)
    layers = tuple(dataclasses.replace(layer, activation=a) for layer, a in zip(layers, names))
    if unplaced:
        _warn_unplaced(unplaced, paths)
    window = _window(layers, window)
    spec = _build_spec(layers, treedef, tuple(shapes), dtypes, tuple(paths), window, tuple(sorted(unplaced)))
    return _with_residuals(dataclasses.replace(spec, neuron_params=neuron_params), pairs)


def _attention_layers(groups: dict, shapes: list[tuple], unplaced: dict) -> list[LayerSpec]:
    """Each attention module (``query``, ``key``, ``value`` kernels ``(in, heads, head_dim)`` and an ``out`` kernel
    ``(heads, head_dim, out)`` under one parent) as two layers; its groups leave ``groups``. The query/key/value
    biases stay for the computation to place on the attention neurons."""
    layers = []
    for parent in sorted({p[:-1] for p in groups if p and p[-1] in ATTENTION_PROJECTIONS}, key=_natural_key):
        parts = [groups.get(parent + (name,), {}) for name in ATTENTION_PROJECTIONS]
        if not all("kernel" in part for part in parts):
            continue
        (q, k, v, out), qkv = [shapes[part["kernel"]] for part in parts], parts[:3]
        if len(q) != 3 or not q == k == v or len(out) != 3 or out[:2] != q[1:]:
            continue
        if "bias" in parts[3] and shapes[parts[3]["bias"]] != out[-1:]:
            continue
        width = q[1] * q[2]
        cells = tuple(part["kernel"] for part in qkv)
        layers.append(LayerSpec(parent, cells[0], None, "dense", q[0], width, (1, 3), "linear", cells, (), True))
        out_leaves = parts[3]["kernel"], parts[3].get("bias")
        layers.append(LayerSpec(parent + ("out",), *out_leaves, "dense", width, out[-1], (), "linear", attention=True))
        for name, part in zip(ATTENTION_PROJECTIONS, parts):
            del groups[parent + (name,)]
        for part in qkv:
            if "bias" in part:
                message = (
                    f"graph_spec: attention bias {path_to_str(parent)!r} is not added to its projection's outputs."
                )
                unplaced[part["bias"]] = message
    return layers


def _read_layers(apply_fn, params, example_input, paths, shapes, order, unplaced, strict):
    """The chain of layers, residual pairs and neuron parameters, read from the model's computation."""
    groups = _group_layers(paths, shapes, unplaced, False)
    candidates = _attention_layers(groups, shapes, unplaced)
    for parent in groups:
        try:
            candidates.append(_layer_from_shapes(parent, groups[parent], shapes, "linear"))
        except ValueError as error:
            _reject(unplaced, groups[parent].values(), str(error), False)
    ids = {layer.path: i for i, layer in enumerate(candidates, start=1)}
    kernels = {leaf: ids[layer.path] for layer in candidates for leaf in layer.kernel_leaves}
    computation = read_computation(apply_fn, params, example_input, kernels)
    if order is None:
        rank = {layer: r for r, layer in enumerate(computation.order)}
        ordered = sorted(candidates, key=lambda layer: rank.get(ids[layer.path], len(rank)))
    else:
        by_path = {layer.path: layer for layer in candidates}
        ordered = [by_path[p] for p in _order_layers({p: {} for p in by_path}, order, unplaced, strict)]
    chain = _heaviest_chain(ordered, shapes)
    for layer in candidates:
        if layer not in chain:
            message = f"graph_spec: layer {layer.name!r} is not on the longest chain of layers the computation runs."
            leaves = [*layer.kernel_leaves] + ([] if layer.bias_leaf is None else [layer.bias_leaf])
            _reject(unplaced, leaves, message, False)
    position = {ids[layer.path]: l for l, layer in enumerate(chain, start=1)} | {0: 0}
    reads = {position[l]: [position.get(r, -1) for r in rs] for l, rs in computation.reads.items() if l in position}
    _check_reads(chain, reads, strict)
    pairs = [(position[a], position[b]) for a, b in computation.pairs if a in position and b in position]
    chain, neuron_params = _place_neuron_params(chain, computation.uses, position, shapes, unplaced)
    return chain, pairs, neuron_params


def _place_neuron_params(chain: list, uses, position: dict, shapes: list[tuple], unplaced: dict):
    """Unplaced leaves the computation combines with one layer's outputs: one value per neuron -> neuron
    parameters; a table ``(rows, width)`` added to the first layer's outputs -> extra input neurons."""
    acts_on: dict[int, set] = {}
    for leaf, layer, op in uses:
        if leaf in unplaced and layer in position and position[layer] > 0:
            acts_on.setdefault(leaf, set()).add((position[layer], op))
    neuron_params, tables = [], []
    for leaf, places in sorted(acts_on.items()):
        if len(places) != 1:
            continue
        ((l, op),) = places
        width, shape = chain[l - 1].fan_out, shapes[leaf]
        if int(np.prod(shape)) == width:
            neuron_params.append((leaf, l, "scale" if op == "mul" else "shift"))
        elif l == 1 and op == "add" and len(shape) == 2 and shape[1] == width:
            tables.append((leaf, shape[0]))
        else:
            continue
        del unplaced[leaf]
    if tables:
        rows = sum(r for _, r in tables)
        chain = [dataclasses.replace(chain[0], fan_in=chain[0].fan_in + rows, input_tables=tuple(tables))] + chain[1:]
    return chain, tuple(neuron_params)


def _check_reads(layers: Sequence[LayerSpec], reads: dict, strict: bool) -> None:
    """The chain must be the computation's: each placed layer reads the one before it."""
    describe = lambda g: "the inputs" if g == 0 else layers[g - 1].name if g > 0 else "a layer outside the graph"
    for l, layer in enumerate(layers, start=1):
        if reads.get(l, [l - 1]) != [l - 1]:
            read = [describe(g) for g in reads[l]]
            message = (
                f"graph_spec: by the model's computation, layer {layer.name!r} reads {read}, "
                f"not {describe(l - 1)} before it in the neural graph's chain; pass order=[...] with the layers in "
                "forward order."
            )
            if strict:
                raise ValueError(message)
            warnings.warn(message, stacklevel=4)


def _with_residuals(spec: GraphSpec, pairs) -> GraphSpec:
    widths, offsets = spec.widths, spec.node_offsets
    pairs = [(a, b) for a, b in pairs if widths[a] == widths[b]]
    senders = [offsets[a] + np.arange(widths[a]) for a, _ in pairs]
    receivers = [offsets[b] + np.arange(widths[b]) for _, b in pairs]
    as_i32 = lambda parts: np.concatenate(parts or [np.zeros(0)]).astype(np.int32)
    return dataclasses.replace(spec, residual_senders=as_i32(senders), residual_receivers=as_i32(receivers))


def _build_spec(layers, treedef, shapes, dtypes, paths, window, unplaced) -> GraphSpec:
    widths = (layers[0].fan_in,) + tuple(layer.fan_out for layer in layers)
    offsets = np.concatenate([[0], np.cumsum(widths)])
    n_layers = len(layers)
    senders, receivers, edge_layer, edge_kind = [], [], [], []
    for l, layer in enumerate(layers, start=1):
        src = offsets[l - 1] + np.arange(layer.fan_in)
        dst = offsets[l] + np.arange(layer.fan_out)
        senders.append(np.repeat(src, layer.fan_out))
        receivers.append(np.tile(dst, layer.fan_in))
        edge_layer.append(np.full(layer.fan_in * layer.fan_out, l))
        edge_kind.append(np.full(layer.fan_in * layer.fan_out, LAYER_KINDS.index(layer.kind)))
    node_layer = np.concatenate([np.full(w, l) for l, w in enumerate(widths)])
    role = np.full(len(node_layer), ROLE_HIDDEN)
    role[node_layer == 0] = ROLE_INPUT
    role[node_layer == n_layers] = ROLE_OUTPUT
    position = np.concatenate([np.arange(w) if l in (0, n_layers) else np.full(w, -1) for l, w in enumerate(widths)])
    node_act = np.concatenate(
        [np.full(widths[0], _category("linear"))]
        + [np.full(layer.fan_out, _category(layer.activation)) for layer in layers]
    )
    as_i32 = lambda parts: np.concatenate(parts).astype(np.int32)
    return GraphSpec(
        layers=layers,
        treedef=treedef,
        leaf_shapes=shapes,
        leaf_dtypes=dtypes,
        leaf_paths=paths,
        window=window,
        senders=as_i32(senders),
        receivers=as_i32(receivers),
        node_layer=node_layer.astype(np.int32),
        node_role=role.astype(np.int32),
        node_position=position.astype(np.int32),
        node_activation=node_act.astype(np.int32),
        edge_layer=as_i32(edge_layer),
        edge_kind=as_i32(edge_kind),
        kernel_mask=np.stack([_kernel_mask(layer, window) for layer in layers]),
        unplaced=unplaced,
    )
