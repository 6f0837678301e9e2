"""Guided policy search for Li & Malik's optimizer policy: mirror-descent GPS in its convolutional form.

Every coordinate of every sampled optimizee is one trajectory of a small system whose dynamics, cost and local
controllers are shared by all coordinates (Li & Malik's convolutional GPS), so the cost of a GPS iteration is
linear in the number of parameters and cubic only in the per-coordinate state's size. Per coordinate, the
state is ``x_t = (g_t, g_{t-1}, u_{t-1})`` (this step's and last step's minibatch gradient, last step) and the
action ``u_t`` is the step. One iteration (:meth:`GuidedPolicySearch.estimate`), on-policy as in MDGPS:

1. **Samples**: ``num_trajectories`` fresh optimizees trained by the global policy with Gaussian steps.
2. **Dynamics**: per step, ``x_{t+1} ~ N(A_t x_t + B_t u_t + c_t, Σ_t)`` by least squares over all coordinates
   of all trajectories, regularised towards the fit over all steps (``prior_strength``) and a small ridge
   (:func:`fit_linear_gaussian`). The global policy is linearised the same way,
   ``π̄_t(u | x) = N(K̄_t x + k̄_t, S̄_t)``, regressing its mean steps on the sampled states.
3. **Local controllers** ``p_t(u | x) = N(K_t x + k_t, S_t)``: ``min_p E_p[Σ_t ℓ_t] s.t. KL(p ‖ π̄) ≤ ε``. The
   cost is the second-order model of the objective's decrease by the step, weighted by the steps still to
   come, ``ℓ_t = w_t (g_t u_t + ½ b_t u_t²)`` with ``w_t = (T - t) / T`` (so ``Σ_t ℓ_t`` is the mean objective
   along the run, up to a constant) and ``b_t = max(∂g_{t+1}/∂u_t, curvature_floor)`` read off ``B_t``. For a
   Lagrange multiplier ``η``, the minimiser of ``E_p[Σ ℓ_t - η log π̄_t(u_t | x_t)] - η H(p)`` is found by LQR
   (:func:`kl_lqr`): with ``z = [x; u]``, ``ℓ_t(z) = ½ zᵀ C_t z + d_tᵀ z`` and ``V_T = 0, v_T = 0``, the backward
   Riccati recursion::

       Q_zz = C_t + η Mᵀ S̄_t⁻¹ M + F_tᵀ V_{t+1} F_t,   q_z = d_t - η Mᵀ S̄_t⁻¹ k̄_t + F_tᵀ (V_{t+1} f_t + v_{t+1})
       K_t = -Q_uu⁻¹ Q_ux,   k_t = -Q_uu⁻¹ q_u,   S_t = η Q_uu⁻¹
       V_t = Q_xx + Q_xu K_t,   v_t = q_x + Q_xu k_t

   with ``M = [-K̄_t, I]``, ``F_t = [A_t, B_t]``, ``f_t = c_t``. ``η`` is set by bisection on ``log η`` so that
   ``KL(p ‖ π̄)``, computed under the state distribution ``p`` induces (:func:`forward_pass`), meets ``ε``
   (``kl_bound``, per coordinate's trajectory) (:func:`kl_constrained_lqr`).
4. **Supervised step**: the gradient of ``E_{x_t ~ samples} KL(π_θ(u | history_t) ‖ p_t(u | x_t))`` in the
   LSTM's parameters, the policy re-run along the sampled histories (:func:`supervised_kl`). ``meta_train``'s
   optax meta-optimizer applies it, so each outer step is one C-step and one gradient of the S-step.

Simplifications against the papers: ``ε`` is fixed unless ``adapt_kl_bound`` (then MDGPS's rule from predicted
and actual improvement, with the sampled objective as the actual one: :func:`adapt_kl_bound`), samples come from
the global policy only, the S-step is one gradient per C-step, and ``σ`` is not fitted by default (``train_std``).

Everything is computed in units where each state and action dimension has unit root mean square (the KL does
not change; the cost is divided by a positive constant), so float32 serves gradients and steps of any scale.

References:
  Li and Malik, Learning to optimize neural nets, arXiv:1703.00441, 2017 (convolutional GPS for optimizers).
  Levine and Abbeel, Learning neural network policies with guided policy search under unknown dynamics,
  NeurIPS 2014 (fitted linear-Gaussian dynamics, LQR under a KL bound).
  Montgomery and Levine, Guided policy search via approximate mirror descent, NeurIPS 2016 (MDGPS).

Example:
  >>> from l2o_jax.meta import MetaTrainConfig, meta_train
  >>> config = MetaTrainConfig(LiMalikL2O(hidden=32), family, GuidedPolicySearch(length=50), meta_lr=1e-2)
  >>> result = meta_train(config, 'runs/li_malik_gps')
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from l2o_jax.meta.unroll import init_state
from l2o_jax.meta.unroll import rollout
from l2o_jax.optimizers import MetaParams
from l2o_jax.optimizers import check_meta_params
from l2o_jax.optimizers.li_malik import LiMalikL2O
from l2o_jax.optimizers.li_malik import init_li_malik_state
from l2o_jax.optimizers.li_malik import li_malik_step

STATE_DIM = 3  # g_t, g_{t-1}, u_{t-1}


class LinearGaussian(NamedTuple):
    """Time-varying ``y_t ~ N(gain_t z_t + bias_t, cov_t)``: dynamics (z = [x; u]) or a controller (z = x).

    Attributes:
      gain: ``(T, dy, dz)``.
      bias: ``(T, dy)``.
      cov: ``(T, dy, dy)``.
    """

    gain: jax.Array
    bias: jax.Array
    cov: jax.Array


class QuadraticCost(NamedTuple):
    """``ℓ_t(z) = ½ zᵀ hessian_t z + gradient_tᵀ z`` over ``z = [x; u]``: ``(T, n, n)`` and ``(T, n)``."""

    hessian: jax.Array
    gradient: jax.Array


class Trajectories(NamedTuple):
    """Sampled runs of the global policy, coordinates raveled: ``(N, T, P)`` arrays and ``(N, T)`` values."""

    params: jax.Array
    grads: jax.Array
    values: jax.Array
    means: jax.Array
    actions: jax.Array


def fit_linear_gaussian(inputs: jax.Array, outputs: jax.Array, prior_strength: float = 0.1, ridge: float = 1e-6):
    """Per-step least squares ``outputs_t ≈ gain_t inputs_t + bias_t`` over the samples' axis, with residual cov.

    Each step's second moments are blended with the mean over all steps, weighted ``prior_strength`` (0: each
    step alone; large: one time-invariant fit), and ``ridge`` times their diagonal is added.

    Args:
      inputs: ``(T, N, dz)``.
      outputs: ``(T, N, dy)``.

    Returns:
      A :class:`LinearGaussian`.

    Example:
      >>> dynamics = fit_linear_gaussian(jnp.concatenate([x[:-1], u[:-1]], -1), x[1:])
    """
    z = jnp.concatenate([inputs, jnp.ones(inputs.shape[:-1] + (1,), inputs.dtype)], -1)
    zz = jnp.einsum("tni,tnj->tij", z, z) / z.shape[1]
    zy = jnp.einsum("tni,tnj->tij", z, outputs) / z.shape[1]
    zz_prior, zy_prior = zz.mean(0), zy.mean(0)
    lhs = zz + prior_strength * zz_prior + ridge * jnp.diag(jnp.diag(zz_prior))
    weights = jnp.linalg.solve(lhs, zy + prior_strength * zy_prior)  # (T, dz + 1, dy)
    residuals = outputs - jnp.einsum("tni,tij->tnj", z, weights)
    cov = jnp.einsum("tni,tnj->tij", residuals, residuals) / z.shape[1]
    cov = (cov + prior_strength * cov.mean(0)) / (1 + prior_strength)
    cov = cov + 1e-6 * jnp.eye(outputs.shape[-1])
    return LinearGaussian(jnp.swapaxes(weights[:, :-1], 1, 2), weights[:, -1], cov)


def _sym(m):
    return (m + jnp.swapaxes(m, -1, -2)) / 2


def kl_lqr(
    dynamics: LinearGaussian, cost: QuadraticCost, prior: LinearGaussian, eta
) -> tuple[LinearGaussian, jax.Array]:
    """The linear-Gaussian controller minimising ``E[Σ ℓ_t - η log prior_t(u|x)] - η H`` (module docstring).

    ``eta = 0`` gives the deterministic LQR controller of ``cost`` alone (zero covariance).

    Returns:
      ``(controller, ok)``: a :class:`LinearGaussian` over ``x`` and whether every ``Q_uu`` was positive definite.

    Example:
      >>> controller, ok = kl_lqr(dynamics, cost, prior, 1.0)
    """
    dx = dynamics.gain.shape[1]
    precision = jnp.linalg.inv(prior.cov)  # (T, du, du)
    du = precision.shape[-1]
    m = jnp.concatenate([-prior.gain, jnp.broadcast_to(jnp.eye(du), prior.gain.shape[:1] + (du, du))], -1)
    hessian = cost.hessian + eta * jnp.einsum("tai,tab,tbj->tij", m, precision, m)
    gradient = cost.gradient - eta * jnp.einsum("tai,tab,tb->ti", m, precision, prior.bias)

    def backward(value, inputs):
        v_xx, v_x = value
        f_gain, f_bias, c_zz, c_z = inputs
        q_zz = _sym(c_zz + f_gain.T @ v_xx @ f_gain)
        q_z = c_z + f_gain.T @ (v_xx @ f_bias + v_x)
        q_uu, q_ux, q_u = q_zz[dx:, dx:], q_zz[dx:, :dx], q_z[dx:]
        q_uu_inv = jnp.linalg.inv(q_uu)
        gain, bias = -q_uu_inv @ q_ux, -q_uu_inv @ q_u
        v_xx = _sym(q_zz[:dx, :dx] + q_ux.T @ gain)
        v_x = q_z[:dx] + q_ux.T @ bias
        ok = jnp.linalg.eigvalsh(q_uu)[0] > 0
        return (v_xx, v_x), (gain, bias, eta * _sym(q_uu_inv), ok)

    end = (jnp.zeros((dx, dx), hessian.dtype), jnp.zeros((dx,), hessian.dtype))
    inputs = (dynamics.gain, dynamics.bias, hessian, gradient)
    _, (gain, bias, cov, ok) = jax.lax.scan(backward, end, inputs, reverse=True)
    return LinearGaussian(gain, bias, cov), jnp.all(ok)


def forward_pass(
    dynamics: LinearGaussian,
    controller: LinearGaussian,
    cost: QuadraticCost,
    prior: LinearGaussian,
    initial_mean: jax.Array,
    initial_cov: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Expected cost and ``KL(controller ‖ prior)`` per step, under the state distribution the controller induces.

    From ``x_0 ~ N(initial_mean, initial_cov)``, ``z_t = [x_t; u_t]`` is Gaussian and
    ``KL_t = ½ E_x[tr(S̄⁻¹S) + (ΔK x + Δk)ᵀ S̄⁻¹ (ΔK x + Δk) - d_u + log|S̄| - log|S|]``.

    Returns:
      ``(costs, kls)``, each ``(T,)``.

    Example:
      >>> costs, kls = forward_pass(dynamics, controller, cost, prior, mu0, sigma0)
    """
    du = controller.gain.shape[1]

    def step(carry, inputs):
        mean, cov = carry
        (f_gain, f_bias, f_cov), (gain, bias, u_cov), (c_zz, c_z), (p_gain, p_bias, p_cov) = inputs
        z_mean = jnp.concatenate([mean, gain @ mean + bias])
        cross = gain @ cov
        z_cov = jnp.block([[cov, cross.T], [cross, gain @ cov @ gain.T + u_cov]])
        expected_cost = 0.5 * jnp.trace(c_zz @ z_cov) + 0.5 * z_mean @ c_zz @ z_mean + c_z @ z_mean
        precision = jnp.linalg.inv(p_cov)
        d_gain, d_bias = gain - p_gain, (gain - p_gain) @ mean + bias - p_bias
        kl = 0.5 * (
            jnp.trace(precision @ u_cov)
            + d_bias @ precision @ d_bias
            + jnp.trace(d_gain.T @ precision @ d_gain @ cov)
            - du
            + jnp.linalg.slogdet(p_cov)[1]
            - jnp.linalg.slogdet(u_cov)[1]
        )
        next_cov = _sym(f_gain @ z_cov @ f_gain.T + f_cov)
        return (f_gain @ z_mean + f_bias, next_cov), (expected_cost, kl)

    _, (costs, kls) = jax.lax.scan(step, (initial_mean, initial_cov), (dynamics, controller, cost, prior))
    return costs, kls


def kl_constrained_lqr(
    dynamics: LinearGaussian,
    cost: QuadraticCost,
    prior: LinearGaussian,
    initial_mean,
    initial_cov,
    kl_bound: float,
    log_eta_range: tuple[float, float] = (-25.0, 25.0),
    iterations: int = 50,
) -> tuple[LinearGaussian, jax.Array, jax.Array]:
    """:func:`kl_lqr` with the smallest ``η`` (bisection on ``log η``) whose controller keeps ``Σ_t KL ≤ kl_bound``.

    Returns:
      ``(controller, eta, kl)``; where even the largest ``η`` misses the bound, that ``η``'s controller.

    Example:
      >>> controller, eta, kl = kl_constrained_lqr(dynamics, cost, prior, mu0, sigma0, kl_bound=1.0)
    """

    def solve(log_eta):
        controller, ok = kl_lqr(dynamics, cost, prior, jnp.exp(log_eta))
        kl = forward_pass(dynamics, controller, cost, prior, initial_mean, initial_cov)[1].sum()
        return controller, jnp.where(ok & jnp.isfinite(kl), kl, jnp.inf)

    def bisect(_, bounds):
        low, high = bounds
        middle = (low + high) / 2
        too_far = solve(middle)[1] > kl_bound
        return jnp.where(too_far, middle, low), jnp.where(too_far, high, middle)

    _, high = jax.lax.fori_loop(0, iterations, bisect, tuple(jnp.float32(b) for b in log_eta_range))
    controller, kl = solve(high)
    return controller, jnp.exp(high), kl


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
