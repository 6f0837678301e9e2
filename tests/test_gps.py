"""Guided policy search: dynamics fit, LQR under a KL bound, the supervised step, and the whole loop."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg
from problems import TINY_FAMILY

from l2o_jax.gps import GuidedPolicySearch
from l2o_jax.gps import KLBoundState
from l2o_jax.gps import LinearGaussian
from l2o_jax.gps import QuadraticCost
from l2o_jax.gps import adapt_kl_bound
from l2o_jax.gps import fit_linear_gaussian
from l2o_jax.gps import forward_pass
from l2o_jax.gps import kl_constrained_lqr
from l2o_jax.gps import kl_lqr
from l2o_jax.gps import local_controllers
from l2o_jax.gps import supervised_kl
from l2o_jax.meta import MetaTrainConfig
from l2o_jax.meta import meta_train
from l2o_jax.optimizers.li_malik import LiMalikL2O
from l2o_jax.policy_search import POLICY_SEARCH_ESTIMATORS

SMALL = LiMalikL2O(hidden=8, init_lr=0.03)

# A double integrator: position and velocity, the action accelerates.
A = np.array([[1.0, 0.1], [0.0, 1.0]])
B = np.array([[0.0], [0.1]])
Q = np.diag([1.0, 0.1])
R = np.array([[0.01]])
HORIZON = 80


def _tiled(x, horizon=HORIZON):
    return jnp.tile(jnp.asarray(x, jnp.float32), (horizon,) + (1,) * np.ndim(x))


def _double_integrator():
    dynamics = LinearGaussian(_tiled(np.hstack([A, B])), jnp.zeros((HORIZON, 2)), _tiled(1e-4 * np.eye(2)))
    cost = QuadraticCost(_tiled(scipy.linalg.block_diag(Q, R)), jnp.zeros((HORIZON, 3)))
    prior = LinearGaussian(jnp.zeros((HORIZON, 1, 2)), jnp.zeros((HORIZON, 1)), _tiled(np.eye(1)))
    return dynamics, cost, prior


def _riccati_gains(horizon=HORIZON):
    """Finite-horizon LQR gains by the backward Riccati recursion with numpy, ``V_T = 0``."""
    value, gains = np.zeros((2, 2)), []
    for _ in range(horizon):
        gain = -np.linalg.solve(R + B.T @ value @ B, B.T @ value @ A)
        value = Q + A.T @ value @ A + A.T @ value @ B @ gain
        gains.append(gain)
    return np.stack(gains[::-1])


def test_loose_kl_bound_recovers_the_riccati_controller():
    dynamics, cost, prior = _double_integrator()
    expected = _riccati_gains()
    controller, ok = kl_lqr(dynamics, cost, prior, 0.0)
    assert bool(ok)
    np.testing.assert_allclose(controller.gain, expected, atol=1e-4)
    # Far from the end, the gain is the infinite-horizon one from the discrete algebraic Riccati equation.
    value = scipy.linalg.solve_discrete_are(A, B, Q, R)
    stationary = -np.linalg.solve(R + B.T @ value @ B, B.T @ value @ A)
    np.testing.assert_allclose(controller.gain[0], stationary, rtol=1e-4)
    mean, cov = jnp.array([1.0, 0.0]), 0.01 * jnp.eye(2)
    loose, eta, _ = kl_constrained_lqr(dynamics, cost, prior, mean, cov, kl_bound=1e6)
    assert float(eta) < 1e-8
    np.testing.assert_allclose(loose.gain, expected, atol=1e-3)


def test_kl_bound_is_met_and_trades_cost_for_closeness_to_the_prior():
    dynamics, cost, prior = _double_integrator()
    mean, cov = jnp.array([1.0, 0.0]), 0.01 * jnp.eye(2)
    costs = []
    for bound in (0.3, 3.0, 30.0):
        controller, _, kl = kl_constrained_lqr(dynamics, cost, prior, mean, cov, kl_bound=bound)
        step_costs, step_kls = forward_pass(dynamics, controller, cost, prior, mean, cov)
        np.testing.assert_allclose(float(kl), bound, rtol=1e-3)
        np.testing.assert_allclose(float(step_kls.sum()), bound, rtol=1e-3)
        costs.append(float(step_costs.sum()))
    lqr, _ = kl_lqr(dynamics, cost, prior, 1e-9)
    optimum = float(forward_pass(dynamics, lqr, cost, prior, mean, cov)[0].sum())
    assert costs[0] > costs[1] > costs[2] > optimum, (costs, optimum)


def test_dynamics_fit_recovers_time_varying_linear_gaussian_dynamics():
    rng = np.random.default_rng(0)
    steps, samples = 4, 4000
    gains = np.stack([np.array([[0.9, 0.1 * t, 0.5], [-0.2, 1.0, -0.3 + 0.1 * t]]) for t in range(steps)])
    bias = np.array([0.1, -0.2])
    noise = np.array([[0.04, 0.01], [0.01, 0.02]])
    inputs = rng.normal(size=(steps, samples, 3))
    outputs = np.einsum("tij,tnj->tni", gains, inputs) + bias + rng.multivariate_normal([0, 0], noise, (steps, samples))
    fit = fit_linear_gaussian(jnp.asarray(inputs, jnp.float32), jnp.asarray(outputs, jnp.float32), prior_strength=0)
    np.testing.assert_allclose(fit.gain, gains, atol=0.02)
    np.testing.assert_allclose(fit.bias, np.broadcast_to(bias, (steps, 2)), atol=0.02)
    np.testing.assert_allclose(fit.cov, np.broadcast_to(noise, (steps, 2, 2)), atol=0.005)
    # A strong prior pulls every step towards the fit over all steps.
    pooled = fit_linear_gaussian(jnp.asarray(inputs, jnp.float32), jnp.asarray(outputs, jnp.float32), 100.0)
    np.testing.assert_allclose(pooled.gain, np.broadcast_to(gains.mean(0), gains.shape), atol=0.03)


def test_supervised_steps_decrease_the_kl_to_the_local_controllers(tiny_task):
    meta = SMALL.init(jax.random.key(0))
    estimator = GuidedPolicySearch(length=12, num_trajectories=2, kl_bound=10.0)
    runs = jax.jit(lambda m, k: estimator.sample(m, tiny_task, k))(meta, jax.random.key(1))
    policy_var = jnp.exp(2 * (meta.arrays["log_lr"] + meta.arrays["log_std"]))
    target_mean, target_var, info = local_controllers(runs, policy_var, estimator.kl_bound)
    np.testing.assert_allclose(float(info["kl"]), estimator.kl_bound, rtol=1e-3)
    # The controllers step against the gradient: the first state coordinate is g_t.
    assert np.all(np.asarray(info["controller"].gain[:, 0, 0]) < 0)
    assert float(info["predicted_change"]) < 0  # and the cost model expects them to lower the objective
    # Read with the next gradient, a step's decrease is charged one step later: the controllers still descend,
    # but for the last step, whose decrease falls after the horizon.
    _, _, following = local_controllers(runs, policy_var, estimator.kl_bound, cost_gradient="next")
    assert np.all(np.asarray(following["controller"].gain[:-1, 0, 0]) < 0) and float(following["predicted_change"]) < 0
    loss_and_grad = jax.jit(jax.value_and_grad(lambda a, *data: supervised_kl(a, meta, *data)))
    # Re-run along the recorded histories, the policy reproduces its own means: zero KL to itself.
    own_var = jnp.full(target_var.shape, policy_var)
    assert abs(float(loss_and_grad(meta.arrays, runs, runs.means[:, :-1], own_var)[0])) < 1e-5
    adam = optax.adam(0.03)
    arrays, opt_state = meta.arrays, adam.init(meta.arrays)
    losses = []
    for _ in range(15):
        loss, grads = loss_and_grad(arrays, runs, target_mean, target_var)
        updates, opt_state = adam.update(grads, opt_state, arrays)
        arrays = optax.apply_updates(arrays, updates)
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0], losses


def test_gps_improves_expected_reward_on_held_out_optimizees(held_out_reward, tmp_path):
    estimator = POLICY_SEARCH_ESTIMATORS["gps"](length=20, num_trajectories=4, kl_bound=10.0)
    config = MetaTrainConfig(SMALL, TINY_FAMILY, estimator, outer_steps=10, meta_lr=0.05, checkpoint_every=10)
    trained = meta_train(config, tmp_path, progress=False).meta_params
    trained = trained.replace(arrays=jax.tree.map(np.asarray, trained.arrays))
    before, after = float(held_out_reward(SMALL.init(jax.random.key(0)))), float(held_out_reward(trained))
    assert after > before + 0.1, (before, after)


def test_kl_bound_adapts_by_predicted_against_actual_improvement(tiny_task):
    limits = (1.0, 1e4)
    adapted = lambda objective, state=KLBoundState(100.0, 1.0, 0.5): float(adapt_kl_bound(state, objective, limits)[0])
    assert adapted(0.75) == pytest.approx(100.0)  # half the promised improvement: kept
    assert adapted(1.0) == pytest.approx(50.0)  # none of it: halved
    assert adapted(0.4) == pytest.approx(500.0)  # more than promised: the largest growth, 5x
    assert adapted(3.0) == pytest.approx(10.0)  # worse: the largest cut, 10x
    assert adapted(0.4, KLBoundState(5e3, 1.0, 0.5)) == 1e4  # within the limits
    assert adapted(0.9, KLBoundState(100.0, jnp.nan, jnp.nan)) == 100.0  # first iteration: kept
    estimator = GuidedPolicySearch(length=12, num_trajectories=2, kl_bound=10.0, adapt_kl_bound=True)
    meta = SMALL.init(jax.random.key(0))
    state = estimator.init(meta, tiny_task, jax.random.key(0))
    estimate = jax.jit(lambda m, s, k: estimator.estimate(m, tiny_task, s, k))
    loss, _, state = estimate(meta, state, jax.random.key(1))
    assert float(state.kl_bound) == 10.0 and float(state.objective) == float(loss)
    assert float(state.predicted) < float(loss)  # the controllers' promise, read at the next iteration
    _, _, state = estimate(meta, state, jax.random.key(2))
    assert 1.0 <= float(state.kl_bound) <= 50.0 and float(state.kl_bound) != 10.0


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="GuidedPolicySearch needs length >= 3"):
        GuidedPolicySearch(length=2)
    with pytest.raises(ValueError, match="kl_bound > 0"):
        GuidedPolicySearch(kl_bound=0.0)
    with pytest.raises(ValueError, match="cost_gradient must be 'current' or 'next'"):
        GuidedPolicySearch(cost_gradient="previous")
