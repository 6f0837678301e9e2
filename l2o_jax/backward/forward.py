"""The optimizee's forward pass on its neural graph, recording every neuron's pre-activation and activation.

The MLPs and CNNs of ``l2o_jax.tasks`` are chains of parameterised layers: a Dense layer flattens its input
(the first one) or averages it over the spatial axes (the first one after the convolutions); a conv layer is a
stride-1, same-padded convolution. Conv channels are neurons, each with values at every spatial position.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from l2o_jax.graphs import GraphSpec
from l2o_jax.graphs import LayerSpec
from l2o_jax.graphs import graph_spec
from l2o_jax.tasks import CNN
from l2o_jax.tasks import MLP
from l2o_jax.tasks import Task
from l2o_jax.tasks.models import _conv_implementation
from l2o_jax.tasks.models import get_activation
from l2o_jax.tasks.models import layer_activations


class Tape(NamedTuple):
    """What the backward pass needs from the forward pass, one entry per neuron layer (inputs first).

    Attributes:
      pre: pre-activations ``z_l``, ``(B, [*spatial,] d_l)``; for the inputs, the network's input as the first
        layer reads it (flattened for an MLP).
      post: activations ``a_l = σ_l(z_l)``; for the inputs, the same as ``pre``.
      slope: ``σ_l'(z_l)`` elementwise; ones for the inputs.
      logits: the network's output, ``post[-1]``.
    """

    pre: tuple
    post: tuple
    slope: tuple

    @property
    def logits(self) -> jax.Array:
        return self.post[-1]


def model_of(task_or_model) -> nn.Module:
    """The optimizee network of a ``Task``, or the network itself; only ``l2o_jax.tasks`` MLPs and CNNs."""
    model = task_or_model.model if isinstance(task_or_model, Task) else task_or_model
    if not isinstance(model, (MLP, CNN)):
        raise ValueError(
            f"the learned backward pass supports the MLP and CNN of l2o_jax.tasks (or a Task built on them), "
            f"got {type(model).__name__}."
        )
    return model


def network_spec(model: nn.Module, params) -> GraphSpec:
    """The neural graph of ``params``, checked against what ``model`` computes.

    Raises:
      ValueError: naming the parameter path, for leaves that are not Dense/Conv kernels and biases, layers of
        the wrong kind or number, or layers without a bias.

    Example:
      >>> spec = network_spec(task.model, task.init(jax.random.key(0)))
    """
    shapes_only = graph_spec(params)
    kinds = ("dense",) * len(model.hidden) if isinstance(model, MLP) else ("conv",) * model.depth
    kinds += ("dense",)
    for i, layer in enumerate(shapes_only.layers):
        if i >= len(kinds):
            raise ValueError(f"{layer.name}: {_describe(model)} has {len(kinds)} layers; this one is extra.")
        if layer.kind != kinds[i]:
            raise ValueError(
                f"{layer.name}/kernel: {_describe(model)} expects a {kinds[i]} layer here, the parameters hold a "
                f"{layer.kind} kernel of shape {shapes_only.leaf_shapes[layer.kernel_leaf]}."
            )
        if layer.bias_leaf is None:
            raise ValueError(f"{layer.name}: the layer has no bias; {_describe(model)} layers all have one.")
    if len(shapes_only.layers) < len(kinds):
        raise ValueError(
            f"{shapes_only.layers[-1].name}: {_describe(model)} has {len(kinds)} layers, the parameters only "
            f"{len(shapes_only.layers)}."
        )
    return graph_spec(params, activations=layer_activations(model))


def _describe(model: nn.Module) -> str:
    if isinstance(model, MLP):
        return f"MLP(hidden={model.hidden})"
    return f"CNN(width={model.width}, depth={model.depth})"


def layer_input(layer: LayerSpec, previous: LayerSpec | None, a: jax.Array) -> jax.Array:
    """What ``layer`` multiplies by its kernel: its input neurons' activations, pooled after a convolution."""
    if layer.kind == "dense" and previous is not None and previous.kind == "conv":
        return a.mean(axis=tuple(range(1, a.ndim - 1)))
    return a


def apply_layer(layer: LayerSpec, previous: LayerSpec | None, kernel, bias, a: jax.Array) -> jax.Array:
    """The layer's pre-activations ``z`` from its input neurons' activations ``a`` (as Linen computes them)."""
    x = layer_input(layer, previous, a)
    if layer.kind == "dense":
        return x @ kernel + bias
    ndim = x.ndim
    lhs = (0, ndim - 1) + tuple(range(1, ndim - 1))
    numbers = jax.lax.ConvDimensionNumbers(lhs, (ndim - 1, ndim - 2) + tuple(range(ndim - 2)), lhs)
    conv = _conv_implementation()
    return conv(x, kernel, (1,) * (ndim - 2), "SAME", dimension_numbers=numbers) + bias


def input_neurons(spec: GraphSpec, x: jax.Array) -> jax.Array:
    """The network's input as neurons: flattened for a Dense first layer, channels-last images for a conv."""
    first = spec.layers[0]
    if first.kind == "dense":
        x = x.reshape(x.shape[0], -1)
    elif x.ndim != len(first.spatial) + 2:
        raise ValueError(
            f"{first.name}/kernel: a {len(first.spatial)}-D convolution needs inputs of rank "
            f"{len(first.spatial) + 2}, got shape {x.shape}."
        )
    if x.shape[-1] != first.fan_in:
        raise ValueError(
            f"{first.name}/kernel: the layer takes {first.fan_in} input neurons, the batch has {x.shape[-1]} "
            f"(input shape {x.shape[1:]})."
        )
    return x


def elementwise_slope(activation: str, z: jax.Array) -> jax.Array:
    """``σ'(z)`` of an elementwise activation, by forward-mode differentiation."""
    return jax.jvp(get_activation(activation), (z,), (jnp.ones_like(z),))[1]


def record_forward(spec: GraphSpec, params, x: jax.Array) -> Tape:
    """Runs the network of ``spec`` on ``x`` and records every neuron layer.

    Args:
      spec: from ``network_spec`` (carries each layer's activation).
      params: the parameter pytree ``spec`` was built from.
      x: a normalised batch of inputs.

    Returns:
      The ``Tape``; ``tape.logits`` equal ``model.apply(params, x)``.

    Example:
      >>> tape = record_forward(network_spec(task.model, params), params, x)
      >>> [z.shape for z in tape.pre]
    """
    leaves = jax.tree_util.tree_leaves(params)
    a = input_neurons(spec, x)
    pre, post, slope = [a], [a], [jnp.ones_like(a)]
    previous = None
    for layer in spec.layers:
        z = apply_layer(layer, previous, leaves[layer.kernel_leaf], leaves[layer.bias_leaf], a)
        a = get_activation(layer.activation)(z)
        pre.append(z)
        post.append(a)
        slope.append(elementwise_slope(layer.activation, z))
        previous = layer
    return Tape(tuple(pre), tuple(post), tuple(slope))


def neuron_axes(values: jax.Array) -> tuple[int, ...]:
    """The batch and spatial axes: everything but the trailing neuron axis."""
    return tuple(range(values.ndim - 1))
