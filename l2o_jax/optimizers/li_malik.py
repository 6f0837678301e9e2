"""Li & Malik (2017): a learned optimizer *policy* over averaged recent iterates, gradients and objective values.

Per coordinate, the optimizer keeps the last ``window`` (3) iterates, gradients and objective values and their
averages ``x̄(i) = 1/min(i+1, 3) Σ_{j=max(i-2, 0)}^{i} x(j)`` (likewise ``ḡ(i)`` and ``f̄(i)``). The policy's
observation is the paper's three observation features at lag one: the averaged gradient ``ḡ(i)``, the change of
the averaged iterate ``x̄(i) - x̄(i-1)`` (both log/sign encoded as in Andrychowicz et al., instead of the paper's
``+1`` / ``+0.1`` normalisers, so that one policy copes with the gradient scales of different datasets) and the
relative change of the averaged objective ``(f̄(i) - f̄(i-1)) / |f̄(i-1)|``. A single-layer LSTM (128 units),
shared by all coordinates, maps the observation to ``μ``; the step is Gaussian,

    Δx ~ N(lr·μ, (lr·σ)²)       lr = exp(log_lr), σ = exp(log_std), both meta-parameters,

sampled for training by REINFORCE (pass ``key=`` to ``update``) and its mean ``lr·μ`` otherwise (test time, and
ES/PES, which explore in parameter space instead). The output layer starts near zero: a fresh policy takes tiny
steps.

Training (``l2o_jax.policy_search``): the reward is the negative objective along the trajectory. The paper uses
guided policy search (GPS), which alternates trajectory optimisation under fitted local linear-Gaussian dynamics
with supervised regression of the policy; its cost is cubic in the state dimension, which is why the paper needs
a convolutional variant with dynamics shared across coordinates: ``l2o_jax.gps.GuidedPolicySearch``. The
model-free alternatives are ES and PES over the policy's parameters (``l2o_jax.meta.estimators``) and REINFORCE
with a baseline over its Gaussian actions (``l2o_jax.policy_search.Reinforce``). They need only rollouts, and PES
is unbiased over long horizons, which GPS's local models are not. All four share the estimator interface.

References:
  Li and Malik, Learning to optimize neural nets, arXiv:1703.00441, 2017.
  Li and Malik, Learning to optimize, ICLR 2017 (the observation features).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from l2o_jax.features import log_sign
from l2o_jax.nn import CoordinateLSTM
from l2o_jax.optimizers.base import MetaParams
from l2o_jax.optimizers.base import check_meta_params
from l2o_jax.optimizers.base import flatten_features
from l2o_jax.optimizers.base import num_coordinates
from l2o_jax.optimizers.base import unflatten_features
from l2o_jax.optimizers.registry import register_family

NUM_OBSERVATIONS = 5  # log|ḡ|, sign ḡ, log|Δx̄|, sign Δx̄, relative change of f̄


class History(NamedTuple):
    """The last ``window`` iterates, gradients and objective values, newest first.

    Attributes:
      iterates, gradients: pytrees like the parameters, leaves of shape ``(window, *param.shape)``.
      values: ``(window,)`` objective values.
      count: how many steps have been pushed (entries past ``count`` are unused zeros).
    """

    iterates: Any
    gradients: Any
    values: jax.Array
    count: jax.Array


def init_history(params, window: int = 3) -> History:
    """An empty history for ``params``.

    Example:
      >>> history = init_history({'w': jnp.zeros(4)})
      >>> history.iterates['w'].shape
      (3, 4)
    """
    zeros = lambda p: jnp.zeros((window,) + jnp.shape(p), jnp.float32)
    return History(
        iterates=jax.tree.map(zeros, params),
        gradients=jax.tree.map(zeros, params),
        values=jnp.zeros((window,), jnp.float32),
        count=jnp.zeros([], jnp.int32),
    )


def push_history(history: History, params, grads, value) -> History:
    """Adds step ``i``'s iterate, gradient and objective value, dropping the oldest.

    Example:
      >>> history = push_history(init_history(params), params, grads, loss)
    """
    push = lambda buffer, x: jnp.concatenate([jnp.asarray(x, jnp.float32)[None], buffer[:-1]])
    return History(
        iterates=jax.tree.map(push, history.iterates, params),
        gradients=jax.tree.map(push, history.gradients, grads),
        values=push(history.values, value),
        count=history.count + 1,
    )


def history_averages(history: History) -> tuple[Any, Any, jax.Array]:
    """``(x̄, ḡ, f̄)``: the means over the ``min(count, window)`` newest entries (the paper's averages).

    Example:
      >>> x_bar, g_bar, f_bar = history_averages(push_history(init_history(params), params, grads, loss))
    """
    window = history.values.shape[0]
    used = jnp.minimum(history.count, window)
    weights = (jnp.arange(window) < used) / jnp.maximum(used, 1).astype(jnp.float32)
    average = lambda buffer: jnp.tensordot(weights, buffer, axes=1)
    return (jax.tree.map(average, history.iterates), jax.tree.map(average, history.gradients), average(history.values))


def observation_features(x_bar, g_bar, f_bar, previous_x_bar, previous_f_bar, log_sign_p: float = 10.0):
    """The policy's per-coordinate input: a pytree like the parameters with ``NUM_OBSERVATIONS`` trailing channels.

    Example:
      >>> feats = observation_features(x_bar, g_bar, f_bar, x_bar, f_bar)
    """
    relative_change = jnp.clip((f_bar - previous_f_bar) / (jnp.abs(previous_f_bar) + 1e-8), -10.0, 10.0)

    def per_leaf(x, g, previous_x):
        channels = [*log_sign(g, log_sign_p), *log_sign(x - previous_x, log_sign_p)]
        return jnp.stack(channels + [jnp.broadcast_to(relative_change, x.shape)], -1)

    return jax.tree.map(per_leaf, x_bar, g_bar, previous_x_bar)


class LiMalikState(NamedTuple):
    """Optimizer state: the history behind the averages, last step's averages, the LSTM carry."""

    history: History
    previous_x_bar: Any
    previous_f_bar: jax.Array
    recurrent: Any


class LiMalikPolicy(nn.Module):
    """Coordinatewise single-layer LSTM and a linear head: ``(carry, observations (P, F)) -> (carry, μ (P,))``."""

    hidden: int
    output_init_scale: float

    @nn.compact
    def __call__(self, carry, rows):
        carry, h = CoordinateLSTM(self.hidden, num_layers=1)(carry, rows)
        head = nn.Dense(
            1, kernel_init=nn.initializers.normal(self.output_init_scale), bias_init=nn.initializers.zeros, name="head"
        )
        return carry, head(h)[:, 0]


@register_family
@dataclasses.dataclass(frozen=True)
class LiMalikL2O:
    """Config of Li & Malik's learned optimizer policy (see the module docstring).

    Attributes:
      hidden: LSTM units (the paper: 128).
      window: steps averaged by the features (the paper: 3).
      init_lr: initial ``exp(log_lr)``, the scale of the steps.
      init_std: initial ``σ`` of the Gaussian policy, relative to ``lr``.
      output_init_scale: standard deviation of the head's initial weights (small: small first steps).
      log_sign_p: the constant of the log/sign encoding.

    Example:
      >>> meta_params = LiMalikL2O().init(jax.random.key(0))
      >>> tx = li_malik_l2o(meta_params)
    """

    reads_computation = False  # the policy sees each coordinate alone
    needs_total_steps = False

    hidden: int = 128
    window: int = 3
    init_lr: float = 3e-2
    init_std: float = 0.1
    output_init_scale: float = 1e-4
    log_sign_p: float = 10.0

    def __post_init__(self):
        if self.window < 1 or self.hidden < 1:
            raise ValueError(f"LiMalikL2O needs window >= 1 and hidden >= 1, got {self.window}, {self.hidden}.")
        if not (self.init_lr > 0 and self.init_std > 0):
            raise ValueError(f"LiMalikL2O needs positive init_lr and init_std, got {self.init_lr}, {self.init_std}.")

    def describe_step(self) -> str:
        """How a step is formed, in words, for reports.

        Example:
          >>> LiMalikL2O(init_lr=0.03).describe_step()
          'update = lr * mu: the LSTM policy's output mu is the whole step ...'
        """
        return (
            "update = lr * mu: the LSTM policy's output mu is the whole step (no hand-made direction, no bound), "
            f"scaled by a learned global step size lr (initially {self.init_lr:g}); it is the mean of the Gaussian "
            "policy N(lr * mu, (lr * sigma)^2), which REINFORCE samples during training."
        )

    def network(self) -> LiMalikPolicy:
        return LiMalikPolicy(self.hidden, self.output_init_scale)

    def initial_recurrent(self, params):
        return CoordinateLSTM.initialize_carry(num_coordinates(params), self.hidden, 1, jnp.float32)

    def init(self, key: jax.Array) -> MetaParams:
        """Fresh policy parameters.

        Example:
          >>> meta_params = LiMalikL2O(hidden=32).init(jax.random.key(0))
        """
        rows = jnp.zeros((1, NUM_OBSERVATIONS), jnp.float32)
        carry = CoordinateLSTM.initialize_carry(1, self.hidden, 1, jnp.float32)
        variables = self.network().init(key, carry, rows)
        arrays = {
            "net": variables["params"],
            "log_lr": jnp.log(jnp.float32(self.init_lr)),
            "log_std": jnp.log(jnp.float32(self.init_std)),
        }
        return MetaParams(arrays=arrays, config=self)

    def transform(self, meta_params: MetaParams, **options) -> optax.GradientTransformationExtraArgs:
        """The policy as an optax transform; architecture options (``activations=``...) are not needed."""
        del options
        return li_malik_l2o(meta_params)


def init_li_malik_state(params, config: LiMalikL2O) -> LiMalikState:
    """The optimizer state for a fresh optimizee.

    Example:
      >>> state = init_li_malik_state(params, LiMalikL2O())
    """
    return LiMalikState(
        history=init_history(params, config.window),
        previous_x_bar=jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params),
        previous_f_bar=jnp.zeros([], jnp.float32),
        recurrent=config.initial_recurrent(params),
    )


def gaussian_log_prob(x: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """Elementwise log-density of ``N(mean, std²)`` at ``x``."""
    return -0.5 * jnp.square((x - mean) / std) - jnp.log(std) - 0.5 * math.log(2 * math.pi)


def li_malik_step(
    meta_params: MetaParams, state: LiMalikState, grads, params, value, key: jax.Array | None = None
) -> tuple[Any, LiMalikState, jax.Array]:
    """One step of the policy: ``(updates, new_state, log_prob)``.

    With ``key`` the step is drawn from the Gaussian policy and ``log_prob`` is its log-density summed over
    coordinates (differentiable in ``meta_params.arrays``, the step itself is not); without, the step is the
    policy's mean and ``log_prob`` is 0.

    Example:
      >>> updates, state, log_prob = li_malik_step(meta_params, state, grads, params, loss, jax.random.key(0))
    """
    config: LiMalikL2O = meta_params.config
    arrays = meta_params.arrays
    history = push_history(state.history, params, grads, value)
    x_bar, g_bar, f_bar = history_averages(history)
    # Before the first step there is no previous average: the objective's change is then zero.
    previous_f_bar = jnp.where(state.history.count == 0, f_bar, state.previous_f_bar)
    feats = observation_features(x_bar, g_bar, f_bar, state.previous_x_bar, previous_f_bar, config.log_sign_p)
    rows, how = flatten_features(feats)
    recurrent, mu = config.network().apply({"params": arrays["net"]}, state.recurrent, rows)
    lr = jnp.exp(arrays["log_lr"])
    mean = lr * mu
    if key is None:
        step, log_prob = mean, jnp.zeros([], jnp.float32)
    else:
        std = lr * jnp.exp(arrays["log_std"])
        step = jax.lax.stop_gradient(mean + std * jax.random.normal(key, mean.shape, mean.dtype))
        log_prob = gaussian_log_prob(step, mean, std).sum()
    updates = jax.tree.map(
        lambda u, p: u[..., 0].astype(jnp.asarray(p).dtype), unflatten_features(step[:, None], how), params
    )
    return updates, LiMalikState(history, x_bar, f_bar, recurrent), log_prob


def li_malik_l2o(meta_params: MetaParams) -> optax.GradientTransformationExtraArgs:
    """Li & Malik's learned optimizer policy as an optax transformation.

    ``update(grads, state, params, *, value, key=None)`` needs ``params`` and the objective ``value`` (optax's
    extra argument); with ``key=`` it samples the Gaussian policy, otherwise it takes the mean step.

    Args:
      meta_params: from ``LiMalikL2O(...).init(key)``, meta-training or ``load_meta_params``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    References:
      Li and Malik, Learning to optimize neural nets, arXiv:1703.00441, 2017.

    Example:
      >>> tx = optax.chain(optax.clip_by_global_norm(1.0), li_malik_l2o(LiMalikL2O().init(jax.random.key(0))))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state, params, value=loss)
    """
    meta_params = check_meta_params(meta_params, LiMalikL2O)
    config: LiMalikL2O = meta_params.config

    def init_fn(params):
        return init_li_malik_state(params, config)

    def update_fn(updates, state, params=None, *, value=None, key=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                "li_malik_l2o's update needs the current parameters: call "
                "tx.update(grads, state, params, value=loss) (the policy reads the iterates)."
            )
        if value is None:
            raise ValueError(
                "li_malik_l2o's update needs the objective value: call "
                "tx.update(grads, state, params, value=loss) (optax.chain passes value= on; with "
                "flax.nnx use optimizer.update(model, grads, value=loss))."
            )
        updates, state, _ = li_malik_step(meta_params, state, updates, params, value, key)
        return updates, state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
