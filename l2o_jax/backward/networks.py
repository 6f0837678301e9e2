"""The learned backward pass's meta-networks and their inputs.

One node network and one edge network serve every layer and neuron of every MLP/CNN, so the same
meta-parameters apply to any width and depth. Both read only per-neuron statistics (averages over the batch
and, for conv channels, the spatial positions) normalised by symmetric per-layer aggregates, which keeps them
permutation-equivariant and independent of the scale of the optimizee's gradients.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from l2o_jax.graphs import ACTIVATION_CATEGORIES
from l2o_jax.graphs import neuron_axes
from l2o_jax.nn import MLP

#: Added under the square root of every root-mean-square: keeps its derivative finite at zero.
TINY = 1e-30
NUM_ROLES = 3
NEURON_STATISTICS = ("mean z", "rms z", "mean a", "rms a", "mean slope", "mean delta", "rms delta")
NUM_NEURON_FEATURES = len(NEURON_STATISTICS) + NUM_ROLES + len(ACTIVATION_CATEGORIES)
NUM_EDGE_FEATURES = 2
#: Node outputs: log-scale and shift of the message, log-scale and shift of the bias gradient.
NUM_NODE_OUTPUTS = 4
#: Edge outputs: log-scale and shift of the weight gradient.
NUM_EDGE_OUTPUTS = 2


def layer_rms(values: jax.Array) -> jax.Array:
    """Root mean square over all of a layer's values (a symmetric aggregate: permutation-invariant)."""
    return jnp.sqrt(jnp.mean(jnp.square(values)) + TINY)


def neuron_features(
    pre: jax.Array, post: jax.Array, slope: jax.Array, delta: jax.Array, role: int, activation: str
) -> jax.Array:
    """Per-neuron inputs of the meta-networks, ``(d, NUM_NEURON_FEATURES)``.

    Args:
      pre, post, slope: the layer's ``z``, ``a = σ(z)`` and ``σ'(z)``, ``(B, [*spatial,] d)``.
      delta: the message that reached the layer, an estimate of ``dL/dz``, same shape.
      role: ``l2o_jax.graphs.ROLE_INPUT``, ``ROLE_HIDDEN`` or ``ROLE_OUTPUT``.
      activation: the layer's activation name.

    Returns:
      Means and root-mean-squares over batch (and positions) of ``z``, ``a``, ``delta`` (each divided by its
      layer's root-mean-square) and the mean slope, then one-hot role and activation category.

    Example:
      >>> features = neuron_features(tape.pre[1], tape.post[1], tape.slope[1], delta, ROLE_HIDDEN, 'relu')
    """
    axes = neuron_axes(pre)
    mean = lambda v: v.mean(axes)
    rms = lambda v: jnp.sqrt(mean(jnp.square(v)) + TINY)
    z, a, d = pre / layer_rms(pre), post / layer_rms(post), delta / layer_rms(delta)
    statistics = jnp.stack([mean(z), rms(z), mean(a), rms(a), mean(slope), mean(d), rms(d)], axis=-1)
    category = ACTIVATION_CATEGORIES.index(activation)
    kinds = jnp.concatenate([jax.nn.one_hot(role, NUM_ROLES), jax.nn.one_hot(category, len(ACTIVATION_CATEGORIES))])
    return jnp.concatenate([statistics, jnp.broadcast_to(kinds, statistics.shape[:1] + kinds.shape)], axis=-1)


def edge_features(kernel: jax.Array, gradient: jax.Array) -> jax.Array:
    """Per-weight inputs of the edge network: the weight and its backprop gradient over their layer's rms."""
    return jnp.stack([kernel / layer_rms(kernel), gradient / layer_rms(gradient)], axis=-1)


def _output_layer(features: int) -> nn.Dense:
    """Zero-initialised: a fresh learned backward pass is exactly backprop."""
    return nn.Dense(features, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros, name="output")


class NodeNetwork(nn.Module):
    """Per-neuron MLP: neuron features ``(d, F)`` to ``(d, NUM_NODE_OUTPUTS)``.

    Example:
      >>> net = NodeNetwork(hidden=16, layers=2)
      >>> variables = net.init(jax.random.key(0), jnp.zeros((5, NUM_NEURON_FEATURES)))
    """

    hidden: int
    layers: int

    @nn.compact
    def __call__(self, neurons: jax.Array) -> jax.Array:
        h = MLP((self.hidden,) * self.layers, final_activation=True)(neurons)
        return _output_layer(NUM_NODE_OUTPUTS)(h)


class EdgeNetwork(nn.Module):
    """Per-weight MLP over (weight features, sender neuron, receiver neuron).

    Its first layer is split in three Dense layers summed with broadcasting, so the neurons' part is computed
    once per neuron, not once per weight.

    Example:
      >>> net = EdgeNetwork(hidden=16, layers=2)
      >>> edges, senders, receivers = jnp.zeros((3, 4, 2)), jnp.zeros((3, F)), jnp.zeros((4, F))
      >>> variables = net.init(jax.random.key(0), edges, senders, receivers)
    """

    hidden: int
    layers: int

    @nn.compact
    def __call__(self, edges: jax.Array, senders: jax.Array, receivers: jax.Array) -> jax.Array:
        """``edges (..., d_in, d_out, NUM_EDGE_FEATURES)``, ``senders (d_in, F)``, ``receivers (d_out, F)`` to
        ``(..., d_in, d_out, NUM_EDGE_OUTPUTS)``."""
        h = (
            nn.Dense(self.hidden, name="edge")(edges)
            + nn.Dense(self.hidden, use_bias=False, name="sender")(senders)[:, None, :]
            + nn.Dense(self.hidden, use_bias=False, name="receiver")(receivers)
        )
        h = nn.gelu(h)
        if self.layers > 1:
            h = MLP((self.hidden,) * (self.layers - 1), final_activation=True)(h)
        return _output_layer(NUM_EDGE_OUTPUTS)(h)
