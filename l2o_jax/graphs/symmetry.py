"""Function-preserving transformations of a network's hidden neurons: permutations and rescalings.

They act on parameter pytrees through the ``GraphSpec`` and are what the equivariance tests (and users
checking their own meta-networks) apply.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from l2o_jax.graphs.spec import GraphSpec


def _hidden_layer(spec: GraphSpec, layer: int) -> None:
    if not 1 <= layer < len(spec.layers):
        raise ValueError(
            f"hidden layer index must be in [1, {len(spec.layers) - 1}] for {spec}, got {layer}: "
            "input and output neurons are not interchangeable."
        )


def _on_neurons(fn, x, lead: tuple, rows: int, neurons: int, axis: int):
    """``fn`` on a leaf viewed as ``lead + (rows, neurons)`` (attention kernels merge their head axes)."""
    return fn(x.reshape(lead + (rows, neurons)), axis).reshape(x.shape)


def _transform_hidden(params, spec: GraphSpec, layer: int, out_fn, in_fn):
    _hidden_layer(spec, layer)
    leaves = list(jax.tree_util.tree_leaves(params))
    producer, consumer = spec.layers[layer - 1], spec.layers[layer]
    lead = lambda l: (1,) * (2 - len(l.spatial)) + l.spatial if l.spatial and not l.cell_leaves else (1, 1)
    width = producer.fan_out
    for i in producer.kernel_leaves:
        leaves[i] = _on_neurons(out_fn, leaves[i], lead(producer), producer.kernel_rows, width, -1)
    for i, _ in producer.input_tables:
        leaves[i] = out_fn(leaves[i], -1)
    acting = [leaf for leaf, on, _ in spec.neuron_params if on == layer]
    for i in acting + ([producer.bias_leaf] if producer.bias_leaf is not None else []):
        leaves[i] = _on_neurons(out_fn, leaves[i], (), 1, width, -1)
    for i in consumer.kernel_leaves:
        leaves[i] = _on_neurons(in_fn, leaves[i], lead(consumer), consumer.kernel_rows, consumer.fan_out, -2)
    return jax.tree_util.tree_unflatten(spec.treedef, leaves)


def permute_hidden_neurons(params, spec: GraphSpec, layer: int, perm) -> object:
    """Permutes the neurons of hidden layer ``layer`` (1-based) consistently in both adjacent layers and in the
    neuron parameters that act on them (``spec.neuron_params``).

    The network computes the same function afterwards (with residual connections, permute every layer of the
    residual stream the same way). Permuting an attention layer's neurons by whole heads permutes the heads.
    Works on any pytree with the parameters' structure (gradients, momenta, updates).

    Example:
      >>> permuted = permute_hidden_neurons(params, spec, 1, np.random.permutation(spec.widths[1]))
    """
    perm = np.asarray(perm)
    take = lambda x, axis: jnp.take(x, perm, axis=axis)
    return _transform_hidden(params, spec, layer, take, take)


def scale_hidden_neurons(params, spec: GraphSpec, layer: int, scale) -> object:
    """Scales neuron j of hidden layer ``layer``: incoming weights and bias by ``scale[j]``, outgoing by 1/``scale[j]``.

    For ReLU (and other positively homogeneous activations) with ``scale > 0``, and for odd activations
    such as tanh with ``scale`` in {-1, +1}, the network's function is unchanged.

    Example:
      >>> rescaled = scale_hidden_neurons(params, spec, 1, jnp.full(spec.widths[1], 2.0))
    """
    scale = jnp.asarray(scale)
    return _transform_hidden(
        params,
        spec,
        layer,
        lambda x, axis: jnp.moveaxis(jnp.moveaxis(x, axis, -1) * scale, -1, axis),
        lambda x, axis: jnp.moveaxis(jnp.moveaxis(x, axis, -1) / scale, -1, axis),
    )


def random_hidden_scaling(params, spec: GraphSpec, key: jax.Array, group: str, log_range: float = 1.0) -> object:
    """Every hidden neuron of a plain chain (no residual connections) flipped in sign at random (``group='sign'``:
    the same function for odd activations such as tanh) or rescaled by ``exp(u)``, ``u ~ U(-log_range,
    log_range)`` (``group='scale'``: the same function for ReLU): one random point of the network's symmetry orbit.
    Pure in ``params`` and ``key``, so it can be vmapped over a zoo.

    Example:
      >>> moved = random_hidden_scaling(params, spec, jax.random.key(0), 'sign')
    """
    if group not in ("sign", "scale"):
        raise ValueError(f"random_hidden_scaling: group must be 'sign' or 'scale', got {group!r}.")
    if len(spec.residual_senders):
        raise ValueError("random_hidden_scaling: a network with residual connections has no per-layer scaling.")
    for layer, k in zip(range(1, len(spec.layers)), jax.random.split(key, max(len(spec.layers) - 1, 1))):
        width = spec.widths[layer]
        if group == "sign":
            scale = jnp.where(jax.random.bernoulli(k, 0.5, (width,)), -1.0, 1.0)
        else:
            scale = jnp.exp(jax.random.uniform(k, (width,), minval=-log_range, maxval=log_range))
        params = scale_hidden_neurons(params, spec, layer, scale)
    return params


def node_permutation(spec: GraphSpec, layer: int, perm) -> np.ndarray:
    """The node relabelling that goes with ``permute_hidden_neurons(params, spec, layer, perm)``.

    Returns ``p`` such that the permuted network's graph has ``nodes_permuted = nodes[p]``.

    Example:
      >>> p = node_permutation(spec, 1, perm)
    """
    _hidden_layer(spec, layer)
    p = np.arange(spec.n_node)
    start = spec.node_offsets[layer]
    p[start : start + len(perm)] = start + np.asarray(perm)
    return p


def edge_permutation(spec: GraphSpec, layer: int, perm) -> np.ndarray:
    """The edge reordering that goes with ``node_permutation``: ``edges_permuted = edges[q]``.

    Example:
      >>> q = edge_permutation(spec, 1, perm)
    """
    p = node_permutation(spec, layer, perm)
    l = spec.edge_layer - 1
    fan_out = np.array([x.fan_out for x in spec.layers])[l]
    return (
        spec.edge_offsets[l]
        + (p[spec.senders] - spec.node_offsets[l]) * fan_out
        + p[spec.receivers]
        - spec.node_offsets[l + 1]
    )
