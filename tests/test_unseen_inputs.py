"""Graph learned optimizers on inputs the meta-training never saw: more input channels, other image sizes, more
classes. Input and output neurons carry no position by default, so such optimizees use trained embeddings only
and permuting input channels or classes permutes the updates."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from problems import classification_problem
from problems import randomized

import l2o_jax


@pytest.fixture(autouse=True)
def fast_compilation():
    """Every program here runs twice: XLA's slow optimisation passes cost more than they save."""
    previous = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


class CNN(nn.Module):
    classes: int = 10

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        return nn.Dense(self.classes)(x.mean(axis=(1, 2)))


def steps(tx, params, loss_fn, n=2):
    """The updates of the ``n``-th step (the first step of a graph L2O is Adam-like; later ones use history)."""

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, value=loss)
        return jax.tree.map(jnp.add, params, updates), state, updates

    state = jax.jit(tx.init)(params)
    for _ in range(n):
        params, state, updates = step(params, state)
    return updates


def permute_io(params, in_perm, out_perm):
    """Permutes the first layer's input channels and the last layer's outputs (classes)."""
    p = jax.tree.map(lambda x: x, params)
    p["params"]["Conv_0"]["kernel"] = p["params"]["Conv_0"]["kernel"][:, :, in_perm]
    p["params"]["Dense_0"]["kernel"] = p["params"]["Dense_0"]["kernel"][:, out_perm]
    p["params"]["Dense_0"]["bias"] = p["params"]["Dense_0"]["bias"][out_perm]
    return p


META = {
    "gnn": (l2o_jax.GraphL2O(hidden=8, layers=2), l2o_jax.graph_l2o),
    "transformer": (l2o_jax.TransformerL2O(hidden=8, layers=1, heads=2), l2o_jax.transformer_l2o),
}


@pytest.mark.parametrize("family", sorted(META))
def test_meta_parameters_from_one_channel_run_on_three_channels_other_sizes_and_100_classes(family):
    config, factory = META[family]
    tx = factory(randomized(config.init(jax.random.key(0))))
    assert "io_position" not in str(jax.tree_util.tree_structure(config.init(jax.random.key(0)).arrays))
    for shape, classes in [((4, 28, 28, 1), 10), ((4, 32, 32, 3), 10), ((4, 12, 20, 3), 100)]:
        params, loss_fn = classification_problem(CNN(classes), shape)
        updates = steps(tx, params, loss_fn)
        assert jax.tree.map(jnp.shape, updates) == jax.tree.map(jnp.shape, params)
        assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates)), (shape, classes)
        assert any(float(jnp.abs(u).max()) > 0 for u in jax.tree.leaves(updates))


def test_permuting_input_channels_and_classes_permutes_the_updates():
    in_perm, out_perm = np.array([2, 0, 1]), np.random.default_rng(0).permutation(10)
    params, loss_fn = classification_problem(CNN(10), (4, 9, 9, 3))
    permuted = permute_io(params, in_perm, out_perm)
    # The permuted network computes the same function of the same data, up to the relabelling.
    inverse = lambda p: permute_io(p, np.argsort(in_perm), np.argsort(out_perm))
    permuted_loss = lambda p: loss_fn(inverse(p))

    def io_updates(config):
        tx = l2o_jax.graph_l2o(randomized(config.init(jax.random.key(0))))
        return steps(tx, params, loss_fn), steps(tx, permuted, permuted_loss)

    updates, permuted_updates = io_updates(l2o_jax.GraphL2O(hidden=8, layers=2))
    for a, b in zip(jax.tree.leaves(permute_io(updates, in_perm, out_perm)), jax.tree.leaves(permuted_updates)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)

    # With per-position embeddings (opt-in) input and output neurons are no longer interchangeable.
    updates, permuted_updates = io_updates(l2o_jax.GraphL2O(hidden=8, layers=2, max_io_positions=16))
    expected = jax.tree.leaves(permute_io(updates, in_perm, out_perm))
    assert not all(np.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(expected, jax.tree.leaves(permuted_updates)))
