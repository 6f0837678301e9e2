"""Tests for l2o_jax.nn: permutation equivariance, empty neighbourhoods, padding, LSTM, jit."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2o_jax.nn import MLP
from l2o_jax.nn import PNA
from l2o_jax.nn import CoordinateLSTM
from l2o_jax.nn import RelationalTransformer
from l2o_jax.nn.mlp import GatheredDense
from l2o_jax.nn.mlp import MatmulLayerNorm
from l2o_jax.nn.pna import aggregate

WIDTHS = (3, 5, 4, 2)
FEATURES = 8


def layered_graph(widths):
    """Fully connected consecutive layers: (senders, receivers, layer offsets) as numpy."""
    offsets = np.cumsum((0,) + tuple(widths))
    senders, receivers = [], []
    for lo, hi, width_in, width_out in zip(offsets[:-2], offsets[1:-1], widths[:-1], widths[1:]):
        s, r = np.meshgrid(np.arange(width_in) + lo, np.arange(width_out) + hi, indexing='ij')
        senders.append(s.ravel())
        receivers.append(r.ravel())
    return np.concatenate(senders).astype(np.int32), np.concatenate(receivers).astype(np.int32), offsets


def random_inputs(seed, num_nodes, num_edges):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return (jax.random.normal(k1, (num_nodes, FEATURES)), jax.random.normal(k2, (num_edges, FEATURES)))


@pytest.fixture(scope='module')
def graph():
    senders, receivers, offsets = layered_graph(WIDTHS)
    nodes, edges = random_inputs(0, offsets[-1], len(senders))
    return nodes, edges, senders, receivers, offsets


def hidden_permutation(offsets, seed):
    """Node permutation `perm` (new index -> old) shuffling neurons within each hidden layer."""
    rng = np.random.default_rng(seed)
    perm = np.arange(offsets[-1])
    for lo, hi in zip(offsets[1:-2], offsets[2:-1]):
        perm[lo:hi] = rng.permutation(np.arange(lo, hi))
    return perm


def is_equivariant(fn, graph, seed=1):
    """Does fn(nodes, edges, senders, receivers) commute with a hidden-neuron permutation + edge shuffle?"""
    nodes, edges, senders, receivers, offsets = graph
    perm = hidden_permutation(offsets, seed)
    assert not np.array_equal(perm, np.arange(len(perm)))
    inverse = np.argsort(perm)
    edge_order = np.random.default_rng(seed).permutation(len(senders))
    out_nodes, out_edges = fn(nodes, edges, senders, receivers)
    new_nodes, new_edges = fn(
        nodes[perm],
        edges[edge_order],
        inverse[senders[edge_order]].astype(np.int32),
        inverse[receivers[edge_order]].astype(np.int32),
    )
    return np.allclose(new_nodes, out_nodes[perm], atol=1e-5) and np.allclose(
        new_edges, out_edges[edge_order], atol=1e-5
    )


MODELS = {
    'pna': PNA(FEATURES, num_layers=2),
    'transformer': RelationalTransformer(FEATURES, num_layers=2, num_heads=2),
}


@pytest.fixture(scope='module', params=sorted(MODELS))
def model(request, graph):
    """(module, params, jitted apply) for each graph meta-network."""
    module = MODELS[request.param]
    nodes, edges, senders, receivers, _ = graph
    params = module.init(jax.random.key(1), nodes, edges, senders, receivers)
    return module, params, jax.jit(module.apply)


def test_graph_models_are_equivariant_to_hidden_neuron_permutations(model, graph):
    _, params, apply = model
    assert is_equivariant(functools.partial(apply, params), graph)


def test_equivariance_check_catches_an_index_dependent_function(graph):
    order_dependent = lambda nodes, edges, s, r: (jnp.cumsum(nodes, axis=0), edges + s[:, None])
    assert not is_equivariant(order_dependent, graph)


def test_outputs_and_gradients_finite_with_isolated_node(model, graph):
    module, _, apply = model
    nodes, edges, senders, receivers, _ = graph
    # One more node with no edges at all, besides input (no in-) and output (no out-) neurons.
    nodes = jnp.concatenate([nodes, jnp.ones((1, FEATURES))])
    params = module.init(jax.random.key(2), nodes, edges, senders, receivers)
    out_nodes, out_edges = apply(params, nodes, edges, senders, receivers)
    assert out_nodes.shape == nodes.shape and out_edges.shape == edges.shape
    assert np.isfinite(out_nodes).all() and np.isfinite(out_edges).all()

    target_nodes, target_edges = random_inputs(3, *nodes.shape[:1], edges.shape[0])

    def loss(p):
        n, e = module.apply(p, nodes, edges, senders, receivers)
        return jnp.sum(n * target_nodes) + jnp.sum(e * target_edges)

    grads = jax.jit(jax.grad(loss))(params)
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        assert np.isfinite(leaf).all(), path
        assert np.abs(leaf).max() > 0, path


def test_padding_leaves_real_outputs_unchanged(model, graph):
    _, params, apply = model
    nodes, edges, senders, receivers, _ = graph
    num_nodes, num_edges = nodes.shape[0], edges.shape[0]
    pad_nodes, pad_edges = random_inputs(4, 3, 5)
    # Padded edges point at real and padded nodes alike.
    pad_senders = np.array([0, 4, num_nodes, 2, num_nodes + 1], np.int32)
    pad_receivers = np.array([5, num_nodes + 2, 9, 13, 1], np.int32)
    padded = apply(
        params,
        jnp.concatenate([nodes, 100 * pad_nodes]),
        jnp.concatenate([edges, 100 * pad_edges]),
        np.concatenate([senders, pad_senders]),
        np.concatenate([receivers, pad_receivers]),
        edge_mask=np.arange(num_edges + 5) < num_edges,
        node_mask=np.arange(num_nodes + 3) < num_nodes,
    )
    out_nodes, out_edges = apply(params, nodes, edges, senders, receivers)
    np.testing.assert_allclose(padded[0][:num_nodes], out_nodes, atol=1e-5)
    np.testing.assert_allclose(padded[1][:num_edges], out_edges, atol=1e-5)
    assert not np.asarray(padded[0][num_nodes:]).any() and not np.asarray(padded[1][num_edges:]).any()


def test_aggregate_is_zero_without_neighbours_and_scales_by_degree():
    messages = jnp.array([[1.0], [3.0], [-2.0]])
    receivers = jnp.array([1, 1, 2])
    out = aggregate(
        messages,
        receivers,
        jnp.ones(3, bool),
        jnp.ones(3, bool),
        ('mean', 'min', 'max', 'std'),
        ('identity', 'amplification', 'attenuation'),
    )
    assert out.shape == (3, 12)
    np.testing.assert_array_equal(out[0], 0.0)
    np.testing.assert_allclose(out[1, :4], [2.0, 1.0, 3.0, 1.0], atol=1e-3)
    delta = (np.log(3) + np.log(2)) / 2
    np.testing.assert_allclose(out[1, 4:8], out[1, :4] * np.log(3) / delta, rtol=1e-5)
    np.testing.assert_allclose(out[2, 8:12], out[2, :4] * delta / np.log(2), rtol=1e-5)
    names = (('mean', 'min', 'max', 'std'), ('identity', 'amplification', 'attenuation'))
    masks = jnp.ones(3, bool), jnp.ones(3, bool)
    np.testing.assert_allclose(aggregate(messages, receivers, *masks, *names, delta=delta), out, rtol=1e-6)
    fixed = aggregate(messages, receivers, *masks, *names, delta=1.0)  # PNA's choice: a normaliser from training
    np.testing.assert_allclose(fixed[1, 4:8], out[1, :4] * np.log(3), rtol=1e-5)


def test_layers_reject_mismatched_widths(graph):
    nodes, edges, senders, receivers, _ = graph
    with pytest.raises(ValueError, match='features'):
        PNA(FEATURES + 1, 1).init(jax.random.key(0), nodes, edges, senders, receivers)


def test_mlp_shapes_and_layer_norm():
    mlp = MLP((32, 32, 2), layer_norm=True)
    x = jnp.ones((6, 5))
    params = mlp.init(jax.random.key(0), x)
    assert mlp.apply(params, x).shape == (6, 2)
    assert 'LayerNorm_0' in params['params'] and 'LayerNorm_2' not in params['params']
    positive = MLP((4,), activation=jax.nn.relu, final_activation=True)
    assert (positive.apply(positive.init(jax.random.key(0), x), -x) >= 0).all()


def test_gathered_parts_act_like_their_concatenation(graph):
    nodes, edges, senders, receivers, _ = graph
    parts = (edges, (nodes, senders), (nodes, receivers))
    concatenated = jnp.concatenate([edges, nodes[senders], nodes[receivers]], -1)
    mlp = MLP((6, 4))
    params = mlp.init(jax.random.key(0), concatenated)
    assert jax.tree.all(jax.tree.map(np.array_equal, mlp.init(jax.random.key(0), *parts), params))
    np.testing.assert_allclose(mlp.apply(params, *parts), mlp.apply(params, concatenated), rtol=1e-5, atol=1e-6)
    dense = nn.Dense(6).init(jax.random.key(1), edges)
    chunks = GatheredDense(6, chunks=2).apply(dense, edges)
    np.testing.assert_allclose(jnp.concatenate(chunks, -1), nn.Dense(6).apply(dense, edges), rtol=1e-5, atol=1e-6)


def test_matmul_layer_norm_is_flax_layer_norm():
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (50, 8))  # an offset mean, as edge states have
    params = nn.LayerNorm().init(jax.random.key(1), x)
    assert jax.tree.all(jax.tree.map(np.array_equal, MatmulLayerNorm().init(jax.random.key(1), x), params))
    params = jax.tree.map(lambda p: p + jax.random.normal(jax.random.key(2), p.shape), params)
    np.testing.assert_allclose(
        MatmulLayerNorm().apply(params, x), nn.LayerNorm().apply(params, x), rtol=1e-5, atol=1e-5
    )


def test_coordinate_lstm_carry_roundtrip_under_jit():
    lstm = CoordinateLSTM(hidden=6, num_layers=2)
    carry = CoordinateLSTM.initialize_carry(7, hidden=6, num_layers=2)
    assert len(carry) == 2 and all(c.shape == (7, 6) and h.shape == (7, 6) for c, h in carry)
    x = jax.random.normal(jax.random.key(0), (7, 3))
    params = lstm.init(jax.random.key(1), carry, x)
    step = jax.jit(lstm.apply)
    carry1, out1 = step(params, carry, x)
    carry2, out2 = step(params, carry1, x)
    assert out1.shape == (7, 6)
    assert jax.tree.structure(carry1) == jax.tree.structure(carry)
    assert all(
        a.shape == b.shape and a.dtype == b.dtype for a, b in zip(jax.tree.leaves(carry1), jax.tree.leaves(carry))
    )
    assert not np.allclose(out1, out2)  # the state carries memory
    # Coordinates are independent: changing one input changes only its own output.
    _, out_changed = step(params, carry, x.at[0].add(1.0))
    np.testing.assert_allclose(out_changed[1:], out1[1:], atol=1e-6)
    assert not np.allclose(out_changed[0], out1[0])
    with pytest.raises(ValueError, match='layers'):
        lstm.apply(params, carry[:1], x)
