"""Residual connections read from a model's computation: which neuron layers its jaxpr adds together.

``graph_spec(params, apply_fn=model.apply, example_input=x)`` traces the model once (shapes only) and follows
every value computed from the input: a contraction (``dot_general``, ``conv_general_dilated``) with a placed
layer's kernel makes it that layer's neurons; other operations keep the neuron layer of their input. An
addition of two values of different neuron layers of the same width is a residual connection: neuron ``k`` of
the earlier layer feeds neuron ``k`` of the later one with a fixed weight of one (Kofinas et al., 2024).
Everything here is numpy and Python at trace time.
"""

from __future__ import annotations

import jax
import numpy as np

_CONTRACTIONS = ("dot_general", "conv_general_dilated")
_ADDITIONS = ("add", "add_any")


def _sub_jaxpr(eqn):
    """The inner jaxpr of a call-like equation (jit, custom_jvp/vjp, remat) that takes its inputs as they are."""
    for value in eqn.params.values():
        inner = getattr(value, "jaxpr", value)
        if hasattr(inner, "eqns") and len(inner.invars) == len(eqn.invars) and len(inner.outvars) == len(eqn.outvars):
            return inner
    return None


def _walk(jaxpr, tags: dict, pairs: set, reads: dict) -> list:
    """Tags every value ``('neurons', layer)`` or ``('kernel', layer)``; collects residual layer pairs and the
    neuron layers each placed layer reads."""
    tag = lambda v: None if hasattr(v, "val") else tags.get(v)  # literals carry a value, variables do not
    for eqn in jaxpr.eqns:
        ins = [tag(v) for v in eqn.invars]
        layers = sorted({t[1] for t in ins if t and t[0] == "neurons"})
        kernels = [t[1] for t in ins if t and t[0] == "kernel"]
        inner = _sub_jaxpr(eqn)
        if inner is not None:
            out = _walk(inner, {v: t for v, t in zip(inner.invars, ins) if t}, pairs, reads)
        elif eqn.primitive.name in _CONTRACTIONS and kernels and layers:
            reads.setdefault(kernels[0], set()).update(layers)
            out = [("neurons", kernels[0])] * len(eqn.outvars)
        elif layers:
            if eqn.primitive.name in _ADDITIONS and len(layers) == 2:
                pairs.add(tuple(layers))
            out = [("neurons", layers[-1])] * len(eqn.outvars)
        elif kernels and len(eqn.invars) == 1:  # reshapes, casts and slices of a kernel
            out = [("kernel", kernels[0])] * len(eqn.outvars)
        else:
            out = [None] * len(eqn.outvars)
        tags.update({v: t for v, t in zip(eqn.outvars, out) if t})
    return [tag(v) for v in jaxpr.outvars]


def read_connections(apply_fn, params, example_input, kernel_leaves: dict[int, int]) -> tuple[tuple, dict]:
    """Which neuron layers (0 = inputs, ``l`` = outputs of the ``l``-th placed layer) the model adds together, and
    which ones each placed layer reads.

    Args:
      apply_fn: ``apply_fn(params, inputs) -> outputs``, e.g. ``model.apply``.
      params: the parameter pytree (only shapes and dtypes are read).
      example_input: an input batch (only its shape and dtype are read).
      kernel_leaves: flattened-leaf index of each placed layer's kernel -> its 1-based layer index.

    Returns:
      ``(pairs, reads)``: sorted ``(earlier, later)`` residual pairs, and ``{layer: sorted neuron layers it reads}``.

    Example:
      >>> read_connections(model.apply, params, x, {1: 1, 3: 2, 5: 3, 7: 4})   # h = h + Dense(relu(Dense(h)))
      (((1, 3),), {1: [0], 2: [1], 3: [2], 4: [3]})
    """
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), (params, example_input))
    closed = jax.make_jaxpr(apply_fn)(*shapes)
    invars = closed.jaxpr.invars
    num_leaves = len(jax.tree.leaves(params))
    tags = {invars[i]: ("kernel", layer) for i, layer in kernel_leaves.items()}
    tags.update({v: ("neurons", 0) for v in invars[num_leaves:]})
    pairs: set = set()
    reads: dict = {}
    _walk(closed.jaxpr, tags, pairs, reads)
    return tuple(sorted(pairs)), {layer: sorted(groups) for layer, groups in sorted(reads.items())}
