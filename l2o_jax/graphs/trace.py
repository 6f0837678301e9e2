"""A model's neural graph read from its computation: the order of its layers, what each reads, its residual
connections, and which other parameters act on which neurons.

``graph_spec(params, apply_fn=model.apply, example_input=x)`` traces the model once (shapes only) and follows
every value computed from the input: a contraction (``dot_general``, ``conv_general_dilated``) with a layer's
kernel makes it that layer's neurons (the query, key and value projections of one attention module share one
layer, so the attention scores and their product with the values stay its neurons); other operations keep the
neuron layer of their input. An addition of two values of different neuron layers is a residual connection:
neuron ``k`` of the earlier layer feeds neuron ``k`` of the later one with a fixed weight of one (Kofinas et
al., 2024). A parameter multiplied into or added to a neuron layer's values (a normalisation's scale and shift,
an attention projection's bias, a position embedding) is recorded as acting on that layer. Everything here is
numpy and Python at trace time.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

_CONTRACTIONS = ("dot_general", "conv_general_dilated")
_ADDITIONS = ("add", "add_any")
_SHIFTS = ("add", "add_any", "sub")


class Computation(NamedTuple):
    """What a model's computation says about its layers; layer ids are those of ``read_computation``'s
    ``kernel_leaves`` (0 = the inputs).

    Attributes:
      order: layer ids in the order of their first contraction.
      pairs: sorted ``(earlier, later)`` layer pairs whose neurons are added together (residual connections).
      reads: ``{layer: sorted layer ids its contractions read}``.
      uses: ``(leaf, layer, op)`` for each other parameter leaf combined with a layer's neurons, ``op`` being
        ``'mul'`` or ``'add'``, in the order they happen.
    """

    order: tuple
    pairs: tuple
    reads: dict
    uses: tuple


def _sub_jaxpr(eqn):
    """The inner jaxpr of a call-like equation (jit, custom_jvp/vjp, remat) that takes its inputs as they are."""
    for value in eqn.params.values():
        inner = getattr(value, "jaxpr", value)
        if hasattr(inner, "eqns") and len(inner.invars) == len(eqn.invars) and len(inner.outvars) == len(eqn.outvars):
            return inner
    return None


class _Walk:
    """Tags every value ``('neurons', group)``, ``('kernel', layer)`` or ``('param', leaf)``. Neuron groups are
    numbered in the order the computation creates them (0 = inputs), so "later" means later in the forward pass."""

    def __init__(self):
        self.order: list = []  # layer id of each neuron group 1, 2, ...
        self.pairs: set = set()
        self.reads: dict = {}
        self.uses: list = []

    def group(self, layer) -> int:
        if layer not in self.order:
            self.order.append(layer)
        return self.order.index(layer) + 1

    def walk(self, jaxpr, tags: dict) -> list:
        tag = lambda v: None if hasattr(v, "val") else tags.get(v)  # literals carry a value, variables do not
        for eqn in jaxpr.eqns:
            ins = [tag(v) for v in eqn.invars]
            inner = _sub_jaxpr(eqn)
            if inner is not None:
                out = self.walk(inner, {v: t for v, t in zip(inner.invars, ins) if t})
            else:
                out = [self.step(eqn.primitive.name, ins)] * len(eqn.outvars)
            tags.update({v: t for v, t in zip(eqn.outvars, out) if t})
        return [tag(v) for v in jaxpr.outvars]

    def step(self, primitive: str, ins: list):
        groups = sorted({t[1] for t in ins if t and t[0] == "neurons"})
        kernels = [t[1] for t in ins if t and t[0] == "kernel"]
        params = [t[1] for t in ins if t and t[0] == "param"]
        if primitive in _CONTRACTIONS and kernels and groups:
            group = self.group(kernels[0])
            self.reads.setdefault(group, set()).update(groups)
            return ("neurons", group)
        if groups:
            if primitive in _ADDITIONS and len(groups) == 2:
                self.pairs.add(tuple(groups))
            if primitive in _SHIFTS + ("mul",):
                self.uses.extend((leaf, groups[-1], "mul" if primitive == "mul" else "add") for leaf in params)
            return ("neurons", groups[-1])
        tagged = [t for t in ins if t]
        if len(set(tagged)) == 1 and tagged[0][0] in ("kernel", "param"):  # reshapes, casts, slices, gathers
            return tagged[0]
        return None


def read_computation(apply_fn, params, example_input, kernel_leaves: dict[int, int]) -> Computation:
    """Reads a model's layers from its computation (see the module docstring).

    Args:
      apply_fn: ``apply_fn(params, inputs) -> outputs``, e.g. ``model.apply``.
      params: the parameter pytree (only shapes and dtypes are read).
      example_input: an input batch (only its shape and dtype are read).
      kernel_leaves: flattened-leaf index of each kernel -> the id (>= 1) of its layer; kernels that share an id
        (an attention module's query, key and value) make one layer of neurons.

    Returns:
      A ``Computation`` in those layer ids.

    Example:
      >>> read_computation(model.apply, params, x, {1: 1, 3: 2, 5: 3, 7: 4}).pairs  # h = h + Dense(relu(Dense(h)))
      ((1, 3),)
    """
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), (params, example_input))
    closed = jax.make_jaxpr(apply_fn)(*shapes)
    invars = closed.jaxpr.invars
    num_leaves = len(jax.tree.leaves(params))
    tags = {invars[i]: ("kernel", kernel_leaves[i]) if i in kernel_leaves else ("param", i) for i in range(num_leaves)}
    tags.update({v: ("neurons", 0) for v in invars[num_leaves:]})
    walk = _Walk()
    walk.walk(closed.jaxpr, tags)
    layer = [0] + walk.order  # neuron group -> layer id
    return Computation(
        order=tuple(walk.order),
        pairs=tuple(sorted((layer[a], layer[b]) for a, b in walk.pairs)),
        reads={layer[g]: sorted(layer[r] for r in reads) for g, reads in sorted(walk.reads.items())},
        uses=tuple((leaf, layer[g], op) for leaf, g, op in walk.uses),
    )
