"""Per-parameter learned optimizers: the coordinatewise LSTM and MLP baselines.

Each parameter is updated from its own features only, so these optimizers are trivially equivariant to any
permutation of parameters and apply to every architecture, but they cannot see the network's structure.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp
import optax

from l2o_jax.nn import MLP
from l2o_jax.nn import CoordinateLSTM
from l2o_jax.optimizers.base import LearnedOptimizer
from l2o_jax.optimizers.base import MetaParams
from l2o_jax.optimizers.base import OutputConfig
from l2o_jax.optimizers.base import check_meta_params
from l2o_jax.optimizers.base import flatten_features
from l2o_jax.optimizers.base import num_coordinates
from l2o_jax.optimizers.base import output_head
from l2o_jax.optimizers.base import unflatten_features
from l2o_jax.optimizers.registry import register_family


def _rows_with_globals(feats, glob):
    flat, how = flatten_features(feats)
    glob = jnp.broadcast_to(glob, (flat.shape[0], glob.shape[0]))
    return jnp.concatenate([flat, glob], axis=-1), how


class PerParameterMLPNet(nn.Module):
    """A small MLP applied to every parameter's features (learned_optimization's MLP optimizer shape)."""

    hidden: tuple[int, ...]
    output: OutputConfig

    @nn.compact
    def __call__(self, feats, glob, context, recurrent):
        del context
        rows, how = _rows_with_globals(feats, glob)
        out = output_head(2, self.output)(MLP(self.hidden, final_activation=True)(rows))
        return unflatten_features(out, how), recurrent


class CoordinateLSTMNet(nn.Module):
    """A coordinatewise LSTM (Andrychowicz et al. 2016) shared by all parameters."""

    hidden: int
    num_layers: int
    output: OutputConfig

    @nn.compact
    def __call__(self, feats, glob, context, recurrent):
        del context
        rows, how = _rows_with_globals(feats, glob)
        recurrent, h = CoordinateLSTM(self.hidden, self.num_layers)(recurrent, rows)
        return unflatten_features(output_head(2, self.output)(h), how), recurrent


@register_family
@dataclasses.dataclass(frozen=True)
class MLPL2O(LearnedOptimizer):
    """Config of the per-parameter MLP learned optimizer.

    Example:
      >>> meta_params = MLPL2O(hidden=(32, 32)).init(jax.random.key(0))
      >>> tx = mlp_l2o(meta_params)
    """

    hidden: tuple[int, ...] = (32, 32)

    def network(self) -> nn.Module:
        return PerParameterMLPNet(self.hidden, self.output)


@register_family
@dataclasses.dataclass(frozen=True)
class LSTML2O(LearnedOptimizer):
    """Config of the coordinatewise LSTM learned optimizer (Andrychowicz et al.: 2 layers of 20 units).

    Example:
      >>> meta_params = LSTML2O().init(jax.random.key(0))
      >>> tx = lstm_l2o(meta_params)
    """

    hidden: int = 20
    num_layers: int = 2

    def network(self) -> nn.Module:
        return CoordinateLSTMNet(self.hidden, self.num_layers, self.output)

    def initial_recurrent(self, params):
        return CoordinateLSTM.initialize_carry(num_coordinates(params), self.hidden, self.num_layers, jnp.float32)


def mlp_l2o(meta_params: MetaParams, *, total_steps=None) -> optax.GradientTransformationExtraArgs:
    """The per-parameter MLP learned optimizer as an optax transformation.

    Example:
      >>> tx = optax.chain(mlp_l2o(MLPL2O().init(jax.random.key(0))))
    """
    return check_meta_params(meta_params, MLPL2O).transform(total_steps=total_steps)


def lstm_l2o(meta_params: MetaParams, *, total_steps=None) -> optax.GradientTransformationExtraArgs:
    """The coordinatewise LSTM learned optimizer as an optax transformation.

    References:
      Andrychowicz et al., Learning to learn by gradient descent by gradient descent, NeurIPS 2016.

    Example:
      >>> tx = lstm_l2o(LSTML2O().init(jax.random.key(0)))
    """
    return check_meta_params(meta_params, LSTML2O).transform(total_steps=total_steps)
