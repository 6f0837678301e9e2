"""Linear-Gaussian dynamics fitted to sampled trajectories, and LQR under a KL bound to a linearised policy:
the C-step of guided policy search (the equations are in ``l2o_jax.gps``)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


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
