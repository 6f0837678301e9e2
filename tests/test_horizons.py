"""Long-horizon meta-training: persistent optimizees carried across truncations and reset at sampled horizons."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_meta import LearnedStepSGD
from test_meta import quadratic

from l2o_jax.meta import PES
from l2o_jax.meta import LogUniformHorizon
from l2o_jax.meta import TruncatedBPTT


def _run(estimator, outer_steps, key=0):
    """The estimator's states after each of ``outer_steps`` truncations, from one initial state."""
    task, meta = quadratic(spread=0.1), LearnedStepSGD().init(None)
    state = estimator.init(meta, task, jax.random.key(key))
    estimate = jax.jit(estimator.estimate)
    states = [state]
    for i in range(outer_steps):
        _, grads, state = estimate(meta, task, state, jax.random.key(100 + i))
        assert np.isfinite(grads["log_lr"])
        states.append(state)
    return states


def _steps(state, estimator):
    step = state.inner.step
    return np.asarray(step[:, 0] if isinstance(estimator, PES) else step)


@pytest.mark.parametrize(
    "estimator",
    [
        TruncatedBPTT(truncation_length=4, horizon=LogUniformHorizon(6, 40), num_tasks=16),
        PES(truncation_length=4, horizon=LogUniformHorizon(6, 40), num_pairs=16),
    ],
    ids=["truncated_bptt", "pes"],
)
def test_truncations_carry_the_optimizee_and_reset_it_at_its_own_sampled_horizon(estimator):
    states = _run(estimator, 25)
    resets = 0
    for before, after in zip(states, states[1:]):
        horizons_before = np.asarray(before.horizons)
        done = _steps(before, estimator) >= horizons_before
        expected = np.where(done, 0, _steps(before, estimator)) + estimator.truncation_length
        np.testing.assert_array_equal(_steps(after, estimator), expected)  # carried, or restarted from step 0
        kept = ~done
        np.testing.assert_array_equal(np.asarray(after.horizons)[kept], horizons_before[kept])
        resets += int(done.sum())
        params = lambda s: np.asarray(s.inner.params["x"])[:, 0] if isinstance(estimator, PES) else s.inner.params["x"]
        # a carried optimizee continues from its trained parameters; a reset one starts near 1 + 0.1 N(0, 1)
        assert not np.allclose(np.asarray(params(after))[kept], np.asarray(params(before))[kept])
    horizons = np.concatenate([np.asarray(s.horizons) for s in states])
    assert resets >= 16 and 6 <= horizons.min() and horizons.max() <= 40
    assert len(np.unique(horizons)) > 8  # drawn anew at every reset, not one horizon for all


def test_staggered_optimizees_start_at_spread_out_points_of_their_first_run():
    estimator = TruncatedBPTT(truncation_length=4, horizon=LogUniformHorizon(20, 400), num_tasks=64, stagger=True)
    state = _run(estimator, 0)[0]
    steps, horizons = np.asarray(state.inner.step), np.asarray(state.horizons)
    assert (steps < horizons).all() and len(np.unique(steps)) > 32
    # only the truncation's step counter is offset: the optimizer state is that of a fresh optimizee
    fresh = _run(TruncatedBPTT(truncation_length=4, horizon=LogUniformHorizon(20, 400), num_tasks=64), 0)[0]
    jax.tree.map(np.testing.assert_array_equal, state.inner.params, fresh.inner.params)


def test_log_uniform_horizon_is_checked_and_log_uniform():
    with pytest.raises(ValueError, match="low <= high"):
        LogUniformHorizon(100, 10)
    draws = np.asarray(LogUniformHorizon(10, 1000).sample(jax.random.key(0), (20000,)))
    assert draws.min() >= 10 and draws.max() <= 1000
    # log-uniform: each decade holds about half the draws
    assert abs(np.mean(draws < 100) - 0.5) < 0.02, np.mean(draws < 100)
    assert jnp.issubdtype(draws.dtype, jnp.integer)
