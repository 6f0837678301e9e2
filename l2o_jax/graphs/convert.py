"""Per-step conversions between parameter pytrees and neural-graph arrays: reshapes, pads and slices only."""

from __future__ import annotations

import functools
import weakref
from typing import Sequence

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from l2o_jax.graphs.spec import GraphSpec
from l2o_jax.graphs.spec import graph_spec


def _spatial_2d(layer) -> tuple[int, int]:
    return ((1,) * (2 - len(layer.spatial)) + layer.spatial) if layer.spatial else (1, 1)


def _layer_block(leaves, layer, extra: tuple) -> jax.Array:
    """A layer's edge values as ``(kh, kw, fan_in, fan_out[, C])``: the kernel (dense kernels are 1x1; an attention
    layer's query, key and value kernels are the 1x3 cells), then the rows of its embedding tables (centre cell)."""
    rows, out = layer.kernel_rows, layer.fan_out
    if layer.cell_leaves:
        block = jnp.stack([leaves[i].reshape((rows, out) + extra) for i in layer.cell_leaves])[None]
    else:
        block = leaves[layer.kernel_leaf].reshape(_spatial_2d(layer) + (rows, out) + extra)
    if not layer.input_tables:
        return block
    h, w = block.shape[:2]
    tables = jnp.concatenate([leaves[i].reshape((n, out) + extra) for i, n in layer.input_tables])
    centre = jnp.zeros((h, w) + tables.shape, tables.dtype).at[h // 2, w // 2].set(tables)
    return jnp.concatenate([block, centre.astype(block.dtype)], axis=2)


def _has_channels(leaves, spec: GraphSpec) -> bool:
    first = leaves[spec.layers[0].kernel_leaf]
    expected = spec.leaf_shapes[spec.layers[0].kernel_leaf]
    if first.shape == expected:
        return False
    if first.shape[:-1] == expected:
        return True
    raise ValueError(
        f"params_to_graph: leaf {'/'.join(map(str, spec.leaf_paths[spec.layers[0].kernel_leaf]))!r} has "
        f"shape {first.shape}; expected {expected} or {expected} + (channels,)."
    )


def _check_structure(tree, spec: GraphSpec) -> list:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    if treedef != spec.treedef:
        raise ValueError(
            f"params_to_graph: the pytree's structure {treedef} differs from the structure the "
            f"GraphSpec was built for {spec.treedef}."
        )
    return leaves


def tree_to_graph_arrays(tree, spec: GraphSpec) -> tuple[jax.Array, jax.Array]:
    """Maps a parameter-shaped pytree to ``(edge_values, node_values)``.

    Args:
      tree: pytree with the structure of the spec's parameters. Leaves have the parameters' shapes, or those
        shapes plus one trailing channel axis ``C`` (a stack of per-parameter features, see ``stack_trees``).
      spec: the architecture's ``GraphSpec``.

    Returns:
      ``edge_values`` of shape ``(n_edge, kernel_size[, C])`` (conv kernels zero-padded, centred, to the
      spec's window and flattened) and ``node_values`` of shape ``(n_node[, C])`` (biases; 0 for input
      neurons and bias-free layers).

    Example:
      >>> edges, nodes = tree_to_graph_arrays(params, graph_spec(params))
    """
    leaves, extra, dtype = _leaves_channels_dtype(tree, spec)
    kh, kw = spec.window
    edge_blocks = []
    for layer in spec.layers:
        kernel = _layer_block(leaves, layer, extra)
        h, w = kernel.shape[:2]
        top, left = (kh - h) // 2, (kw - w) // 2
        pad = [(top, kh - h - top), (left, kw - w - left), (0, 0), (0, 0)] + [(0, 0)] * len(extra)
        kernel = jnp.pad(kernel.astype(dtype), pad)
        kernel = jnp.moveaxis(kernel, (0, 1), (2, 3))  # (in, out, kh, kw[, C])
        edge_blocks.append(kernel.reshape((layer.fan_in * layer.fan_out, kh * kw) + extra))
    return jnp.concatenate(edge_blocks), _node_values(leaves, spec, extra, dtype)


def node_values(tree, spec: GraphSpec) -> jax.Array:
    """``tree_to_graph_arrays``'s node values alone (the biases), without building the edges.

    Args:
      tree: as for ``tree_to_graph_arrays``.
      spec: the architecture's ``GraphSpec``.

    Returns:
      ``(n_node[, C])``: each neuron's bias, 0 for input neurons and bias-free layers.

    Example:
      >>> node_values(params, graph_spec(params)).shape   # (n_node,)
    """
    leaves, extra, dtype = _leaves_channels_dtype(tree, spec)
    return _node_values(leaves, spec, extra, dtype)


def _node_values(leaves, spec: GraphSpec, extra: tuple, dtype) -> jax.Array:
    blocks = [jnp.zeros((spec.layers[0].fan_in,) + extra, dtype)]
    for layer in spec.layers:
        bias = leaves[layer.bias_leaf] if layer.bias_leaf is not None else jnp.zeros((layer.fan_out,) + extra)
        blocks.append(bias.astype(dtype))
    return jnp.concatenate(blocks)


def _leaves_channels_dtype(tree, spec: GraphSpec) -> tuple[list, tuple, jnp.dtype]:
    """The tree's leaves (structure checked), its trailing channel axis (``()`` or ``(C,)``) and the common dtype."""
    leaves = _check_structure(tree, spec)
    extra = leaves[spec.layers[0].kernel_leaf].shape[-1:] if _has_channels(leaves, spec) else ()
    return leaves, extra, jnp.result_type(*[leaves[layer.kernel_leaf] for layer in spec.layers])


def _cell_leaves(spec: GraphSpec) -> list[int]:
    """The leaves whose values the edges carry (kernels, attention kernels, embedding tables), in layer order."""
    return [i for layer in spec.layers for i in layer.kernel_leaves + tuple(leaf for leaf, _ in layer.input_tables)]


def _per_spec(compute):
    """Decorates ``compute(spec)`` to run once per ``GraphSpec`` (kept while the spec lives): a training step reads
    and writes the cells with these index arrays."""
    cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @functools.wraps(compute)
    def cached(spec: GraphSpec):
        if spec not in cache:
            cache[spec] = compute(spec)
        return cache[spec]

    return cached


@_per_spec
def _cell_sources(spec: GraphSpec) -> np.ndarray:
    """``int[n_cells]``: for each real cell (``spec.edge_kernel_mask``, edge-major), 1 + its parameter's index in the
    concatenation of the ``_cell_leaves``, or 0 for a window cell with no parameter (an embedding row's edge in a
    conv layer has only the centre one). Read from ``tree_to_graph_arrays`` itself, so the two layouts agree."""
    return _trace_cell_sources(spec)


@_per_spec
def _cell_rows(spec: GraphSpec) -> np.ndarray:
    """``int[n_kernel_parameters]``: the cell row that holds each parameter of the ``_cell_leaves``' concatenation
    (``_cell_sources`` inverted)."""
    sources = _cell_sources(spec)
    held = np.flatnonzero(sources)  # the rows that hold a parameter, each exactly one
    rows = np.empty(len(held), np.int64)
    rows[sources[held] - 1] = held
    return rows


def _trace_cell_sources(spec: GraphSpec) -> np.ndarray:
    leaves, offset = [np.zeros(shape, np.int32) for shape in spec.leaf_shapes], 1
    for i in _cell_leaves(spec):
        size = int(np.prod(spec.leaf_shapes[i]))
        leaves[i] = np.arange(offset, offset + size, dtype=np.int32).reshape(spec.leaf_shapes[i])
        offset += size
    with jax.ensure_compile_time_eval():  # numpy constants, also while a caller is being traced
        edges, _ = tree_to_graph_arrays(jax.tree_util.tree_unflatten(spec.treedef, leaves), spec)
    return np.asarray(edges).reshape(-1)[spec.real_cells]


def _take(values: jax.Array, rows: np.ndarray) -> jax.Array:
    """``values[rows]``, without a gather when ``rows`` picks every row but the first, in order (an MLP's cells)."""
    if np.array_equal(rows, np.arange(len(values) - len(rows), len(values))):
        return values[len(values) - len(rows) :]
    return values[rows]


def cell_values(tree, spec: GraphSpec) -> jax.Array:
    """The values of the real kernel cells as rows: ``tree_to_graph_arrays``'s edge values without the padding.

    Args:
      tree: as for ``tree_to_graph_arrays``.
      spec: the architecture's ``GraphSpec``.

    Returns:
      ``(n_cells[, C])`` with ``n_cells = spec.edge_kernel_mask.sum()``: row ``r`` is cell ``real[r] % kernel_size``
      of edge ``real[r] // kernel_size``, ``real = spec.real_cells``. Gathered straight from
      the leaves, without building the zero-padded ``(n_edge, kernel_size[, C])`` array.

    Example:
      >>> cells = cell_values(features, spec)   # the rows a graph network encodes, one per kernel value
    """
    leaves, extra, dtype = _leaves_channels_dtype(tree, spec)
    parts = [jnp.zeros((1,) + extra, dtype)] + [
        leaves[i].reshape((-1,) + extra).astype(dtype) for i in _cell_leaves(spec)
    ]
    return _take(jnp.concatenate(parts), _cell_sources(spec))


def unplaced_values(tree, spec: GraphSpec) -> jax.Array:
    """The leaves the graph does not place (``spec.unplaced``), flattened in leaf order into one array.

    Args:
      tree: as for ``tree_to_graph_arrays``.
      spec: the architecture's ``GraphSpec``.

    Returns:
      ``(spec.unplaced_size[, C])``; empty when every parameter is in the graph.

    Example:
      >>> spec = graph_spec(params)              # params with a LayerNorm
      >>> unplaced_values(params, spec).shape    # (2 * features,): its scale and bias
    """
    return _flat_leaves(tree, spec, spec.unplaced)


def neuron_param_values(tree, spec: GraphSpec) -> jax.Array:
    """The neuron parameters (``spec.neuron_params``: normalisation scales and shifts, attention biases), flattened
    into one array in their order; element ``i`` acts on neuron ``spec.neuron_param_nodes[i]``.

    Args:
      tree: as for ``tree_to_graph_arrays``.
      spec: the architecture's ``GraphSpec``.

    Returns:
      ``(spec.neuron_param_size[, C])``; empty when the graph has none.

    Example:
      >>> spec = graph_spec(params, apply_fn=model.apply, example_input=x)   # a model with a LayerNorm
      >>> neuron_param_values(params, spec).shape    # (2 * features,): its scale and shift
    """
    return _flat_leaves(tree, spec, [leaf for leaf, _, _ in spec.neuron_params])


def _flat_leaves(tree, spec: GraphSpec, indices) -> jax.Array:
    leaves, extra, dtype = _leaves_channels_dtype(tree, spec)
    parts = [leaves[i].reshape((-1,) + extra).astype(dtype) for i in indices]
    return jnp.concatenate(parts) if parts else jnp.zeros((0,) + extra, dtype)


def graph_to_params(edge_values: jax.Array, node_values: jax.Array, spec: GraphSpec, unplaced=None, neuron_params=None):
    """Maps edge/node values back to a pytree with the parameters' structure and dtypes.

    The exact inverse of ``tree_to_graph_arrays`` (and ``unplaced_values``, ``neuron_param_values``) on the real
    (unpadded) kernel cells; values written to padding cells and to input neurons are dropped.

    Args:
      edge_values: ``(n_edge, kernel_size[, C])``.
      node_values: ``(n_node[, C])``.
      spec: the architecture's ``GraphSpec``.
      unplaced: ``(spec.unplaced_size[, C])`` values of the parameters outside the graph; needed when the
        spec has any.
      neuron_params: ``(spec.neuron_param_size[, C])`` values of the neuron parameters; needed when the spec has
        any.

    Returns:
      A pytree like the parameters (leaves get the trailing ``C`` axis when the inputs have it).

    Example:
      >>> updates = graph_to_params(edge_out, node_out, spec)
    """
    extra = edge_values.shape[2:]
    if edge_values.shape[:2] != (spec.n_edge, spec.kernel_size) or node_values.shape[:1] != (spec.n_node,):
        raise ValueError(
            f"graph_to_params: got edges {edge_values.shape} and nodes {node_values.shape}, expected "
            f"({spec.n_edge}, {spec.kernel_size}, ...) and ({spec.n_node}, ...) for {spec}."
        )
    cells = edge_values.reshape((-1,) + extra)[spec.real_cells]
    return cells_to_params(cells, node_values, spec, unplaced, neuron_params)


def cells_to_params(cell_values: jax.Array, node_values: jax.Array, spec: GraphSpec, unplaced=None, neuron_params=None):
    """``graph_to_params`` from the real kernel cells' rows (``cell_values``'s layout) instead of padded edges.

    Args:
      cell_values: ``(spec.edge_kernel_mask.sum()[, C])``, rows as ``cell_values`` returns them.
      node_values, spec, unplaced, neuron_params: as for ``graph_to_params``.

    Returns:
      A pytree like the parameters; the exact inverse of ``cell_values`` on the kernels.

    Example:
      >>> updates = cells_to_params(cell_out, node_out, spec)
    """
    extra = cell_values.shape[1:]
    sources = _cell_sources(spec)
    if cell_values.shape[0] != len(sources):
        raise ValueError(f"cells_to_params: got {cell_values.shape[0]} cell rows, expected {len(sources)} for {spec}.")
    if spec.unplaced and (unplaced is None or unplaced.shape != (spec.unplaced_size,) + extra):
        got = None if unplaced is None else unplaced.shape
        raise ValueError(
            f"graph_to_params: {spec} leaves {spec.unplaced_paths} outside the graph; pass their values as "
            f"unplaced= of shape {(spec.unplaced_size,) + extra}, got {got}."
        )
    if spec.neuron_params and (neuron_params is None or neuron_params.shape != (spec.neuron_param_size,) + extra):
        got = None if neuron_params is None else neuron_params.shape
        raise ValueError(
            f"graph_to_params: {spec} has neuron parameters; pass their values as neuron_params= of shape "
            f"{(spec.neuron_param_size,) + extra}, got {got}."
        )
    kernels = _take(cell_values, _cell_rows(spec))
    leaves = [None] * len(spec.leaf_shapes)
    _fill_leaves(leaves, spec, _cell_leaves(spec), kernels, extra)
    node_off = spec.node_offsets
    for l, layer in enumerate(spec.layers):
        if layer.bias_leaf is not None:
            bias = node_values[node_off[l + 1] : node_off[l + 2]]
            leaves[layer.bias_leaf] = bias.astype(spec.leaf_dtypes[layer.bias_leaf])
    _fill_leaves(leaves, spec, spec.unplaced, unplaced, extra)
    _fill_leaves(leaves, spec, [leaf for leaf, _, _ in spec.neuron_params], neuron_params, extra)
    return jax.tree_util.tree_unflatten(spec.treedef, leaves)


def _fill_leaves(leaves: list, spec: GraphSpec, indices, values, extra: tuple) -> None:
    start = 0
    for i in indices:
        size = int(np.prod(spec.leaf_shapes[i]))
        leaves[i] = values[start : start + size].reshape(spec.leaf_shapes[i] + extra).astype(spec.leaf_dtypes[i])
        start += size


def stack_trees(trees: Sequence) -> object:
    """Stacks pytrees of the same structure along a new trailing channel axis.

    Example:
      >>> features = stack_trees([params, grads, momentum])   # leaves: param.shape + (3,)
    """
    return jax.tree.map(lambda *xs: jnp.stack(xs, axis=-1), *trees)


def params_to_graph(params, spec: GraphSpec | None = None) -> jraph.GraphsTuple:
    """Turns a parameter pytree (or a channel stack of per-parameter features) into a neural graph.

    Args:
      params: the parameters, or a pytree whose leaves carry a trailing channel axis (``stack_trees``).
      spec: the architecture's ``GraphSpec``; inferred with ``graph_spec(params)`` when omitted (only
        possible for a plain parameter tree).

    Returns:
      A single-graph ``jraph.GraphsTuple`` with
        ``nodes = {'features': (n_node[, C]), 'layer', 'role', 'position', 'activation': int32[n_node]}``,
        ``edges = {'features': (n_edge, kernel_size[, C]), 'layer', 'kind': int32[n_edge],
        'kernel_mask': bool[n_edge, kernel_size]}``, static ``senders``/``receivers`` and
        ``n_node``/``n_edge`` of shape ``(1,)``.

    Neuron parameters and unplaced parameters (``neuron_param_values``, ``unplaced_values``) are not in the graph
    tuple; residual connections are ``spec.residual_senders`` / ``residual_receivers``.

    Example:
      >>> graph = params_to_graph(params)
      >>> graph.n_edge   # sum over layers of fan_in * fan_out
    """
    spec = graph_spec(params) if spec is None else spec
    edge_values, node_values = tree_to_graph_arrays(params, spec)
    return jraph.GraphsTuple(
        nodes={
            "features": node_values,
            "layer": spec.node_layer,
            "role": spec.node_role,
            "position": spec.node_position,
            "activation": spec.node_activation,
        },
        edges={
            "features": edge_values,
            "layer": spec.edge_layer,
            "kind": spec.edge_kind,
            "kernel_mask": spec.edge_kernel_mask,
        },
        senders=spec.senders,
        receivers=spec.receivers,
        n_node=np.array([spec.n_node]),
        n_edge=np.array([spec.n_edge]),
        globals=None,
    )


def batch_graphs(
    graphs: Sequence[jraph.GraphsTuple], *, n_node: int, n_edge: int, n_graph: int | None = None
) -> tuple[jraph.GraphsTuple, dict[str, jax.Array]]:
    """Batches neural graphs of different architectures into one padded ``GraphsTuple`` of static size.

    Graphs must share the edge-feature shape (build their specs with the same ``window``). Padding follows
    jraph's convention: one extra graph holds the padding nodes and edges.

    Args:
      graphs: single graphs from ``params_to_graph``.
      n_node, n_edge: static budgets, larger than the totals (at least one padding node is needed).
      n_graph: static graph budget; default ``len(graphs) + 1``.

    Returns:
      ``(padded_graph, masks)`` with boolean ``masks['node']``, ``masks['edge']``, ``masks['graph']``.

    Example:
      >>> batched, masks = batch_graphs([g1, g2], n_node=512, n_edge=8192)
    """
    shapes = {g.edges["features"].shape[1:] for g in graphs}
    if len(shapes) != 1:
        raise ValueError(
            f"batch_graphs: edge features differ in shape {sorted(shapes)}; build every spec with "
            "the same window=(h, w)."
        )
    n_graph = len(graphs) + 1 if n_graph is None else n_graph
    total_nodes = sum(int(g.n_node.sum()) for g in graphs)
    total_edges = sum(int(g.n_edge.sum()) for g in graphs)
    if total_nodes >= n_node or total_edges > n_edge or len(graphs) >= n_graph:
        raise ValueError(
            f"batch_graphs: budgets n_node={n_node}, n_edge={n_edge}, n_graph={n_graph} are too "
            f"small for {len(graphs)} graphs with {total_nodes} nodes and {total_edges} edges "
            "(one padding node and graph are needed)."
        )
    padded = jraph.pad_with_graphs(jraph.batch(list(graphs)), n_node=n_node, n_edge=n_edge, n_graph=n_graph)
    masks = {
        "node": jraph.get_node_padding_mask(padded),
        "edge": jraph.get_edge_padding_mask(padded),
        "graph": jraph.get_graph_padding_mask(padded),
    }
    return padded, masks
