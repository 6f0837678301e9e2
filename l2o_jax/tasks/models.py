"""Optimizee networks (Flax Linen): an MLP and a plain CNN for 1-D signals and 2-D images.

Layers keep Linen's automatic names (``Dense_0``, ``Conv_0``, ...) so that ``l2o_jax.graphs`` can read
the architecture from the parameter pytree alone.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from l2o_jax.graphs import conv_implementation
from l2o_jax.graphs import get_activation


class MLPClassifier(nn.Module):
    """Flattens its input, then ``Dense`` layers of sizes ``(*hidden, num_classes)``.

    The activation follows every layer but the last.

    Example:
      >>> model = MLPClassifier(hidden=(48, 48), num_classes=10)
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
      >>> variables['params']['Dense_2']['kernel'].shape
      (48, 10)
    """

    hidden: tuple[int, ...]
    num_classes: int
    activation: str = 'relu'

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        activation = get_activation(self.activation)
        x = x.reshape((x.shape[0], -1))
        for width in self.hidden:
            x = activation(nn.Dense(width)(x))
        return nn.Dense(self.num_classes)(x)


class CNNClassifier(nn.Module):
    """``depth`` same-padded convolutions with activations, global average pooling, one Dense layer.

    Inputs of shape ``(B, H, W, C)`` get 2-D kernels ``(k, k, in, out)``; inputs of shape ``(B, L, C)``
    get 1-D kernels ``(k, in, out)``.

    Example:
      >>> model = CNNClassifier(width=32, depth=3, num_classes=10)
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
      >>> variables['params']['Conv_0']['kernel'].shape
      (3, 3, 1, 32)
    """

    width: int
    depth: int
    num_classes: int
    kernel_size: int = 3
    activation: str = 'relu'

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim not in (3, 4):
            raise ValueError(f'CNNClassifier expects inputs (B, L, C) or (B, H, W, C); got shape {x.shape}.')
        activation = get_activation(self.activation)
        spatial_axes = tuple(range(1, x.ndim - 1))
        for _ in range(self.depth):
            conv = nn.Conv(
                self.width,
                kernel_size=(self.kernel_size,) * len(spatial_axes),
                padding='SAME',
                conv_general_dilated=conv_implementation(),
            )
            x = activation(conv(x))
        return nn.Dense(self.num_classes)(jnp.mean(x, axis=spatial_axes))


def layer_activations(model: nn.Module) -> tuple[str, ...]:
    """Activation name after each parameterised layer, in forward order; the classifier's is ``'linear'``.

    Example:
      >>> layer_activations(CNNClassifier(width=32, depth=3, num_classes=10))
      ('relu', 'relu', 'relu', 'linear')
    """
    if isinstance(model, MLPClassifier):
        num_hidden = len(model.hidden)
    elif isinstance(model, CNNClassifier):
        num_hidden = model.depth
    else:
        raise TypeError(f'layer_activations supports MLPClassifier and CNNClassifier, not {type(model).__name__}.')
    get_activation(model.activation)
    return (model.activation,) * num_hidden + ('linear',)
