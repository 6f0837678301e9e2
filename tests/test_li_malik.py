"""Li & Malik's learned optimizer policy: averaged features, the optax transform, policy search."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from problems import TINY_FAMILY

from l2o_jax.meta import AntitheticES
from l2o_jax.meta import MetaTrainConfig
from l2o_jax.meta import meta_train
from l2o_jax.optimizers.li_malik import LiMalikL2O
from l2o_jax.optimizers.li_malik import li_malik_l2o
from l2o_jax.optimizers.li_malik import li_malik_step
from l2o_jax.policy_search import Reinforce
from l2o_jax.policy_search import costs_to_go

SMALL = LiMalikL2O(hidden=8, init_lr=0.03)


def _hand_average(values, i):
    """The paper's 1/min(i+1,3) Σ_{j=max(i-2,0)}^{i} v(j)."""
    return sum(values[max(i - 2, 0) : i + 1]) / min(i + 1, 3)


def test_averaged_features_match_hand_computation_over_five_steps():
    rng = np.random.default_rng(0)
    iterates = [{"w": rng.normal(size=(2, 3)).astype(np.float32)} for _ in range(5)]
    grads = [{"w": rng.normal(size=(2, 3)).astype(np.float32)} for _ in range(5)]
    values = [float(v) for v in rng.uniform(1, 3, size=5)]
    meta = SMALL.init(jax.random.key(0))
    tx = li_malik_l2o(meta)
    state = tx.init(iterates[0])
    for i in range(5):
        _, state = tx.update(grads[i], state, iterates[i], value=values[i])
        np.testing.assert_allclose(state.previous_x_bar["w"], _hand_average([x["w"] for x in iterates], i), rtol=1e-6)
        np.testing.assert_allclose(state.previous_f_bar, _hand_average(values, i), rtol=1e-6)
        # ḡ is recomputed from the ring buffer, which must hold the last min(i+1, 3) gradients, newest first.
        kept = state.history.gradients["w"][: min(i + 1, 3)]
        np.testing.assert_allclose(kept, np.stack([g["w"] for g in grads[max(i - 2, 0) : i + 1][::-1]]))
        np.testing.assert_allclose(kept.mean(0), _hand_average([g["w"] for g in grads], i), rtol=1e-5, atol=1e-6)


def test_in_optax_chain_under_jit_and_value_is_required(tiny_task):
    params = tiny_task.init(jax.random.key(0))
    tx = optax.chain(optax.clip_by_global_norm(1.0), li_malik_l2o(SMALL.init(jax.random.key(1))))

    @jax.jit
    def step(params, state, key):
        loss, grads = jax.value_and_grad(tiny_task.loss)(params, tiny_task.sample_batch(key))
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state, loss

    state = tx.init(params)
    for i in range(3):
        params, state, loss = step(params, state, jax.random.key(i))
    assert np.isfinite(float(loss))
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))
    grads = jax.grad(tiny_task.loss)(params, tiny_task.sample_batch(jax.random.key(9)))
    with pytest.raises(ValueError, match="value=loss"):
        tx.update(grads, state, params)
    with pytest.raises(ValueError, match="parameters"):
        li_malik_l2o(SMALL.init(jax.random.key(1))).update(grads, state[1], value=1.0)


def test_key_samples_the_gaussian_policy_around_its_mean(tiny_task):
    params = tiny_task.init(jax.random.key(0))
    meta = SMALL.init(jax.random.key(1))
    tx = li_malik_l2o(meta)
    grads = jax.grad(tiny_task.loss)(params, tiny_task.sample_batch(jax.random.key(2)))
    mean, _ = tx.update(grads, tx.init(params), params, value=2.3)
    sampled, _ = tx.update(grads, tx.init(params), params, value=2.3, key=jax.random.key(3))
    noise = np.concatenate([np.ravel(s - m) for s, m in zip(jax.tree.leaves(sampled), jax.tree.leaves(mean))])
    expected_std = float(jnp.exp(meta.arrays["log_lr"] + meta.arrays["log_std"]))
    assert abs(noise.std() / expected_std - 1) < 0.1
    _, _, log_prob = li_malik_step(meta, tx.init(params), grads, params, 2.3, jax.random.key(3))
    assert np.isfinite(float(log_prob))
    assert "whole step" in SMALL.describe_step() and "initially 0.03" in SMALL.describe_step()  # what pages say


def test_costs_to_go():
    np.testing.assert_allclose(costs_to_go(jnp.array([4.0, 3.0, 1.0])), [4 / 3, 1 / 3, 0.0], rtol=1e-6)


@pytest.mark.parametrize(
    "estimator, steps, meta_lr",
    [
        (AntitheticES(length=20, num_pairs=4, sigma=0.01), 8, 0.1),
        (Reinforce(length=20, num_tasks=2, rollouts_per_task=4), 10, 0.03),
    ],
)
def test_short_policy_search_improves_expected_reward_on_held_out_tasks(
    held_out_reward, tmp_path, estimator, steps, meta_lr
):
    config = MetaTrainConfig(SMALL, TINY_FAMILY, estimator, outer_steps=steps, meta_lr=meta_lr, checkpoint_every=steps)
    trained = meta_train(config, tmp_path, progress=False).meta_params
    # Plain arrays: meta_train's carry the task mesh's sharding, which would recompile the score.
    trained = trained.replace(arrays=jax.tree.map(np.asarray, trained.arrays))
    before = float(held_out_reward(SMALL.init(jax.random.key(0))))  # any fresh policy: its steps are near zero
    after = float(held_out_reward(trained))
    assert after > before + 0.15, (before, after)
