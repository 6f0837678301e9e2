"""Neural graphs: round trips, counts, symmetry, errors, batching."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from l2o_jax import graphs


class MixedCNN(nn.Module):
    """2-D convs of different kernel sizes, one without bias, global pooling, two dense layers."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(5, (3, 3))(x))
        x = nn.relu(nn.Conv(4, (5, 5), use_bias=False)(x))
        x = nn.relu(nn.Conv(6, (1, 3))(x))
        x = x.mean(axis=(1, 2))
        x = nn.relu(nn.Dense(7)(x))
        return nn.Dense(3)(x)


class Conv1D(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.tanh(nn.Conv(4, (5,))(x))
        x = nn.tanh(nn.Conv(3, (3,))(x))
        return nn.Dense(2)(x.mean(axis=1))


class NNXMLP(nnx.Module):
    def __init__(self, rngs):
        self.layers = nnx.List(
            [nnx.Linear(4, 6, rngs=rngs)]
            + [nnx.Linear(6, 6, rngs=rngs) for _ in range(10)]
            + [nnx.Linear(6, 2, rngs=rngs)]
        )

    def __call__(self, x):
        for layer in self.layers:
            x = nnx.relu(layer(x))
        return x


def _random_like(params, key):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, l.shape, l.dtype) for k, l in zip(keys, leaves)])


def linen_models():
    key = jax.random.key(0)
    mlp = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(5), nn.relu, nn.Dense(3)])
    return {
        "mlp": (mlp, mlp.init(key, jnp.ones((1, 6)))),
        "mixed_cnn": (MixedCNN(), MixedCNN().init(key, jnp.ones((1, 9, 9, 2)))),
        "conv1d": (Conv1D(), Conv1D().init(key, jnp.ones((1, 12, 1)))),
        "mlp_no_bias": (nn.Dense(4, use_bias=False), nn.Dense(4, use_bias=False).init(key, jnp.ones((1, 3)))),
    }


def nnx_state():
    return nnx.state(NNXMLP(nnx.Rngs(0)), nnx.Param)


ALL_PARAMS = {name: p for name, (_, p) in linen_models().items()} | {"nnx_mlp": nnx_state()}


@pytest.mark.parametrize("name", sorted(ALL_PARAMS))
def test_round_trip_is_exact(name):
    params = _random_like(ALL_PARAMS[name], jax.random.key(1))
    spec = graphs.graph_spec(params)
    graph = graphs.params_to_graph(params, spec)
    back = graphs.graph_to_params(graph.edges["features"], graph.nodes["features"], spec)
    # The real cells' rows, gathered straight from the leaves, are the padded edges' real cells; and back.
    cells = graphs.cell_values(params, spec)
    np.testing.assert_array_equal(cells, graph.edges["features"].reshape(-1)[spec.edge_kernel_mask.reshape(-1)])
    np.testing.assert_array_equal(cells, graph.edges["features"].reshape(-1)[spec.real_cells])
    np.testing.assert_array_equal(graphs.node_values(params, spec), graph.nodes["features"])
    from_cells = graphs.cells_to_params(cells, graph.nodes["features"], spec)
    assert jax.tree.structure(back) == jax.tree.structure(params) == jax.tree.structure(from_cells)
    for a, b, c in zip(jax.tree.leaves(params), jax.tree.leaves(back), jax.tree.leaves(from_cells)):
        assert a.dtype == b.dtype == c.dtype and a.shape == b.shape == c.shape
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))


def test_round_trip_of_feature_stack_under_jit():
    params = ALL_PARAMS["mixed_cnn"]
    spec = graphs.graph_spec(params)
    stack = graphs.stack_trees([params, jax.tree.map(lambda x: 2 * x, params), jax.tree.map(jnp.sign, params)])
    edges, nodes = jax.jit(lambda t: graphs.tree_to_graph_arrays(t, spec))(stack)
    assert edges.shape == (spec.n_edge, 25, 3) and nodes.shape == (spec.n_node, 3)
    np.testing.assert_array_equal(jax.jit(lambda t: graphs.node_values(t, spec))(stack), nodes)
    back = jax.jit(lambda e, n: graphs.graph_to_params(e, n, spec))(edges, nodes)
    for a, b in zip(jax.tree.leaves(stack), jax.tree.leaves(back)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_counts_match_architecture():
    spec = graphs.graph_spec(ALL_PARAMS["mixed_cnn"])
    widths = (2, 5, 4, 6, 7, 3)
    assert spec.widths == widths
    assert spec.n_node == sum(widths)
    assert spec.n_edge == sum(a * b for a, b in zip(widths, widths[1:]))
    assert spec.window == (5, 5)
    graph = graphs.params_to_graph(ALL_PARAMS["mixed_cnn"], spec)
    assert int(graph.n_node[0]) == spec.n_node and graph.senders.shape == (spec.n_edge,)
    # Edges only connect consecutive layers, sender before receiver.
    assert np.all(spec.node_layer[spec.receivers] == spec.node_layer[spec.senders] + 1)


def test_padding_is_centred_and_masked():
    params = ALL_PARAMS["mixed_cnn"]
    spec = graphs.graph_spec(params)
    edges, _ = graphs.tree_to_graph_arrays(params, spec)
    mask = spec.edge_kernel_mask
    assert np.all(np.asarray(edges)[~mask] == 0)
    first = spec.kernel_mask[0].reshape(5, 5)  # 3x3 kernel inside a 5x5 window
    assert first[1:4, 1:4].all() and first.sum() == 9
    dense = spec.kernel_mask[-1].reshape(5, 5)  # dense layer: the centre cell
    assert dense[2, 2] and dense.sum() == 1
    assert spec.kernel_mask[2].reshape(5, 5)[2, 1:4].all()  # 1x3 kernel on the middle row


def test_natural_layer_order_for_nnx_lists():
    spec = graphs.graph_spec(nnx_state())
    assert [layer.path[1] for layer in spec.layers] == list(range(12))
    assert spec.widths == (4,) + (6,) * 11 + (2,)


def test_explicit_order_and_chaining_error():
    params = {"b": {"kernel": jnp.ones((3, 4))}, "a": {"kernel": jnp.ones((4, 2))}}
    with pytest.raises(ValueError, match="a"):
        graphs.graph_spec(params, strict=True)
    spec = graphs.graph_spec(params, order=["b", "a"])
    assert spec.widths == (3, 4, 2)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"Dense_0": {"kernel": jnp.ones((3, 4))}, "BatchNorm_0": {"scale": jnp.ones(4)}}, "BatchNorm_0/scale"),
        ({"Conv3D_0": {"kernel": jnp.ones((3, 3, 3, 1, 4))}}, "Conv3D_0/kernel"),
        ({"Dense_0": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(5)}}, "Dense_0/bias"),
        ({"Dense_0": {"kernel": jnp.ones((3, 4))}, "Dense_1": {"kernel": jnp.ones((5, 2))}}, "Dense_1"),
    ],
)
def test_unsupported_parameters_name_the_path(params, match):
    with pytest.raises(ValueError, match=match):
        graphs.graph_spec(params, strict=True)


@pytest.mark.parametrize("name", ["mlp", "mixed_cnn", "conv1d", "nnx_mlp"])
def test_permuting_hidden_neurons_gives_isomorphic_graph(name):
    params = _random_like(ALL_PARAMS[name], jax.random.key(2))
    spec = graphs.graph_spec(params)
    layer = 1
    perm = np.random.default_rng(0).permutation(spec.widths[layer])
    permuted = graphs.permute_hidden_neurons(params, spec, layer, perm)
    g, gp = graphs.params_to_graph(params, spec), graphs.params_to_graph(permuted, spec)
    p, q = graphs.node_permutation(spec, layer, perm), graphs.edge_permutation(spec, layer, perm)
    np.testing.assert_array_equal(np.asarray(gp.nodes["features"]), np.asarray(g.nodes["features"])[p])
    np.testing.assert_array_equal(np.asarray(gp.edges["features"]), np.asarray(g.edges["features"])[q])
    # Same edge multiset: sorting the flattened edge features gives identical lists.
    np.testing.assert_array_equal(
        np.sort(np.asarray(g.edges["features"]).ravel()), np.sort(np.asarray(gp.edges["features"]).ravel())
    )
    # The permutation actually moved something (so the assertions above could fail).
    assert not np.array_equal(np.asarray(gp.edges["features"]), np.asarray(g.edges["features"]))


def test_permutation_and_scaling_preserve_function():
    model, params = linen_models()["mixed_cnn"]
    spec = graphs.graph_spec(params)
    x = jax.random.normal(jax.random.key(3), (2, 9, 9, 2))
    perm = np.random.default_rng(1).permutation(spec.widths[2])
    q = jnp.exp(jax.random.normal(jax.random.key(4), (spec.widths[2],)))
    out = model.apply(params, x)
    np.testing.assert_allclose(model.apply(graphs.permute_hidden_neurons(params, spec, 2, perm), x), out, atol=1e-5)
    np.testing.assert_allclose(model.apply(graphs.scale_hidden_neurons(params, spec, 2, q), x), out, atol=1e-4)
    with pytest.raises(ValueError, match="hidden layer"):
        graphs.permute_hidden_neurons(params, spec, 0, perm)
    moved = graphs.random_hidden_scaling(params, spec, jax.random.key(5), "scale")  # every hidden layer at once
    np.testing.assert_allclose(model.apply(moved, x), out, atol=1e-4)
    kernels = [i for layer in spec.layers for i in layer.kernel_leaves]  # (the biases start at zero)
    assert all(not np.allclose(jax.tree.leaves(moved)[i], jax.tree.leaves(params)[i]) for i in kernels)
    with pytest.raises(ValueError, match="group must be 'sign' or 'scale'"):
        graphs.random_hidden_scaling(params, spec, jax.random.key(5), "rotation")


def test_metadata_marks_inputs_outputs_and_activations():
    _, params = linen_models()["conv1d"]
    spec = graphs.graph_spec(params, activations=["tanh", "tanh", "linear"])
    assert spec.widths == (1, 4, 3, 2)
    np.testing.assert_array_equal(spec.node_role, [0, 1, 1, 1, 1, 1, 1, 1, 2, 2])
    np.testing.assert_array_equal(spec.node_position, [0, -1, -1, -1, -1, -1, -1, -1, 0, 1])
    tanh = graphs.ACTIVATION_CATEGORIES.index("tanh")
    assert (spec.node_activation[1:8] == tanh).all()
    assert spec.window == (1, 5)


def test_batching_graphs_of_different_architectures():
    window = (5, 5)
    p1, p2 = ALL_PARAMS["mixed_cnn"], ALL_PARAMS["mlp"]
    g1 = graphs.params_to_graph(p1, graphs.graph_spec(p1, window=window))
    g2 = graphs.params_to_graph(p2, graphs.graph_spec(p2, window=window))
    batched, masks = graphs.batch_graphs([g1, g2], n_node=64, n_edge=512)
    assert batched.nodes["features"].shape[0] == 64 and batched.edges["features"].shape == (512, 25)
    assert int(masks["node"].sum()) == int(g1.n_node[0] + g2.n_node[0])
    assert int(masks["edge"].sum()) == int(g1.n_edge[0] + g2.n_edge[0])
    # The second graph's senders are offset by the first graph's node count.
    assert int(batched.senders[int(g1.n_edge[0])]) == int(g1.n_node[0])
    with pytest.raises(ValueError, match="window"):
        graphs.batch_graphs([g1, graphs.params_to_graph(p2)], n_node=64, n_edge=512)
    with pytest.raises(ValueError, match="budgets"):
        graphs.batch_graphs([g1, g2], n_node=8, n_edge=512)
