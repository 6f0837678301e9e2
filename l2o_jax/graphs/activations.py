"""The activation functions a neural graph's layers may carry, by name: the one table the optimizee models,
the forward pass through a graph and the probe features share."""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "gelu": nn.gelu,
    "sigmoid": nn.sigmoid,
    "swish": nn.swish,
    "softplus": nn.softplus,  # its own name for the forward pass; its neurons' category is 'other'
    "linear": lambda x: x,
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Returns the activation function called ``name``, or raises a ValueError listing the choices.

    Example:
      >>> get_activation('relu')(jnp.array([-1.0, 2.0]))
      Array([0., 2.], dtype=float32)
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; available: {tuple(ACTIVATIONS)}.")
    return ACTIVATIONS[name]
