"""The rest of guided policy search for Li & Malik's policy: sampled runs, the shared local controllers, the
KL-bound rule, the supervised S-step and the ``GuidedPolicySearch`` estimator (see ``l2o_jax.gps``)."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from l2o_jax.gps.lqr import QuadraticCost
from l2o_jax.gps.lqr import fit_linear_gaussian
from l2o_jax.gps.lqr import forward_pass
from l2o_jax.gps.lqr import kl_constrained_lqr
from l2o_jax.meta.unroll import init_state
from l2o_jax.meta.unroll import rollout
from l2o_jax.optimizers import MetaParams
from l2o_jax.optimizers import check_meta_params
from l2o_jax.optimizers.li_malik import LiMalikL2O
from l2o_jax.optimizers.li_malik import init_li_malik_state
from l2o_jax.optimizers.li_malik import li_malik_step

STATE_DIM = 3  # g_t, g_{t-1}, u_{t-1}


class Trajectories(NamedTuple):
    """Sampled runs of the global policy, coordinates raveled: ``(N, T, P)`` arrays and ``(N, T)`` values."""

    params: jax.Array
    grads: jax.Array
    values: jax.Array
    means: jax.Array
    actions: jax.Array


def recorded_rollout(meta_params: MetaParams, task, task_key: jax.Array, action_key: jax.Array, length: int):
    """Trains a fresh optimizee ``length`` steps with Gaussian steps around the policy's mean; records everything.

    ``task_key`` fixes the initialisation and batches as in ``l2o_jax.policy_search.sampled_rollout``.

    Returns:
      :class:`Trajectories` of one run (no leading axis): parameters, gradients and policy means and steps as
      ``(length, P)`` rows in ``ravel_pytree`` order, objective values ``(length,)``.

    Example:
      >>> run = recorded_rollout(meta_params, task, jax.random.key(0), jax.random.key(1), 20)
    """
    std = jnp.exp(meta_params.arrays["log_lr"] + meta_params.arrays["log_std"])

    def rule(grads, state, params, loss, noise_key):
        mean, state, _ = li_malik_step(meta_params, state, grads, params, loss)
        mean, unravel = ravel_pytree(mean)
        action = jax.lax.stop_gradient(mean + std * jax.random.normal(noise_key, mean.shape, mean.dtype))
        return unravel(action), state, (ravel_pytree(params)[0], ravel_pytree(grads)[0], mean, action)

    start = init_state(task, lambda params: init_li_malik_state(params, meta_params.config), task_key)
    _, trace = rollout(task, rule, start, length, step_inputs=jax.random.split(action_key, length))
    flat_params, flat_grads, means, actions = trace.aux
    return Trajectories(flat_params, flat_grads, trace.losses, means, actions)


def coordinate_states(runs: Trajectories) -> jax.Array:
    """``x_t = (g_t, g_{t-1}, u_{t-1})`` per coordinate (zeros before the first step): ``(N, T, P, 3)``."""
    shift = lambda a: jnp.concatenate([jnp.zeros_like(a[:, :1]), a[:, :-1]], 1)
    return jnp.stack([runs.grads, shift(runs.grads), shift(runs.actions)], -1)


def supervised_kl(arrays, meta_params: MetaParams, runs: Trajectories, target_mean, target_var) -> jax.Array:
    """Mean ``KL(π_θ(u | history) ‖ N(target_mean, target_var))`` over sampled coordinates and the first ``T'`` steps.

    The policy is re-run along the recorded histories (teacher forcing: its own steps are not resampled), on the
    raveled parameters, which the coordinatewise policy treats exactly as the pytree; differentiable in ``arrays``.

    Args:
      arrays: the policy's meta-parameter arrays (differentiated).
      meta_params: the policy whose config and structure ``arrays`` has.
      runs: :class:`Trajectories` with a leading ``N`` axis.
      target_mean: ``(N, T', P)`` with ``T' <= T``: the local controllers' means at the sampled states.
      target_var: ``(T',)``: their variances.

    Example:
      >>> loss, grads = jax.value_and_grad(supervised_kl)(meta.arrays, meta, runs, target_mean, target_var)
    """
    meta = meta_params.replace(arrays=arrays)
    steps = target_mean.shape[1]

    def policy_means(params, grads, values):
        @jax.checkpoint
        def step(state, inputs):
            mean, state, _ = li_malik_step(meta, state, inputs[1], inputs[0], inputs[2])
            return state, mean

        state = init_li_malik_state(params[0], meta.config)
        return jax.lax.scan(step, state, (params[:steps], grads[:steps], values[:steps]))[1]

    means = jax.vmap(policy_means)(runs.params, runs.grads, runs.values)
    var = jnp.exp(2 * (arrays["log_lr"] + arrays["log_std"]))
    target_var = target_var[:, None]
    kl = 0.5 * (jnp.log(target_var / var) + (var + jnp.square(means - target_mean)) / target_var - 1)
    return kl.mean()


def _rms(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.mean(jnp.square(x)) + 1e-30)


def local_controllers(
    runs: Trajectories,
    policy_var,
    kl_bound: float,
    prior_strength=0.1,
    curvature_floor=1e-2,
    cost_gradient: str = "current",
):
    """Steps 2-3 of the module docstring on sampled runs: the local controllers' means and variances.

    Args:
      runs: :class:`Trajectories` with a leading ``N`` axis, ``T`` steps.
      policy_var: the global policy's step variance ``(lr σ)²``.
      kl_bound: ``ε``, the KL bound per coordinate's trajectory.
      prior_strength: weight of the all-steps fit in each step's fit.
      curvature_floor: the least curvature ``b_t`` of the cost, in units of RMS gradient per RMS step.
      cost_gradient: which gradient reads a step's decrease of the objective. ``'current'``: the one the step was
        taken from, ``ℓ_t = w_t (g_t u_t + ½ b_t u_t²)``; its minibatch noise, which the step follows, counts as
        progress, so the model over-promises large steps. ``'next'``: the one after it, on a fresh minibatch,
        ``ℓ = w_t (g_{t+1} u_t - ½ b_t u_t²)`` (exact for a quadratic objective), a quadratic in ``x_{t+1}``
        charged at step ``t + 1``; with ``g_{t+1} ≈ a_t g_t + B_t u_t`` its mean is ``w_t (a_t g_t u_t + ½ c_t u_t²)``,
        ``c_t = max(B_t, curvature_floor)`` (``b_t = 2 B_t - c_t``), so only the gradient's predictable part is
        credited. The last step's decrease falls after the horizon and is not charged.

    Returns:
      ``(target_mean (N, T-1, P), target_var (T-1,), info)``: the controllers' steps at the sampled states of the
      first ``T - 1`` steps (the last has no observed transition) and a dict with ``eta``, ``kl``, the fitted
      ``dynamics`` and ``controller`` (normalised units), the ``scales`` of ``(x, u)`` and ``predicted_change``,
      the change of the run's mean objective that the cost model predicts from following the controllers
      instead of the policy's linearisation.

    Example:
      >>> target_mean, target_var, info = local_controllers(runs, policy_var, kl_bound=1.0)
    """
    n, horizon, p = runs.actions.shape
    states = coordinate_states(runs)
    scale_g, scale_u = _rms(runs.grads), _rms(runs.actions)
    x_scale = jnp.stack([scale_g, scale_g, scale_u])
    pooled = lambda a: jnp.moveaxis(a, 1, 0).reshape(horizon, n * p, -1)  # (T, N·P, d)
    x = pooled(states / x_scale)
    u = pooled(runs.actions[..., None] / scale_u)
    u_mean = pooled(runs.means[..., None] / scale_u)
    dynamics = fit_linear_gaussian(jnp.concatenate([x[:-1], u[:-1]], -1), x[1:], prior_strength)
    policy = fit_linear_gaussian(x[:-1], u_mean[:-1], prior_strength)
    prior = policy._replace(cov=policy.cov + policy_var / scale_u**2)
    steps = horizon - 1
    # ℓ_t = w_t (g u + ½ b u²), in units of scale_g · scale_u.
    weights = (horizon - jnp.arange(steps)) / horizon
    slope = dynamics.gain[:, 0, STATE_DIM]  # ∂g_{t+1}/∂u_t
    curvature = jnp.maximum(slope, curvature_floor)
    hessian = jnp.zeros((steps, STATE_DIM + 1, STATE_DIM + 1))
    if cost_gradient == "current":
        hessian = hessian.at[:, 0, STATE_DIM].set(weights).at[:, STATE_DIM, 0].set(weights)
        hessian = hessian.at[:, STATE_DIM, STATE_DIM].set(weights * curvature)
    elif cost_gradient == "next":
        # Step t's decrease, read at t + 1 from x_{t+1} = (g_{t+1}, g_t, u_t): entries (0, 2) and (2, 2).
        previous = lambda a: jnp.concatenate([jnp.zeros_like(a[:1]), a[:-1]])
        w, b = previous(weights), previous(2 * slope - curvature)
        hessian = hessian.at[:, 0, 2].set(w).at[:, 2, 0].set(w).at[:, 2, 2].set(-w * b)
    else:
        raise ValueError(f"cost_gradient must be 'current' or 'next', got {cost_gradient!r}.")
    cost = QuadraticCost(hessian, jnp.zeros((steps, STATE_DIM + 1)))
    initial_mean = x[0].mean(0)
    initial_cov = jnp.cov(x[0].T) + 1e-6 * jnp.eye(STATE_DIM)
    controller, eta, kl = kl_constrained_lqr(dynamics, cost, prior, initial_mean, initial_cov, kl_bound)
    model_cost = lambda c: forward_pass(dynamics, c, cost, prior, initial_mean, initial_cov)[0].sum()
    # Back in objective units: every coordinate contributes its cost, scaled by scale_g · scale_u.
    predicted_change = (model_cost(controller) - model_cost(prior)) * p * scale_g * scale_u
    target = jnp.einsum("tnj,tj->tn", x[:-1], controller.gain[:, 0]) + controller.bias[:, 0, None]
    target_mean = jnp.moveaxis(target.reshape(steps, n, p), 0, 1) * scale_u
    target_var = controller.cov[:, 0, 0] * scale_u**2
    info = {
        "eta": eta,
        "kl": kl,
        "dynamics": dynamics,
        "controller": controller,
        "scales": (x_scale, scale_u),
        "predicted_change": predicted_change,
    }
    return target_mean, target_var, info


class KLBoundState(NamedTuple):
    """What ``GuidedPolicySearch(adapt_kl_bound=True)`` carries between iterations (scalars).

    Attributes:
      kl_bound: the current ``ε``.
      objective: the last iteration's sampled mean objective (NaN before the first).
      predicted: the mean objective the last C-step's model predicted for its controllers.
    """

    kl_bound: jax.Array
    objective: jax.Array
    predicted: jax.Array


def adapt_kl_bound(state: KLBoundState, objective, limits: tuple[float, float]) -> KLBoundState:
    """MDGPS's step-size rule: ``ε ← ε · clip(Δ_pred / (2 max(Δ_pred - Δ_actual, 1e-4)), 0.1, 5)`` within ``limits``.

    ``Δ_pred = J_prev - J_predicted`` is the improvement the last C-step's model promised, ``Δ_actual = J_prev - J``
    what the new policy's samples gave: a step that delivers half its promise keeps ``ε``, one that delivers more
    grows it (at most 5x), one that delivers nothing halves it, a worse objective or a model that promised nothing
    shrinks it further (at most 10x). Unlike Montgomery & Levine's Laplace estimates under the new dynamics, ``J``
    here is the sampled mean objective. The first iteration (no previous objective) keeps ``ε``.

    Example:
      >>> adapt_kl_bound(KLBoundState(100.0, 1.0, 0.5), objective=0.75, limits=(1.0, 1e4)).kl_bound  # kept
    """
    promised = state.objective - state.predicted
    delivered = state.objective - objective
    multiplier = jnp.clip(promised / (2 * jnp.maximum(promised - delivered, 1e-4)), 0.1, 5.0)
    multiplier = jnp.where(jnp.isfinite(multiplier), multiplier, 1.0)
    return state._replace(kl_bound=jnp.clip(state.kl_bound * multiplier, *limits), objective=objective)


@dataclasses.dataclass(frozen=True)
class GuidedPolicySearch:
    """Mirror-descent guided policy search for ``LiMalikL2O`` policies (the module docstring has the equations).

    Each ``estimate`` samples ``num_trajectories`` fresh optimizees run ``length`` steps by the Gaussian policy,
    fits shared per-coordinate linear-Gaussian dynamics, solves for the local controllers within ``kl_bound``
    of the policy's linearisation and returns the gradient of the policy's KL to them; the reported loss is
    the sampled runs' mean objective, as for ``l2o_jax.policy_search.Reinforce``.

    Attributes:
      length: inner steps per sampled run (at least 3).
      num_trajectories: sampled optimizees per iteration.
      kl_bound: ``ε``, the KL between local controllers and the policy per coordinate's trajectory; the
        policy's steps have a small variance, so useful bounds are large (``experiments/li_malik.py`` uses 1000).
      prior_strength: weight of the all-steps fit in each step's dynamics fit.
      curvature_floor: least curvature of the cost model, in RMS gradient per RMS step.
      train_std: also fit the policy's step noise ``σ`` to the controllers' covariances (MDGPS does). Off by
        default: the linearisation's residual inflates ``S̄`` and with it ``S_t``, so a fitted ``σ`` grows
        and only adds noise to the runs; the KL's mean term still trains the LSTM and ``lr``.
      adapt_kl_bound: start from ``kl_bound`` and adapt it each iteration by MDGPS's rule
        (:func:`adapt_kl_bound`), within ``kl_bound_limits``; the state is then a :class:`KLBoundState`.
      kl_bound_limits: the range the adapted bound stays in.
      cost_gradient: ``'current'`` or ``'next'``: which gradient reads a step's decrease in the controllers'
        cost (:func:`local_controllers`).

    Example:
      >>> estimator = GuidedPolicySearch(length=50, num_trajectories=4, kl_bound=100.0)
      >>> state = estimator.init(meta_params, task, key)
      >>> loss, grads, state = estimator.estimate(meta_params, task, state, key)
    """

    length: int = 50
    num_trajectories: int = 4
    kl_bound: float = 100.0
    prior_strength: float = 0.1
    curvature_floor: float = 1e-2
    train_std: bool = False
    adapt_kl_bound: bool = False
    kl_bound_limits: tuple[float, float] = (1.0, 1e4)
    cost_gradient: str = "current"

    def __post_init__(self):
        if self.length < 3 or self.num_trajectories < 1 or not self.kl_bound > 0:
            raise ValueError(
                "GuidedPolicySearch needs length >= 3, num_trajectories >= 1 and kl_bound > 0, got "
                f"{self.length}, {self.num_trajectories}, {self.kl_bound}."
            )
        if self.cost_gradient not in ("current", "next"):
            raise ValueError(
                f"GuidedPolicySearch.cost_gradient must be 'current' or 'next', got {self.cost_gradient!r}."
            )

    def init(self, meta_params, task, key):
        del task, key
        check_meta_params(meta_params, LiMalikL2O)
        if not self.adapt_kl_bound:
            return ()
        return KLBoundState(jnp.float32(self.kl_bound), jnp.float32(jnp.nan), jnp.float32(jnp.nan))

    def sample(self, meta_params: MetaParams, task, key) -> Trajectories:
        """``num_trajectories`` runs of fresh optimizees (leading axis ``N``)."""
        task_keys = jax.random.split(key, self.num_trajectories)
        run = lambda k: recorded_rollout(meta_params, task, k, jax.random.fold_in(k, 1), self.length)
        return jax.vmap(run)(task_keys)

    def estimate(self, meta_params: MetaParams, task, state, key):
        runs = self.sample(meta_params, task, key)
        policy_var = jnp.exp(2 * (meta_params.arrays["log_lr"] + meta_params.arrays["log_std"]))
        objective = runs.values.mean()
        if self.adapt_kl_bound:
            state = adapt_kl_bound(state, objective, self.kl_bound_limits)
        kl_bound = state.kl_bound if self.adapt_kl_bound else self.kl_bound
        target_mean, target_var, info = local_controllers(
            runs, policy_var, kl_bound, self.prior_strength, self.curvature_floor, self.cost_gradient
        )
        if self.adapt_kl_bound:
            state = state._replace(predicted=objective + info["predicted_change"])
        grads = jax.grad(supervised_kl)(meta_params.arrays, meta_params, runs, target_mean, target_var)
        if not self.train_std:
            grads = {**grads, "log_std": jnp.zeros_like(grads["log_std"])}
        return objective, grads, state
