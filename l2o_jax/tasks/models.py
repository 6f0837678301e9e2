"""Optimizee networks (Flax Linen): an MLP and a plain CNN for 1-D signals and 2-D images, a small pre-norm
ResNet and a small transformer classifier.

Layers keep Linen's automatic names (``Dense_0``, ``Conv_0``, ...) so that ``l2o_jax.graphs`` can read
the architecture from the parameter pytree alone: the natural order of the names is the forward order of
the Dense/Conv layers. Read that way, the ResNet's and transformer's other parameters (LayerNorm scales and
biases, the position embedding, attention projections) are outside the neural graph; read from the computation
(``graph_spec`` with ``apply_fn`` and ``example_input``) they are placed in it, with the residual connections.
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
        conv, spatial_axes = _same_conv(self, x)
        activation = get_activation(self.activation)
        for _ in range(self.depth):
            x = activation(conv()(x))
        return nn.Dense(self.num_classes)(jnp.mean(x, axis=spatial_axes))


def _same_conv(module: nn.Module, x: jax.Array):
    """``(make_conv, spatial_axes)`` for ``module``'s width and kernel size on inputs like ``x``: a new same-padded
    ``nn.Conv`` per call, with 1-D kernels for ``(B, L, C)`` and 2-D for ``(B, H, W, C)``."""
    if x.ndim not in (3, 4):
        raise ValueError(f'{type(module).__name__} expects inputs (B, L, C) or (B, H, W, C); got shape {x.shape}.')
    spatial_axes = tuple(range(1, x.ndim - 1))

    def make_conv() -> nn.Conv:
        return nn.Conv(
            module.width,
            kernel_size=(module.kernel_size,) * len(spatial_axes),
            padding='SAME',
            conv_general_dilated=conv_implementation(),
        )

    return make_conv, spatial_axes


class ResNetClassifier(nn.Module):
    """A convolutional stem, ``depth`` pre-norm residual blocks ``h + Conv(act(LayerNorm(Conv(h))))``, then
    ``act(LayerNorm(h))``, global average pooling and one Dense layer.

    Inputs ``(B, H, W, C)`` get 2-D kernels, ``(B, L, C)`` 1-D ones, as in :class:`CNNClassifier`.

    Example:
      >>> model = ResNetClassifier(width=16, depth=2, num_classes=10)
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
      >>> sorted(variables['params'])[:3], variables['params']['LayerNorm_0']['scale'].shape
      (['Conv_0', 'Conv_1', 'Conv_2'], (16,))
    """

    width: int
    depth: int
    num_classes: int
    kernel_size: int = 3
    activation: str = 'relu'

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv, spatial_axes = _same_conv(self, x)
        activation = get_activation(self.activation)
        h = conv()(x)
        for _ in range(self.depth):
            u = activation(nn.LayerNorm()(conv()(h)))  # built before the second conv, so Conv_i is in forward order
            h = h + conv()(u)
        h = activation(nn.LayerNorm()(h))
        return nn.Dense(self.num_classes)(jnp.mean(h, axis=spatial_axes))


class TransformerClassifier(nn.Module):
    """A sequence classifier: a Dense token embedding plus a learned position embedding (``nn.Embed``), ``depth``
    pre-norm blocks of multi-head self-attention and an MLP (``width -> 2 * width -> width``), each added to the
    residual stream, then LayerNorm, mean pooling over tokens and one Dense layer.

    Inputs ``(B, L, C)`` are ``L`` tokens of ``C`` features (MNIST-1D: 40 steps of 1 channel); images
    ``(B, H, W, C)`` are ``H`` tokens, one per row, of ``W * C`` features.

    Example:
      >>> model = TransformerClassifier(width=16, depth=2, num_classes=10, heads=2)
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 40, 1)))
      >>> variables['params']['MultiHeadDotProductAttention_0']['query']['kernel'].shape
      (16, 2, 8)
    """

    width: int
    depth: int
    num_classes: int
    heads: int = 2
    activation: str = 'gelu'

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim == 4:
            x = x.reshape(x.shape[:2] + (-1,))
        elif x.ndim != 3:
            raise ValueError(f'TransformerClassifier expects inputs (B, L, C) or (B, H, W, C); got shape {x.shape}.')
        activation = get_activation(self.activation)
        h = nn.Dense(self.width)(x) + nn.Embed(x.shape[1], self.width)(jnp.arange(x.shape[1]))
        for _ in range(self.depth):
            h = h + nn.MultiHeadDotProductAttention(num_heads=self.heads)(nn.LayerNorm()(h))
            u = activation(nn.Dense(2 * self.width)(nn.LayerNorm()(h)))  # so Dense_i is in forward order
            h = h + nn.Dense(self.width)(u)
        return nn.Dense(self.num_classes)(nn.LayerNorm()(h).mean(axis=1))


def layer_activations(model: nn.Module) -> tuple[str, ...]:
    """Activation name after each Dense/Conv layer of the neural graph, in forward order; the classifier's is
    ``'linear'``. In the ResNet and transformer, a layer that writes to the residual stream is ``'linear'``; the
    transformer's attention layers, placed only when the graph is read from the computation, are not listed
    (``graph_spec`` makes them ``'linear'``).

    Example:
      >>> layer_activations(CNNClassifier(width=32, depth=3, num_classes=10))
      ('relu', 'relu', 'relu', 'linear')
      >>> layer_activations(ResNetClassifier(width=16, depth=2, num_classes=10))
      ('linear', 'relu', 'linear', 'relu', 'linear', 'linear')
    """
    get_activation(getattr(model, 'activation', 'linear'))
    if isinstance(model, MLPClassifier):
        return (model.activation,) * len(model.hidden) + ('linear',)
    if isinstance(model, CNNClassifier):
        return (model.activation,) * model.depth + ('linear',)
    if isinstance(model, (ResNetClassifier, TransformerClassifier)):
        return ('linear',) + (model.activation, 'linear') * model.depth + ('linear',)
    raise TypeError(
        'layer_activations supports MLPClassifier, CNNClassifier, ResNetClassifier and TransformerClassifier, '
        f'not {type(model).__name__}.'
    )
