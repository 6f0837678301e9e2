"""Reading a network's layers from its parameters' names and shapes: grouping leaves into layers, their
activations and order, and the chain of Dense/Conv layers; what does not fit is recorded as unplaced."""

from __future__ import annotations

import re
import warnings
from typing import Any
from typing import Sequence

import numpy as np

from l2o_jax.graphs.structure import ACTIVATION_CATEGORIES
from l2o_jax.graphs.structure import ATTENTION_PROJECTIONS
from l2o_jax.graphs.structure import LayerSpec
from l2o_jax.graphs.structure import UnplacedParametersWarning
from l2o_jax.graphs.structure import path_to_str


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
