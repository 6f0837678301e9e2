"""Coordinatewise LSTM: one small LSTM shared by every optimizee parameter.

Reference:
  Andrychowicz et al., "Learning to learn by gradient descent by gradient
  descent", NeurIPS 2016.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

LSTMCarry = tuple[tuple[jax.Array, jax.Array], ...]


class CoordinateLSTM(nn.Module):
    """Stacked LSTM applied independently to P coordinates that share its weights.

    The carry is a tuple with one (c, h) pair of (P, hidden) arrays per layer:
    plain arrays, so it can sit inside an optax state NamedTuple.

    Attributes:
      hidden: LSTM state width per coordinate.
      num_layers: number of stacked LSTM cells.

    Returns (from `__call__`):
      (new_carry, outputs (P, hidden)) where outputs are the last layer's h.

    Example:
      >>> lstm = CoordinateLSTM(hidden=20, num_layers=2)
      >>> carry = CoordinateLSTM.initialize_carry(1000, hidden=20, num_layers=2)
      >>> params = lstm.init(jax.random.key(0), carry, jnp.zeros((1000, 3)))
      >>> carry, out = lstm.apply(params, carry, jnp.zeros((1000, 3)))  # out: (1000, 20)
    """

    hidden: int = 20
    num_layers: int = 2

    @staticmethod
    def initialize_carry(num_coordinates: int, hidden: int = 20, num_layers: int = 2, dtype=jnp.float32) -> LSTMCarry:
        """Zero carry: `num_layers` pairs (c, h), each of shape (num_coordinates, hidden)."""
        zeros = jnp.zeros((num_coordinates, hidden), dtype)
        return tuple((zeros, zeros) for _ in range(num_layers))

    @nn.compact
    def __call__(self, carry: LSTMCarry, x: jax.Array) -> tuple[LSTMCarry, jax.Array]:
        """Args: carry from `initialize_carry`, x (P, F) inputs per coordinate."""
        if len(carry) != self.num_layers:
            raise ValueError(f'carry has {len(carry)} layers, the LSTM has {self.num_layers}')
        new_carry = []
        for layer_carry in carry:
            layer_carry, x = nn.OptimizedLSTMCell(self.hidden)(layer_carry, x)
            new_carry.append(layer_carry)
        return tuple(new_carry), x
