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

import jax
import numpy as np

from l2o_jax.graphs.computation import _read_activations
from l2o_jax.graphs.computation import _read_layers
from l2o_jax.graphs.computation import _with_residuals
from l2o_jax.graphs.parameters import _category
from l2o_jax.graphs.parameters import _group_layers
from l2o_jax.graphs.parameters import _kernel_mask
from l2o_jax.graphs.parameters import _key_name
from l2o_jax.graphs.parameters import _order_layers
from l2o_jax.graphs.parameters import _place_layers
from l2o_jax.graphs.parameters import _resolve_activations
from l2o_jax.graphs.parameters import _strip_variable_value
from l2o_jax.graphs.parameters import _warn_unplaced
from l2o_jax.graphs.parameters import _window
from l2o_jax.graphs.structure import ACTIVATION_CATEGORIES  # noqa: F401  (the package's names)
from l2o_jax.graphs.structure import LAYER_KINDS  # noqa: F401
from l2o_jax.graphs.structure import ROLE_HIDDEN  # noqa: F401
from l2o_jax.graphs.structure import ROLE_INPUT  # noqa: F401
from l2o_jax.graphs.structure import ROLE_OUTPUT  # noqa: F401
from l2o_jax.graphs.structure import GraphSpec
from l2o_jax.graphs.structure import LayerSpec  # noqa: F401
from l2o_jax.graphs.structure import UnplacedParametersWarning  # noqa: F401
from l2o_jax.graphs.structure import path_to_str


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
    as extra input neurons (see the module docstring), and the activation after each layer: the elementwise
    nonlinearity its outputs go through before the next layer (or the model's outputs) reads them, after any
    normalisation (tanh, sigmoid, ReLU, GELU in its tanh or erf form, swish/SiLU, softplus; linear when none).
    What it cannot place stays unplaced, as above.

    Args:
      params: Flax Linen variables (``{'params': {'Dense_0': {'kernel', 'bias'}, ...}}``), a Flax NNX
        ``nnx.State`` of ``nnx.Param`` s, or any pytree whose leaves are named ``kernel`` / ``bias``. Only
        shapes are read (arrays, tracers and ``jax.ShapeDtypeStruct`` all work).
      activations: one name for all hidden layers, or one name per layer (last usually ``'linear'``); read from
        the computation, attention layers may be left out of the list (they are ``'linear'``).
        Default: with ``apply_fn``, read from the computation (when a layer's cannot be read, a warning names the
        layer and it gets the default below); otherwise ReLU between layers, linear output. When given, these
        win over what the computation says.
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
    pairs, neuron_params, read = (), (), None
    if apply_fn is None:
        groups = _group_layers(paths, shapes, unplaced, strict)
        layers = _place_layers(_order_layers(groups, order, unplaced, strict), groups, shapes, unplaced, strict)
    else:
        layers, pairs, neuron_params, read = _read_layers(
            apply_fn, params, example_input, paths, shapes, order, unplaced, strict
        )
        if strict and unplaced:
            raise ValueError(unplaced[min(unplaced)])
    if not layers:
        raise ValueError(
            f"graph_spec: no Dense/Conv layer to build a neural graph from; the parameters are "
            f"{[path_to_str(p) for p in paths]}."
        )
    names = _resolve_activations(activations, layers)
    if activations is None and read is not None:
        names = _read_activations(read, names, layers)
    layers = tuple(dataclasses.replace(layer, activation=a) for layer, a in zip(layers, names))
    if unplaced:
        _warn_unplaced(unplaced, paths)
    window = _window(layers, window)
    spec = _build_spec(layers, treedef, tuple(shapes), dtypes, tuple(paths), window, tuple(sorted(unplaced)))
    return _with_residuals(dataclasses.replace(spec, neuron_params=neuron_params), pairs)


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
