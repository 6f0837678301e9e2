"""Learned optimizers as optax transformations: equivariance, stability, integration, meta-gradients, I/O."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state
from problems import classification_problem
from problems import randomized

import l2o_jax
from l2o_jax import graphs

FAMILIES = {
    "gnn": (l2o_jax.GraphL2O(hidden=16, layers=2), l2o_jax.graph_l2o),
    "transformer": (l2o_jax.TransformerL2O(hidden=16, layers=2, heads=2), l2o_jax.transformer_l2o),
    "recurrent_gnn": (l2o_jax.RecurrentGraphL2O(hidden=16, layers=2, lstm_hidden=8), l2o_jax.recurrent_graph_l2o),
    "lstm": (l2o_jax.LSTML2O(), l2o_jax.lstm_l2o),
    "mlp": (l2o_jax.MLPL2O(), l2o_jax.mlp_l2o),
}
GRAPH_FAMILIES = ["gnn", "transformer", "recurrent_gnn"]


class SmallCNN(nn.Module):
    width: int = 6
    kernels: tuple = ((3, 3), (5, 5))

    @nn.compact
    def __call__(self, x):
        for k in self.kernels:
            x = nn.relu(nn.Conv(self.width, k)(x))
        x = nn.relu(nn.Dense(7)(x.mean(axis=(1, 2))))
        return nn.Dense(3)(x)


def _two_steps(tx, params, loss_fn):
    state = tx.init(params)
    for _ in range(2):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, value=loss)
        params = optax.apply_updates(params, updates)
    return updates


@pytest.mark.parametrize("family", GRAPH_FAMILIES)
def test_graph_updates_are_permutation_equivariant(family):
    config, factory = FAMILIES[family]
    model = SmallCNN()
    params, loss_fn = classification_problem(model, (8, 7, 7, 2))
    spec = graphs.graph_spec(params)
    tx = factory(randomized(config.init(jax.random.key(0))))
    updates = _two_steps(tx, params, loss_fn)
    for layer in (1, 2, 3):
        perm = np.random.default_rng(layer).permutation(spec.widths[layer])
        permuted_params = graphs.permute_hidden_neurons(params, spec, layer, perm)
        permuted_updates = _two_steps(tx, permuted_params, lambda p: loss_fn(p))
        expected = graphs.permute_hidden_neurons(updates, spec, layer, perm)
        for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(permuted_updates)):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
        # The permutation moved things: the check above could fail.
        moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(permuted_updates))]
        assert any(moved)


def test_graph_updates_see_other_layers():
    """The GNN mixes information along the graph: a gradient change in the second layer changes the first layer's
    update (a per-parameter optimizer's would not move)."""
    params, loss_fn = classification_problem(SmallCNN(), (8, 7, 7, 2))
    grads = jax.grad(loss_fn)(params)
    other = jax.tree.map(lambda g: g, grads)
    other["params"]["Conv_1"]["kernel"] = grads["params"]["Conv_1"]["kernel"] * -3.0
    for family, moves in [("gnn", True), ("lstm", False)]:
        config, factory = FAMILIES[family]
        tx = factory(randomized(config.init(jax.random.key(0))))
        u1, _ = tx.update(grads, tx.init(params), params)
        u2, _ = tx.update(other, tx.init(params), params)
        first = lambda u: np.asarray(u["params"]["Conv_0"]["kernel"])
        assert (not np.allclose(first(u1), first(u2), atol=1e-7)) == moves, family


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_200_jitted_steps_stay_finite_and_descend(family):
    config, factory = FAMILIES[family]
    meta = config.init(jax.random.key(0))
    for model, shape in [
        (SmallCNN(width=4), (16, 6, 6, 1)),
        (nn.Sequential([nn.Dense(12), nn.tanh, nn.Dense(3)]), (16, 5)),
    ]:
        params, loss_fn = classification_problem(model, shape)
        tx = factory(meta)

        @jax.jit
        def step(carry, _):
            p, s = carry
            loss, grads = jax.value_and_grad(loss_fn)(p)
            updates, s = tx.update(grads, s, p, value=loss)
            return (optax.apply_updates(p, updates), s), loss

        (final, _), losses = jax.lax.scan(step, (params, tx.init(params)), None, length=200)
        assert np.all(np.isfinite(losses))
        assert float(loss_fn(final)) < float(losses[0])


def test_first_step_is_small_descent():
    params, loss_fn = classification_problem(SmallCNN(), (8, 7, 7, 2))
    grads = jax.grad(loss_fn)(params)
    for family, (config, factory) in FAMILIES.items():
        tx = factory(config.init(jax.random.key(0)))
        updates, _ = tx.update(grads, tx.init(params), params)
        flat_u, flat_g = (jnp.concatenate([x.ravel() for x in jax.tree.leaves(t)]) for t in (updates, grads))
        assert float(jnp.dot(flat_u, flat_g)) < 0, family  # a descent direction
        assert float(jnp.abs(flat_u).max()) < 1e-2, family  # and a small step


def test_any_momentum_set_works_with_the_adam_output_base():
    params, loss_fn = classification_problem(SmallCNN(), (4, 6, 6, 2))
    grads = jax.grad(loss_fn)(params)
    for betas in [(0.99,), (0.5, 0.999)]:
        config = l2o_jax.MLPL2O(hidden=(8,), features=l2o_jax.FeatureConfig(betas=betas))
        tx = l2o_jax.mlp_l2o(config.init(jax.random.key(0)))
        updates, _ = tx.update(grads, tx.init(params), params)
        flat_u, flat_g = (jnp.concatenate([x.ravel() for x in jax.tree.leaves(t)]) for t in (updates, grads))
        assert bool(jnp.all(jnp.isfinite(flat_u))) and float(jnp.dot(flat_u, flat_g)) < 0, betas
    with pytest.raises(ValueError, match="betas is empty"):
        config = l2o_jax.MLPL2O(hidden=(8,), features=l2o_jax.FeatureConfig(betas=()))
        tx = l2o_jax.mlp_l2o(config.init(jax.random.key(0)))
        tx.update(grads, tx.init(params), params)


def test_update_requires_params_and_ignores_unknown_extra_args():
    params, loss_fn = classification_problem(SmallCNN(), (4, 6, 6, 2))
    grads = jax.grad(loss_fn)(params)
    tx = l2o_jax.graph_l2o(FAMILIES["gnn"][0].init(jax.random.key(0)))
    state = tx.init(params)
    with pytest.raises(ValueError, match="parameters"):
        tx.update(grads, state, None)
    updates, _ = tx.update(grads, state, params, value=1.0, some_other_arg=3)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    with pytest.raises(TypeError, match="LSTML2O"):
        l2o_jax.graph_l2o(FAMILIES["lstm"][0].init(jax.random.key(0)))


def test_chain_trainstate_and_nnx_optimizer():
    meta = FAMILIES["gnn"][0].init(jax.random.key(0))
    model = SmallCNN()
    params, loss_fn = classification_problem(model, (8, 7, 7, 2))
    tx = optax.chain(optax.clip_by_global_norm(1.0), l2o_jax.graph_l2o(meta), optax.add_decayed_weights(1e-4))
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    @jax.jit
    def train_step(state):
        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss  # TrainState passes params, not value

    losses = []
    for i in range(20):
        state, loss = train_step(state)
        losses.append(float(loss))
        if i == 1:  # TrainState.create's Python-int step makes the first call's signature differ once
            compiled = train_step._cache_size()
    assert train_step._cache_size() == compiled  # no recompilation across steps
    assert losses[-1] < losses[0]

    class NNXMLP(nnx.Module):
        def __init__(self, rngs):
            self.l1, self.l2 = nnx.Linear(5, 16, rngs=rngs), nnx.Linear(16, 3, rngs=rngs)

        def __call__(self, x):
            return self.l2(nnx.relu(self.l1(x)))

    net = NNXMLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(net, l2o_jax.graph_l2o(meta), wrt=nnx.Param)
    x, y = jax.random.normal(jax.random.key(5), (32, 5)), jax.random.randint(jax.random.key(6), (32,), 0, 3)
    nnx_loss = lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()
    first = float(nnx_loss(net))
    for _ in range(20):
        loss, grads = nnx.value_and_grad(nnx_loss)(net)
        optimizer.update(net, grads, value=loss)
    assert float(nnx_loss(net)) < first


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_meta_gradients_through_10_step_unroll(family):
    config, _ = FAMILIES[family]
    meta = config.init(jax.random.key(0))
    model = SmallCNN(width=4)
    params, loss_fn = classification_problem(model, (8, 6, 6, 1))

    def meta_loss(arrays):
        tx = config.transform(meta.replace(arrays=arrays))

        def step(carry, _):
            p, s = carry
            loss, grads = jax.value_and_grad(loss_fn)(p)
            updates, s = tx.update(jax.lax.stop_gradient(grads), s, p, value=loss)
            return (optax.apply_updates(p, updates), s), loss

        return jax.lax.scan(step, (params, tx.init(params)), None, length=10)[1].mean()

    grads = jax.jit(jax.grad(meta_loss))(meta.arrays)
    flat = jax.tree_util.tree_flatten_with_path(grads)[0]
    for path, g in flat:
        assert np.all(np.isfinite(g)), path
        assert np.any(np.asarray(g) != 0), jax.tree_util.keystr(path)


def test_save_load_gives_identical_updates(tmp_path):
    params, loss_fn = classification_problem(SmallCNN(), (4, 6, 6, 2))
    grads = jax.grad(loss_fn)(params)
    for family in ("gnn", "lstm"):
        meta = randomized(FAMILIES[family][0].init(jax.random.key(1)))
        path = l2o_jax.save_meta_params(tmp_path / family, meta, metadata={"note": "test"})
        loaded = l2o_jax.load_meta_params(path)
        assert loaded.config == meta.config
        tx1, tx2 = meta.transform(), loaded.transform()
        u1, _ = tx1.update(grads, tx1.init(params), params)
        u2, _ = tx2.update(grads, tx2.init(params), params)
        for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
            np.testing.assert_array_equal(a, b)


def test_loading_wrong_or_missing_files_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no meta-parameter checkpoint"):
        l2o_jax.load_meta_params(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "weights.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not an l2o_jax meta-parameter checkpoint"):
        l2o_jax.load_meta_params(tmp_path / "junk")


def test_a_fixed_pna_degree_normaliser_is_computed_from_training_graphs_and_changes_the_step():
    params = {
        "params": {
            "Dense_0": {"kernel": jnp.ones((3, 8)), "bias": jnp.zeros(8)},
            "Dense_1": {"kernel": jnp.ones((8, 8)), "bias": jnp.zeros(8)},
            "Dense_2": {"kernel": jnp.ones((8, 10)), "bias": jnp.zeros(10)},
        }
    }
    # in-degrees: 8 neurons of 3, 18 of 8; out-degrees: 11 neurons of 8, 8 of 10
    logs = [np.log(4)] * 8 + [np.log(9)] * 18 + [np.log(9)] * 11 + [np.log(11)] * 8
    delta = l2o_jax.optimizers.degree_normaliser([params])
    np.testing.assert_allclose(delta, np.mean(logs), rtol=1e-6)
    output = l2o_jax.OutputConfig(output_init_scale=1.0)  # the network's output, not Adam's direction, dominates
    per_graph = l2o_jax.GraphL2O(hidden=8, layers=2, output=output).init(jax.random.key(0))
    fixed = per_graph.replace(config=dataclasses.replace(per_graph.config, degree_delta=delta / 2))
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.1), params)

    def step(meta):
        tx = meta.transform()
        return tx.update(grads, tx.init(params), params)[0]

    a, b = step(per_graph), step(fixed)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(b))
    for leaf in ("kernel", "bias"):  # edges see the aggregates from the second layer on
        assert not np.allclose(a["params"]["Dense_1"][leaf], b["params"]["Dense_1"][leaf], rtol=1e-3)
    with pytest.raises(ValueError, match="degree_delta"):
        l2o_jax.TransformerL2O(degree_delta=1.0)
    with pytest.raises(ValueError, match="degree_delta"):
        l2o_jax.GraphL2O(degree_delta=0.0)


@pytest.mark.parametrize("positions", [False, True], ids=["blind", "cell_positions"])
def test_kernel_cell_positions_break_the_flip_symmetry_that_blind_pooling_has(positions):
    task = l2o_jax.tasks.image_task("digits", model="cnn", width=3, depth=2, batch_size=4)
    params = task.init(jax.random.key(0))
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    grads = jax.tree.unflatten(treedef, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])
    meta = randomized(l2o_jax.GraphL2O(hidden=8, layers=2, cell_positions=positions).init(jax.random.key(2)))
    flip = lambda tree: jax.tree.map(lambda x: x[::-1, ::-1] if x.ndim == 4 else x, tree)  # every conv kernel

    def step(p, g):
        tx = meta.transform(activations=task.activations)
        return tx.update(g, tx.init(p), p)[0]

    offsets = l2o_jax.optimizers.graph.cell_offsets(graphs.graph_spec(params))
    np.testing.assert_array_equal(offsets[:9], [(r, c) for r in (-1, 0, 1) for c in (-1, 0, 1)])
    flipped_then_stepped, stepped_then_flipped = step(flip(params), flip(grads)), flip(step(params, grads))
    close = all(
        np.allclose(a, b, rtol=1e-4, atol=1e-7)
        for a, b in zip(jax.tree.leaves(flipped_then_stepped), jax.tree.leaves(stepped_then_flipped))
    )
    assert close != positions
