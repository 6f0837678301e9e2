"""A small multilayer perceptron shared by every meta-network in `l2o_jax.nn`."""

from collections.abc import Callable
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class GatheredDense(nn.Module):
    """`nn.Dense` on a concatenation of parts, some of them rows gathered from a table, without building it.

    A gathered part `(table, indices)` stands for `table[indices]`; its block of the kernel multiplies the
    table before the gather, so a graph network's per-edge layer over `[edge, sender node, receiver node]`
    states costs one edge-sized matmul and two node-sized ones instead of a three times wider edge-sized one.
    With `chunks=n`, the output comes as `n` equal pieces, each from its own columns of the kernel, rather than
    as slices of one wide result (which XLA copies on CPU). Same parameters (`kernel (sum of part widths,
    features)`, `bias`) and initialisation as `nn.Dense` applied to the concatenation, and the same result up to
    float rounding.

    Attributes:
      features: output width (in all chunks together).
      chunks: number of equal pieces to return the output in; 1 returns one array.

    Example:
      >>> dense = GatheredDense(16)
      >>> edges, nodes, senders = jnp.ones((5, 8)), jnp.ones((3, 8)), jnp.array([0, 0, 1, 2, 2])
      >>> params = dense.init(jax.random.key(0), edges, (nodes, senders))
      >>> dense.apply(params, edges, (nodes, senders)).shape   # as nn.Dense(16) on [edges, nodes[senders]]
      (5, 16)
    """

    features: int
    chunks: int = 1

    @nn.compact
    def __call__(self, *parts) -> jax.Array | tuple[jax.Array, ...]:
        """`parts`, in concatenation order: arrays `(rows, F_k)` and pairs `(table (T, F_k), indices (rows,))`."""
        widths = [(part[0] if isinstance(part, tuple) else part).shape[-1] for part in parts]
        kernel = self.param('kernel', nn.initializers.lecun_normal(), (sum(widths), self.features))
        bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
        rows = np.cumsum(widths)[:-1]
        outputs = []
        for columns, shift in zip(jnp.split(kernel, self.chunks, -1), jnp.split(bias, self.chunks)):
            out = shift
            for part, block in zip(parts, jnp.split(columns, rows)):
                out = out + ((part[0] @ block)[part[1]] if isinstance(part, tuple) else part @ block)
            outputs.append(out)
        return outputs[0] if self.chunks == 1 else tuple(outputs)


class MatmulLayerNorm(nn.Module):
    """`nn.LayerNorm` over the last axis, with the row mean and mean square computed as matrix products.

    Same parameters (`scale`, `bias`), initialisation and result as `nn.LayerNorm()` (fast variance, epsilon
    1e-6) up to float rounding. Graph layers use it on edge states: XLA's CPU backend pulls a row reduction, and
    every matmul and elementwise op that produces its input, into one YNNPACK kernel, which on a graph's ~10^4 edges
    is slower than the same work as separate ops, much more so on a busy machine (NG-GNN's step on a small
    transformer's neural graph, two busy cores: 1.8x -> 1.5x Adam's). Matmuls leave the producers to XLA's own
    fusions. The products run at full float32 precision on every backend.

    Attributes:
      epsilon: added to the variance.

    Example:
      >>> norm = MatmulLayerNorm()
      >>> x = jnp.arange(12.0).reshape(3, 4)
      >>> params = norm.init(jax.random.key(0), x)    # {'params': {'scale': (4,), 'bias': (4,)}}, as nn.LayerNorm
      >>> norm.apply(params, x).shape
      (3, 4)
    """

    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        scale = self.param('scale', nn.initializers.ones_init(), (width,))
        bias = self.param('bias', nn.initializers.zeros_init(), (width,))
        average = jnp.full((width, 1), 1.0 / width, x.dtype)
        mean = jnp.matmul(x, average, precision=jax.lax.Precision.HIGHEST)
        mean_square = jnp.matmul(jnp.square(x), average, precision=jax.lax.Precision.HIGHEST)
        variance = jnp.maximum(mean_square - jnp.square(mean), 0.0)
        return (x - mean) * (jax.lax.rsqrt(variance + self.epsilon) * scale) + bias


class MLP(nn.Module):
    """Multilayer perceptron: Dense layers with an activation between them.

    Serves as the message and update function inside `PNALayer` and
    `RelationalTransformerLayer`, and as the body of the per-parameter MLP
    learned optimizer (learned_optimization's small MLP: hidden widths 32, 32).

    Attributes:
      features: output width of each Dense layer; the last one is the output width.
      activation: nonlinearity applied after every hidden layer.
      final_activation: also apply `activation` (and the layer norm) to the output.
      layer_norm: apply LayerNorm before each activation.

    Example:
      >>> mlp = MLP((32, 32, 1))
      >>> params = mlp.init(jax.random.key(0), jnp.ones((5, 7)))
      >>> mlp.apply(params, jnp.ones((5, 7))).shape
      (5, 1)
    """

    features: Sequence[int]
    activation: Callable[[jax.Array], jax.Array] = nn.gelu
    final_activation: bool = False
    layer_norm: bool = False

    @nn.compact
    def __call__(self, *parts) -> jax.Array:
        """Applies the MLP to the last axis of `x` (..., F_in) -> (..., features[-1]).

        The input is one array `x`, or parts whose concatenation along the last axis is the input: arrays
        `(rows, F_k)` and `(table, indices)` pairs standing for `table[indices]`, which the first layer reads
        without building the concatenation (`GatheredDense`).
        """
        x, in_parts = parts[0], len(parts) > 1 or isinstance(parts[0], tuple)
        for i, width in enumerate(self.features):
            name = f'Dense_{i}'  # the names nn.Dense takes on its own, so parameters do not depend on `parts`
            x = GatheredDense(width, name=name)(*parts) if in_parts and i == 0 else nn.Dense(width, name=name)(x)
            if i < len(self.features) - 1 or self.final_activation:
                if self.layer_norm:
                    x = nn.LayerNorm()(x)
                x = self.activation(x)
        return x
