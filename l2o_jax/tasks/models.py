"""Optimizee networks (Flax Linen): an MLP and a plain CNN for 1-D signals and 2-D images.

Layers keep Linen's automatic names (``Dense_0``, ``Conv_0``, ...) so that ``l2o_jax.graphs`` can read
the architecture from the parameter pytree alone.
"""

from __future__ import annotations

import itertools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu,
    'tanh': jnp.tanh,
    'gelu': nn.gelu,
    'sigmoid': nn.sigmoid,
    'swish': nn.swish,
    'linear': lambda x: x,
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Returns the activation function called ``name``, or raises a ValueError listing the choices."""
    if name not in ACTIVATIONS:
        raise ValueError(f'Unknown activation {name!r}; available: {tuple(ACTIVATIONS)}.')
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """Flattens its input, then ``Dense`` layers of sizes ``(*hidden, num_classes)``.

    The activation follows every layer but the last.

    Example:
      >>> model = MLP(hidden=(48, 48), num_classes=10)
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
        raise ValueError('shifted_matmul_conv supports stride 1, no dilation and no feature groups only.')
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


def _conv_implementation():
    return shifted_matmul_conv if jax.default_backend() == 'cpu' else jax.lax.conv_general_dilated


class CNN(nn.Module):
    """``depth`` same-padded convolutions with activations, global average pooling, one Dense layer.

    Inputs of shape ``(B, H, W, C)`` get 2-D kernels ``(k, k, in, out)``; inputs of shape ``(B, L, C)``
    get 1-D kernels ``(k, in, out)``.

    Example:
      >>> model = CNN(width=32, depth=3, num_classes=10)
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
            raise ValueError(f'CNN expects inputs (B, L, C) or (B, H, W, C); got shape {x.shape}.')
        activation = get_activation(self.activation)
        spatial_axes = tuple(range(1, x.ndim - 1))
        for _ in range(self.depth):
            conv = nn.Conv(
                self.width,
                kernel_size=(self.kernel_size,) * len(spatial_axes),
                padding='SAME',
                conv_general_dilated=_conv_implementation(),
            )
            x = activation(conv(x))
        return nn.Dense(self.num_classes)(jnp.mean(x, axis=spatial_axes))


def layer_activations(model: nn.Module) -> tuple[str, ...]:
    """Activation name after each parameterised layer, in forward order; the classifier's is ``'linear'``.

    Example:
      >>> layer_activations(CNN(width=32, depth=3, num_classes=10))
      ('relu', 'relu', 'relu', 'linear')
    """
    if isinstance(model, MLP):
        num_hidden = len(model.hidden)
    elif isinstance(model, CNN):
        num_hidden = model.depth
    else:
        raise TypeError(f'layer_activations supports MLP and CNN, not {type(model).__name__}.')
    get_activation(model.activation)
    return (model.activation,) * num_hidden + ('linear',)
