"""A model's neural graph read from its computation: the order of its layers, what each reads, its residual
connections, and which other parameters act on which neurons.

``graph_spec(params, apply_fn=model.apply, example_input=x)`` traces the model once (shapes only) and follows
every value computed from the input: a contraction (``dot_general``, ``conv_general_dilated``) with a layer's
kernel makes it that layer's neurons (the query, key and value projections of one attention module share one
layer, so the attention scores and their product with the values stay its neurons); other operations keep the
neuron layer of their input. An addition of two values of different neuron layers is a residual connection:
neuron ``k`` of the earlier layer feeds neuron ``k`` of the later one with a fixed weight of one (Kofinas et
al., 2024). A layer's activation is read where its values are read (by the next contraction, or as the model's
outputs): the elementwise nonlinearities applied to them since their contraction, ignoring statistics (values
reduced over an axis, like a normalisation's mean and variance) they are combined with. A parameter multiplied
into or added to a neuron layer's values (a normalisation's scale and shift, an attention projection's bias, a
position embedding) is recorded as acting on that layer. Everything here is numpy and Python at trace time.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

_CONTRACTIONS = ("dot_general", "conv_general_dilated")
_ADDITIONS = ("add", "add_any")
_SHIFTS = ("add", "add_any", "sub")
_REDUCTIONS = ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin")
#: Primitives that are linear in the neurons, move them, compare them or pool them: no mark of an activation.
_NEUTRAL = (
    "add", "add_any", "sub", "neg", "mul", "div", "dot_general", "reshape", "broadcast_in_dim", "transpose",
    "squeeze", "expand_dims", "convert_element_type", "slice", "dynamic_slice", "dynamic_update_slice", "gather",
    "concatenate", "pad", "copy", "copy_p", "select_n", "rev", "stop_gradient", "reduce_precision", "ne", "eq",
    "lt", "gt", "le", "ge", "is_finite", "reduce_window_max", "reduce_window_sum", "cumsum", "sign",
)  # fmt: skip
#: Primitive -> the mark it leaves on the neurons it is applied to.
_MARKS = {"tanh": "tanh", "logistic": "logistic", "erf": "erf", "erfc": "erf", "exp": "exp", "log": "log"}
_MARKS |= {"log1p": "log", "integer_pow": "pow", "square": "pow", "max": "max", "min": "max", "abs": "abs"}
#: Marks left by each activation as jax emits it -> its name in ``l2o_jax.graphs.ACTIVATIONS``.
_SIGNATURES = {
    frozenset(): "linear",
    frozenset({"max"}): "relu",
    frozenset({"tanh"}): "tanh",
    frozenset({"logistic"}): "sigmoid",
    frozenset({"logistic", "mul"}): "swish",
    frozenset({"erf", "mul"}): "gelu",  # exact form: x * erfc(-x / sqrt(2)) / 2
    frozenset({"pow", "tanh", "mul"}): "gelu",  # tanh approximation: x * (1 + tanh(c * (x + 0.044715 x^3))) / 2
    frozenset({"tanh", "mul"}): "gelu",  # the same with x^3 written as products
    frozenset({"max", "abs", "exp", "log"}): "softplus",  # logaddexp(x, 0)
}


class Computation(NamedTuple):
    """What a model's computation says about its layers; layer ids are those of ``read_computation``'s
    ``kernel_leaves`` (0 = the inputs).

    Attributes:
      order: layer ids in the order of their first contraction.
      pairs: sorted ``(earlier, later)`` layer pairs whose neurons are added together (residual connections).
      reads: ``{layer: sorted layer ids its contractions read}``.
      uses: ``(leaf, layer, op)`` for each other parameter leaf combined with a layer's neurons, ``op`` being
        ``'mul'`` or ``'add'``, in the order they happen.
      activations: ``{layer: name}`` of the activation (a key of ``l2o_jax.graphs.ACTIVATIONS``) applied to each
        layer's outputs where they are read, or None where it cannot be read (an unknown nonlinearity, or
        different ones where different layers read them).
    """

    order: tuple
    pairs: tuple
    reads: dict
    uses: tuple
    activations: dict


def _sub_jaxpr(eqn):
    """The inner jaxpr of a call-like equation (jit, custom_jvp/vjp, remat) that takes its inputs as they are."""
    for value in eqn.params.values():
        inner = getattr(value, "jaxpr", value)
        if hasattr(inner, "eqns") and len(inner.invars) == len(eqn.invars) and len(inner.outvars) == len(eqn.outvars):
            return inner
    return None


class _Walk:
    """Tags every value ``('neurons', group)``, ``('kernel', layer)`` or ``('param', leaf)``. Neuron groups are
    numbered in the order the computation creates them (0 = inputs), so "later" means later in the forward pass.
    A neuron value also carries its *marks* ``(nonlinearities applied since its contraction, is_statistic)``."""

    def __init__(self):
        self.order: list = []  # layer id of each neuron group 1, 2, ...
        self.pairs: set = set()
        self.reads: dict = {}
        self.uses: list = []
        self.read_marks: dict = {}  # neuron group -> set of the marks its values carry where they are read

    def group(self, layer) -> int:
        if layer not in self.order:
            self.order.append(layer)
        return self.order.index(layer) + 1

    def walk(self, jaxpr, tags: dict, marks: dict) -> tuple[list, list]:
        tag = lambda v: None if hasattr(v, "val") else tags.get(v)  # literals carry a value, variables do not
        mark = lambda v: None if hasattr(v, "val") else marks.get(v)
        for eqn in jaxpr.eqns:
            ins = [tag(v) for v in eqn.invars]
            in_marks = [mark(v) for v in eqn.invars]
            inner = _sub_jaxpr(eqn)
            if inner is not None:
                inner_marks = {v: m for v, m in zip(inner.invars, in_marks) if m}
                out, out_marks = self.walk(inner, {v: t for v, t in zip(inner.invars, ins) if t}, inner_marks)
            else:
                out = [self.step(eqn.primitive.name, ins)] * len(eqn.outvars)
                out_marks = [self.mark(eqn, ins, in_marks, out[0])] * len(eqn.outvars)
            tags.update({v: t for v, t in zip(eqn.outvars, out) if t})
            marks.update({v: m for v, m in zip(eqn.outvars, out_marks) if m})
        return [tag(v) for v in jaxpr.outvars], [mark(v) for v in jaxpr.outvars]

    def read(self, tag, marks) -> None:
        """Neuron values read by a layer or as outputs: the marks they carry say their layer's activation."""
        if tag and tag[0] == "neurons" and tag[1] > 0 and marks:
            self.read_marks.setdefault(tag[1], set()).add(marks[0])

    def mark(self, eqn, ins: list, in_marks: list, out):
        if not out or out[0] != "neurons":
            return None
        name = eqn.primitive.name
        neurons = [(t, m or (frozenset(), False)) for t, m in zip(ins, in_marks) if t and t[0] == "neurons"]
        if name in _CONTRACTIONS and any(t[0] == "kernel" for t in ins if t):
            for t, m in neurons:
                self.read(t, m)
            return frozenset(), False
        if name in _REDUCTIONS:
            return neurons[0][1][0], True
        values = [m for _, (m, stat) in neurons if not stat]
        marks = frozenset().union(*(values or [m for _, (m, _) in neurons]))
        if name in ("mul", "div") and len(values) > 1:
            marks |= {"mul"}
        elif name not in _NEUTRAL:
            marks |= {_MARKS.get(name, name)}
        return marks, not values

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


def _activation(read_marks: set):
    """The activation all readers of a layer's values see, or None when unknown or they disagree."""
    names = {_SIGNATURES.get(marks) for marks in read_marks}
    return names.pop() if len(names) == 1 else None


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
    outputs, output_marks = walk.walk(closed.jaxpr, tags, {})
    for tag, marks in zip(outputs, output_marks):
        walk.read(tag, marks or (frozenset(), False))
    layer = [0] + walk.order  # neuron group -> layer id
    return Computation(
        order=tuple(walk.order),
        pairs=tuple(sorted((layer[a], layer[b]) for a, b in walk.pairs)),
        reads={layer[g]: sorted(layer[r] for r in reads) for g, reads in sorted(walk.reads.items())},
        uses=tuple((leaf, layer[g], op) for leaf, g, op in walk.uses),
        activations={layer[g]: _activation(walk.read_marks.get(g, set())) for g in range(1, len(layer))},
    )
