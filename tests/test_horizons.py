"""Long-horizon meta-training: persistent optimizees carried across truncations and reset at sampled horizons."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_meta import LearnedStepSGD
from test_meta import quadratic

import l2o_jax
from l2o_jax import evaluation
from l2o_jax.features import FeatureConfig
from l2o_jax.features import global_features
from l2o_jax.meta import PES
from l2o_jax.meta import LogUniformHorizon
from l2o_jax.meta import TruncatedBPTT
from l2o_jax.meta import long_horizon_estimator
from l2o_jax.optimizers import MLPL2O
from l2o_jax.optimizers import OutputConfig
from l2o_jax.optimizers import warmup_cosine


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


RUN_LENGTH_AWARE = MLPL2O(
    hidden=(4,), features=FeatureConfig(progress_scales=(1.0, 10.0)), output=OutputConfig(schedule="cosine")
)


def test_each_optimizee_is_told_its_own_horizon_at_start_and_at_every_reset():
    estimator = TruncatedBPTT(truncation_length=5, horizon=LogUniformHorizon(6, 30), num_tasks=8)
    task, meta = quadratic(spread=0.1), RUN_LENGTH_AWARE.init(jax.random.key(0))
    state = estimator.init(meta, task, jax.random.key(1))
    estimate = jax.jit(estimator.estimate)
    resets = 0
    for i in range(12):
        np.testing.assert_array_equal(state.inner.opt_state.total_steps, np.asarray(state.horizons, np.float32))
        _, grads, new = estimate(meta, task, state, jax.random.key(10 + i))
        assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
        resets += int((np.asarray(new.horizons) != np.asarray(state.horizons)).sum())
        state = new
    assert resets >= 4


def test_cosine_schedule_scales_the_step_and_the_run_length_is_required():
    params = {"x": jnp.linspace(-1.0, 1.0, 6)}
    grads = {"x": jnp.linspace(0.5, -0.3, 6)}
    constant = RUN_LENGTH_AWARE.init(jax.random.key(0))
    constant = constant.replace(config=dataclasses.replace(RUN_LENGTH_AWARE, output=OutputConfig(schedule="constant")))
    cosine = constant.replace(config=RUN_LENGTH_AWARE)

    def step_at(meta, t):
        tx = meta.transform(total_steps=40)
        state = tx.init(params)
        for _ in range(t):
            update, state = tx.update(grads, state, params)
        return update["x"]

    for t, factor in ((1, 1.0), (21, 0.5), (41, 0.0)):
        chex.assert_trees_all_close(step_at(cosine, t), factor * step_at(constant, t), atol=1e-7)
    warm = constant.replace(config=dataclasses.replace(RUN_LENGTH_AWARE, output=OutputConfig(schedule="warmup_cosine")))
    for t, factor in ((1, 0.0), (2, 0.5), (3, 1.0), (22, 0.5), (41, 0.0)):  # warmup: round(0.05 * 40) = 2 steps
        chex.assert_trees_all_close(step_at(warm, t), factor * step_at(constant, t), atol=1e-7)
    with pytest.raises(ValueError, match="total_steps"):
        cosine.transform().init(params)
    with pytest.raises(ValueError, match="total_steps must be at least 1"):
        cosine.transform(total_steps=0)


@pytest.mark.parametrize("total", [2, 7, 100, 3000])
def test_warmup_cosine_is_optax_warmup_cosine_with_a_traced_run_length(total):
    reference = optax.warmup_cosine_decay_schedule(0.0, 1.0, max(1, round(0.05 * total)), total, 0.0)
    counts = jnp.arange(total + 3)
    traced = jax.jit(jax.vmap(warmup_cosine, in_axes=(0, None)))(counts, jnp.asarray(total))
    np.testing.assert_allclose(traced, jax.vmap(reference)(counts), atol=1e-6)


def test_progress_features_saturate_at_the_end_of_the_run():
    config = FeatureConfig(step_timescales=(1.0,), progress_scales=(1.0, 4.0))
    start, middle, end, past = (global_features(jnp.asarray(t), None, config, 100) for t in (0, 50, 100, 500))
    np.testing.assert_allclose(middle[1:3], np.tanh([0.5, 2.0]), rtol=1e-6)
    np.testing.assert_allclose(start[1:3], 0.0)
    np.testing.assert_array_equal(end, past)  # past the announced end, nothing new is extrapolated
    with pytest.raises(ValueError, match="total_steps"):
        global_features(jnp.asarray(3), None, config)


def test_the_long_horizon_recipe_is_pes_on_the_validation_loss_unless_asked_otherwise():
    recipe = long_horizon_estimator()
    assert isinstance(recipe, PES) and recipe.stagger and recipe.unroll.meta_loss == "log_mean_validation"
    assert isinstance(recipe.horizon, LogUniformHorizon) and (recipe.horizon.low, recipe.horizon.high) == (100, 3000)
    tbptt = long_horizon_estimator(num_tasks=4, meta_loss="log_mean", method="tbptt")
    assert isinstance(tbptt, TruncatedBPTT) and tbptt.num_tasks == 4 and tbptt.unroll.meta_loss == "log_mean"
    with pytest.raises(ValueError, match="method must be 'pes' or 'tbptt'"):
        long_horizon_estimator(method="es")


def test_update_cap_bounds_each_weight_tensors_step_relative_to_its_norm_and_keeps_meta_gradients_finite():
    params = {"Dense_0": {"kernel": jnp.full((3, 4), 0.1), "bias": jnp.zeros(4)}, "zero": jnp.zeros((2, 2))}
    grads = jax.tree.map(jnp.ones_like, params)
    free = MLPL2O(hidden=(4,), output=OutputConfig(init_lr=1.0)).init(jax.random.key(0))
    capped = free.replace(config=dataclasses.replace(free.config, output=OutputConfig(init_lr=1.0, update_cap=0.05)))

    def first_step(meta):
        tx = meta.transform()
        return tx.update(grads, tx.init(params), params)[0]

    big, small = first_step(free), first_step(capped)
    kernel_norm = float(jnp.linalg.norm(params["Dense_0"]["kernel"]))
    assert float(jnp.linalg.norm(big["Dense_0"]["kernel"])) > 0.05 * kernel_norm  # the cap binds here
    np.testing.assert_allclose(jnp.linalg.norm(small["Dense_0"]["kernel"]), 0.05 * kernel_norm, rtol=1e-5)
    chex.assert_trees_all_close(small["Dense_0"]["bias"], big["Dense_0"]["bias"])  # biases are never capped
    chex.assert_trees_all_close(small["zero"], big["zero"])  # nor all-zero tensors (they could never move)

    def loss(arrays):
        update = first_step(capped.replace(arrays=arrays))
        return sum(jnp.sum(u**2) for u in jax.tree.leaves(update))

    assert all(np.isfinite(g).all() for g in jax.tree.leaves(jax.grad(loss)(capped.arrays)))
    with pytest.raises(ValueError, match="update_cap"):
        OutputConfig(update_cap=0.0)

    # The hand-made twin: the same cap as an optax transform after any optimizer (the capped baseline's last step).
    tx = optax.chain(optax.sgd(1.0), l2o_jax.optimizers.relative_update_cap(0.05))
    hand = tx.update(grads, tx.init(params), params)[0]
    np.testing.assert_allclose(jnp.linalg.norm(hand["Dense_0"]["kernel"]), 0.05 * kernel_norm, rtol=1e-5)
    chex.assert_trees_all_close(hand["Dense_0"]["bias"], -grads["Dense_0"]["bias"])
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(grads, tx.init(params))
    with pytest.raises(ValueError, match="adam_cosine_capped.*pass steps"):
        evaluation.baseline("adam_cosine_capped", 1e-2)

    def third_step(tx):
        state = tx.init(params)
        for _ in range(3):
            update, state = tx.update(grads, state, params)
        return float(jnp.linalg.norm(update["Dense_0"]["kernel"]))

    # A huge peak: the uncapped twin steps far beyond the cap, the capped one is held to it.
    assert third_step(evaluation.baseline("adam_cosine", 10.0, steps=10)) > 0.1 * kernel_norm
    np.testing.assert_allclose(
        third_step(evaluation.baseline("adam_cosine_capped", 10.0, steps=10)), 0.1 * kernel_norm, rtol=1e-5
    )
