"""The forward pass through a neural graph: runs the MLP/CNN a ``GraphSpec`` describes on a batch, recording every
neuron's pre-activation and activation (what the learned backward pass and the probe features read).

The networks are chains of parameterised layers: a Dense layer flattens its input (the first one) or averages it
over the spatial axes (the first one after the convolutions); a conv layer is a stride-1, same-padded
convolution. Conv channels are neurons, each with values at every spatial position.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from l2o_jax.graphs.activations import get_activation
from l2o_jax.graphs.spec import GraphSpec
from l2o_jax.graphs.spec import LayerSpec


def shifted_matmul_conv(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    precision=None,
    **kwargs,
):
    """A stride-1, same-padded, channels-last convolution as one matmul over stacked shifted views of the input.

    A drop-in for ``lax.conv_general_dilated`` in ``nn.Conv`` for the convolutions the tasks use. XLA:CPU runs
    ``lax.conv`` about 20x slower inside a ``while`` loop (an unroll's ``scan``) than outside it
    (jax-ml/jax#12868); slices, a concatenation and a dot have no such penalty.
    """
    del dimension_numbers, precision, kwargs
    if (
        any(s != 1 for s in window_strides)
        or feature_group_count != 1
        or any(d != 1 for d in (lhs_dilation or ()))
        or any(d != 1 for d in (rhs_dilation or ()))
    ):
        raise ValueError("shifted_matmul_conv supports stride 1, no dilation and no feature groups only.")
    spatial = rhs.shape[:-2]
    if isinstance(padding, str):
        padding = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in spatial]
    x = jnp.pad(lhs, [(0, 0)] + [tuple(p) for p in padding] + [(0, 0)])
    out_shape = [x.shape[1 + i] - k + 1 for i, k in enumerate(spatial)]
    views = []
    for offset in itertools.product(*[range(k) for k in spatial]):
        index = (slice(None),) + tuple(slice(o, o + n) for o, n in zip(offset, out_shape)) + (slice(None),)
        views.append(x[index])
    patches = jnp.concatenate(views, axis=-1)  # (B, *out, prod(spatial) * C_in), kernel-major like rhs
    return patches @ rhs.reshape(-1, rhs.shape[-1])


def conv_implementation():
    """The convolution the optimizee CNNs and the forward pass share: ``shifted_matmul_conv`` on CPU, XLA's elsewhere.

    Example:
      >>> nn.Conv(32, (3, 3), padding='SAME', conv_general_dilated=conv_implementation())
    """
    return shifted_matmul_conv if jax.default_backend() == "cpu" else jax.lax.conv_general_dilated


class Tape(NamedTuple):
    """What the learned backward pass and the probe features read from the forward pass, one entry per neuron
    layer (inputs first).

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
    conv = conv_implementation()
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
      spec: the network's ``GraphSpec`` with each layer's activation (``graph_spec(params, activations=...)``,
        or ``l2o_jax.backward.network_spec`` for the models of ``l2o_jax.tasks``).
      params: the parameter pytree ``spec`` was built from.
      x: a normalised batch of inputs.

    Returns:
      The ``Tape``; ``tape.logits`` equal ``model.apply(params, x)``.

    Example:
      >>> tape = record_forward(graph_spec(params, activations='relu'), params, x)
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
