"""A small multilayer perceptron shared by every meta-network in `l2o_jax.nn`."""

from collections.abc import Callable
from collections.abc import Sequence

import flax.linen as nn
import jax


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
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the MLP to the last axis of `x` (..., F_in) -> (..., features[-1])."""
        for i, width in enumerate(self.features):
            x = nn.Dense(width)(x)
            if i < len(self.features) - 1 or self.final_activation:
                if self.layer_norm:
                    x = nn.LayerNorm()(x)
                x = self.activation(x)
        return x
