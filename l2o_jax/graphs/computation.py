"""Reading a network's layers from its computation (``graph_spec(..., apply_fn=, example_input=)``): attention
modules, neuron parameters (normalisation scales and shifts), residual edges."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Sequence

import numpy as np

from l2o_jax.graphs.parameters import _group_layers
from l2o_jax.graphs.parameters import _heaviest_chain
from l2o_jax.graphs.parameters import _layer_from_shapes
from l2o_jax.graphs.parameters import _natural_key
from l2o_jax.graphs.parameters import _order_layers
from l2o_jax.graphs.parameters import _reject
from l2o_jax.graphs.structure import ATTENTION_PROJECTIONS
from l2o_jax.graphs.structure import GraphSpec
from l2o_jax.graphs.structure import LayerSpec
from l2o_jax.graphs.structure import path_to_str
from l2o_jax.graphs.trace import read_computation


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
    read = tuple("linear" if layer.attention else computation.activations.get(ids[layer.path]) for layer in chain)
    return chain, pairs, neuron_params, read


def _read_activations(read: tuple, default: tuple, layers: Sequence[LayerSpec]) -> tuple[str, ...]:
    """The activations read from the computation; where one could not be read, the default, with one warning."""
    unread = [layer.name for layer, name in zip(layers, read) if name is None]
    if unread:
        warnings.warn(
            f"graph_spec: could not read the activation after layers {unread} from the model's computation (an "
            "unknown nonlinearity, or different ones where different layers read its outputs); using the default "
            "(ReLU between layers, linear output) for them. Pass activations=[...] to set them.",
            stacklevel=3,
        )
    return tuple(d if name is None else name for name, d in zip(read, default))


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
