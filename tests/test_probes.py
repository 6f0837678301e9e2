"""Probe features (Kofinas et al.): learned probe inputs run through the optimizee join every neuron's features."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from problems import classification_problem
from problems import randomized

import l2o_jax
from l2o_jax import graphs
from l2o_jax.features import probe_features

PROBES = l2o_jax.ProbeConfig(count=4, input_shape=(5, 5, 2))
FAMILIES = {
    "gnn": (l2o_jax.GraphL2O(hidden=8, layers=1, probes=PROBES), l2o_jax.graph_l2o),
    "transformer": (l2o_jax.TransformerL2O(hidden=8, layers=1, heads=2, probes=PROBES), l2o_jax.transformer_l2o),
    "recurrent_gnn": (
        l2o_jax.RecurrentGraphL2O(hidden=8, layers=1, lstm_hidden=4, probes=PROBES),
        l2o_jax.recurrent_graph_l2o,
    ),
}


class SmallCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        for k in ((3, 3), (1, 1)):
            x = nn.relu(nn.Conv(4, k)(x))
        x = nn.relu(nn.Dense(5)(x.mean(axis=(1, 2))))
        return nn.Dense(3)(x)


def _two_steps(tx, loss_fn):
    """A jitted function of the parameters: the second step's updates."""

    @jax.jit
    def run(params):
        state = tx.init(params)
        for _ in range(2):
            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, state = tx.update(grads, state, params, value=loss)
            params = optax.apply_updates(params, updates)
        return updates

    return run


@pytest.fixture(scope="module")
def gnn_meta():
    return randomized(jax.jit(FAMILIES["gnn"][0].init)(jax.random.key(0)))


def test_probes_are_opt_in_meta_parameters(gnn_meta):
    assert set(jax.eval_shape(l2o_jax.GraphL2O(hidden=8, layers=1).init, jax.random.key(0)).arrays) == {
        "net",
        "log_lr",
    }
    assert gnn_meta.arrays["probes"].shape == (4, 5, 5, 2)
    assert gnn_meta.arrays["net"]["node_encoder"]["Dense_0"]["kernel"].shape[0] == 10 + 4  # 10 features + 4 probes
    with pytest.raises(ValueError, match="input_shape"):
        l2o_jax.ProbeConfig(count=4)


@pytest.mark.parametrize("family", ["gnn"])  # the probe features enter GraphNet, shared by all graph families
def test_probed_updates_are_permutation_equivariant(family):
    config, factory = FAMILIES[family]
    model = SmallCNN()
    params, loss_fn = classification_problem(model, (4, 5, 5, 2))
    spec = graphs.graph_spec(params)
    run = _two_steps(factory(randomized(jax.jit(config.init)(jax.random.key(0))), apply_fn=model.apply), loss_fn)
    updates = run(params)
    for layer in (1, 2, 3):
        perm = np.roll(np.arange(spec.widths[layer]), layer)  # never the identity
        permuted_params = graphs.permute_hidden_neurons(params, spec, layer, perm)
        permuted_updates = run(permuted_params)
        expected = graphs.permute_hidden_neurons(updates, spec, layer, perm)
        for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(permuted_updates)):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
        moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(permuted_updates))]
        assert any(moved)


def test_node_features_hold_the_recorded_activations_and_change_the_updates(gnn_meta):
    model = SmallCNN()
    params, loss_fn = classification_problem(model, (4, 5, 5, 2))
    spec = graphs.graph_spec(params)
    meta = gnn_meta
    probes = meta.arrays["probes"]
    feats = probe_features(spec, params, probes)
    assert feats.shape == (spec.n_node, 4)
    np.testing.assert_allclose(feats[: spec.widths[0]], probes.mean(axis=(1, 2)).T, rtol=1e-6)
    np.testing.assert_allclose(feats[-3:], model.apply(params, probes).T, rtol=1e-4, atol=1e-5)
    hidden = jax.nn.relu(nn.Conv(4, (3, 3)).apply({"params": params["params"]["Conv_0"]}, probes))
    np.testing.assert_allclose(feats[spec.widths[0] : sum(spec.widths[:2])], hidden.mean((1, 2)).T, atol=1e-5)

    kernel = meta.arrays["net"]["node_encoder"]["Dense_0"]["kernel"]
    blind_arrays = jax.tree.map(lambda x: x, meta.arrays)
    blind_arrays["net"]["node_encoder"]["Dense_0"]["kernel"] = kernel.at[-4:].set(0.0)  # probe channels zeroed
    blind = meta.replace(arrays=blind_arrays)
    run = jax.jit(lambda m, p: _two_steps(l2o_jax.graph_l2o(m), loss_fn)(p))  # one compilation for all three
    seeing, not_seeing = run(meta, params), run(blind, params)
    assert any(not np.allclose(a, b, atol=1e-7) for a, b in zip(jax.tree.leaves(seeing), jax.tree.leaves(not_seeing)))
    other = meta.replace(arrays={**meta.arrays, "probes": probes + 1.0})  # other probes, other updates
    moved = run(other, params)
    assert any(not np.allclose(a, b, atol=1e-7) for a, b in zip(jax.tree.leaves(seeing), jax.tree.leaves(moved)))


def test_meta_gradients_reach_the_probes_through_a_5_step_unroll():
    config = l2o_jax.GraphL2O(hidden=8, layers=1, probes=l2o_jax.ProbeConfig(count=3, input_shape=(5,)))
    meta = jax.jit(config.init)(jax.random.key(0))
    params, loss_fn = classification_problem(nn.Sequential([nn.Dense(6), nn.relu, nn.Dense(3)]), (8, 5))

    def meta_loss(arrays):
        tx = config.transform(meta.replace(arrays=arrays))

        def step(carry, _):
            p, s = carry
            loss, grads = jax.value_and_grad(loss_fn)(p)
            updates, s = tx.update(jax.lax.stop_gradient(grads), s, p, value=loss)
            return (optax.apply_updates(p, updates), s), loss

        return jax.lax.scan(step, (params, tx.init(params)), None, length=5)[1].mean()

    grads = jax.jit(jax.grad(meta_loss))(meta.arrays)
    for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
        assert np.all(np.isfinite(g)), jax.tree_util.keystr(path)
    assert grads["probes"].shape == (3, 5)
    assert np.any(np.asarray(grads["probes"]) != 0)


def test_apply_fn_mismatch_and_unsupported_networks_are_clear_errors(gnn_meta):
    model = SmallCNN()
    params, _ = classification_problem(model, (4, 5, 5, 2))
    meta = gnn_meta
    with pytest.raises(ValueError, match="apply_fn.*differs"):
        l2o_jax.graph_l2o(meta, activations="tanh", apply_fn=model.apply).init(params)
    with pytest.raises(ValueError, match="shape"):
        l2o_jax.graph_l2o(meta, apply_fn=lambda p, x: model.apply(p, x)[:, :2]).init(params)
    with pytest.raises(ValueError, match="only used by probe features"):
        l2o_jax.graph_l2o(jax.jit(l2o_jax.GraphL2O(hidden=8, layers=1).init)(jax.random.key(0)), apply_fn=model.apply)
    bias_free = nn.Sequential([nn.Dense(5), nn.relu, nn.Dense(3, use_bias=False)])
    flat = bias_free.init(jax.random.key(1), jnp.ones((1, 50)))
    with pytest.raises(ValueError, match="params/layers_2/bias"):
        l2o_jax.graph_l2o(meta).init(flat)
    with pytest.raises(ValueError, match="kernel: the layer takes 5 input neurons"):  # probes that do not fit
        small = nn.Dense(3).init(jax.random.key(1), jnp.ones((1, 5)))
        l2o_jax.graph_l2o(meta).init(small)


def test_probes_work_jitted_in_optax_chain_on_an_mlp(gnn_meta):
    meta = gnn_meta
    model = nn.Sequential([nn.Dense(12), nn.tanh, nn.Dense(3)])  # probes of shape (5, 5, 2) are flattened: 50 inputs
    params, loss_fn = classification_problem(model, (16, 50))
    apply_fn = lambda p, x: model.apply(p, x.reshape(x.shape[0], -1))
    tx = optax.chain(
        optax.clip_by_global_norm(1.0),
        l2o_jax.graph_l2o(meta, activations=("tanh", "linear"), apply_fn=apply_fn),
        optax.add_decayed_weights(1e-4),
    )

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state, loss

    state = tx.init(params)
    losses = []
    for _ in range(30):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    assert step._cache_size() == 1
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert jax.jit(tx.init)(params) is not None  # under jit the value check is skipped, the shapes still checked


def test_save_load_keeps_the_probes(tmp_path, gnn_meta):
    loaded = l2o_jax.load_meta_params(l2o_jax.save_meta_params(tmp_path / "probed", gnn_meta))
    assert loaded.config == gnn_meta.config and loaded.config.probes == PROBES
    np.testing.assert_array_equal(loaded.arrays["probes"], gnn_meta.arrays["probes"])
    # Same config, same arrays: the (deterministic) updates are identical.
    assert jax.tree.structure(loaded.arrays) == jax.tree.structure(gnn_meta.arrays)
    for a, b in zip(jax.tree.leaves(loaded.arrays), jax.tree.leaves(gnn_meta.arrays)):
        np.testing.assert_array_equal(a, b)
