"""Graph learned optimizers on models beyond MLPs and CNNs: parameters outside the neural graph, the graph read
from the computation (residual connections, normalisation, attention, embeddings), ResNet and transformer tasks,
NNX and Linen TrainState."""

import functools
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state
from problems import randomized

import l2o_jax
from l2o_jax import graphs
from l2o_jax.tasks import image_task
from l2o_jax.tasks.models import TransformerClassifier


class ScaledMLP(nn.Module):
    """An MLP with a LayerNorm and a parameter no layer table knows."""

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.LayerNorm()(nn.Dense(6)(x)))
        return nn.Dense(3)(h) * self.param("temperature", nn.initializers.ones, ())


@pytest.fixture(scope="module")
def gnn_meta():
    return l2o_jax.GraphL2O(hidden=8, layers=1).init(jax.random.key(0))


def _scaled_mlp_problem():
    model = ScaledMLP()
    x, y = jax.random.normal(jax.random.key(1), (16, 4)), jnp.arange(16) % 3
    params = model.init(jax.random.key(2), x)
    return params, lambda p: optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()


def test_graph_spec_leaves_unknown_parameters_outside_the_graph():
    params, _ = _scaled_mlp_problem()
    with pytest.warns(graphs.UnplacedParametersWarning, match="params/temperature"):
        spec = graphs.graph_spec(params)
    assert spec.widths == (4, 6, 3)
    assert spec.unplaced_paths == ("params/LayerNorm_0/bias", "params/LayerNorm_0/scale", "params/temperature")
    assert spec.unplaced_size == 13
    with pytest.raises(ValueError, match="params/LayerNorm_0/scale"):
        graphs.graph_spec(params, strict=True)
    edges, nodes = graphs.tree_to_graph_arrays(params, spec)
    back = graphs.graph_to_params(edges, nodes, spec, graphs.unplaced_values(params, spec))
    jax.tree.map(np.testing.assert_array_equal, back, params)
    with pytest.raises(ValueError, match="unplaced="):
        graphs.graph_to_params(edges, nodes, spec)
    with pytest.raises(ValueError, match="no Dense/Conv layer"):
        graphs.graph_spec({"Embed_0": {"embedding": jnp.ones((5, 3))}})
    # Read from the computation, the LayerNorm acts on Dense_0's neurons; the scalar temperature stays outside.
    read = dict(apply_fn=ScaledMLP().apply, example_input=jnp.ones((2, 4)))
    with pytest.warns(graphs.UnplacedParametersWarning, match="params/temperature"):
        spec = graphs.graph_spec(params, **read)
    assert spec.unplaced_paths == ("params/temperature",)
    assert [(spec.leaf_paths[leaf][-1], layer, kind) for leaf, layer, kind in spec.neuron_params] == [
        ("bias", 1, "shift"),
        ("scale", 1, "scale"),
    ]
    with pytest.raises(ValueError, match="params/temperature"):
        graphs.graph_spec(params, strict=True, **read)


def test_layers_off_the_heaviest_chain_and_attention_projections_stay_outside():
    params = {
        "attention": {"key": {"kernel": jnp.ones((8, 2, 4))}, "out": {"kernel": jnp.ones((2, 4, 8))}},
        "dense_0": {"kernel": jnp.ones((1, 8))},
        "dense_1": {"kernel": jnp.ones((8, 16))},
        "dense_2": {"kernel": jnp.ones((16, 8))},
        "dense_3": {"kernel": jnp.ones((8, 3))},
        "stray": {"kernel": jnp.ones((5, 5))},
    }
    with pytest.warns(graphs.UnplacedParametersWarning, match="attention/key/kernel"):
        spec = graphs.graph_spec(params)
    assert spec.widths == (1, 8, 16, 8, 3)
    assert spec.unplaced_paths == ("attention/key/kernel", "attention/out/kernel", "stray/kernel")
    with pytest.raises(ValueError, match="attention/key/kernel.*attention projection"):
        graphs.graph_spec(params, strict=True)


def test_unknown_layer_warns_naming_it_or_is_refused_under_strict(gnn_meta):
    params, loss_fn = _scaled_mlp_problem()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    tx = l2o_jax.graph_l2o(gnn_meta)
    with pytest.warns(graphs.UnplacedParametersWarning, match="params/temperature"):
        updates, _ = jax.jit(tx.update)(grads, tx.init(params), params, value=loss)
    assert np.isfinite(float(updates["params"]["temperature"]))
    assert float(jnp.abs(updates["params"]["temperature"])) > 0
    strict = l2o_jax.graph_l2o(gnn_meta, strict=True)
    with pytest.raises(ValueError, match="params/LayerNorm_0/scale"):
        jax.eval_shape(strict.update, grads, strict.init(params), params)


def test_models_without_unplaced_parameters_step_as_before(gnn_meta):
    # The unplaced branch adds no meta-parameters: saved meta-parameters keep their tree.
    assert set(gnn_meta.arrays["net"]) == set(
        l2o_jax.GraphL2O(hidden=8, layers=1).init(jax.random.key(1)).arrays["net"]
    )
    mlp = image_task("digits", model="mlp", width=8, depth=2, batch_size=16)
    params = mlp.init(jax.random.key(0))
    assert graphs.graph_spec(params).unplaced == ()


TASKS = {
    "resnet": dict(dataset="digits", model="resnet", width=8, depth=1),
    "transformer": dict(dataset="mnist1d", model="transformer", width=8, depth=1),
}


@pytest.mark.parametrize("factory", ["graph_l2o", "transformer_l2o"])
@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_graph_optimizers_train_resnet_and_transformer(factory, task_name):
    config = (
        l2o_jax.GraphL2O(hidden=8, layers=1)
        if factory == "graph_l2o"
        else l2o_jax.TransformerL2O(hidden=8, layers=1, heads=2)
    )
    task = image_task(**TASKS[task_name], batch_size=64)
    params = task.init(jax.random.key(0))
    batch = task.sample_batch(jax.random.key(1))
    read = dict(activations=task.activations, apply_fn=task.apply, example_input=batch[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", graphs.UnplacedParametersWarning)  # every parameter is in the graph
        spec = graphs.graph_spec(params, **read)
    assert spec.unplaced == ()
    if task_name == "resnet":  # one block: one skip connection; both LayerNorms' scales and shifts
        assert len(spec.residual_senders) == spec.widths[1] and len(spec.neuron_params) == 4
    else:  # attention and MLP skips; three LayerNorms and the query/key/value biases; 40 position neurons
        assert len(spec.residual_senders) == 2 * spec.widths[1] and len(spec.neuron_params) == 9
        assert spec.layers[1].cell_leaves and spec.layers[0].input_tables[0][1] == 40
    tx = optax.chain(optax.clip_by_global_norm(1.0), getattr(l2o_jax, factory)(config.init(jax.random.key(0)), **read))

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(task.loss)(params, batch)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state, loss, updates

    state = tx.init(params)
    first = float(task.loss(params, batch))
    for _ in range(30):
        params, state, _, updates = step(params, state)
        assert all(np.isfinite(u).all() for u in jax.tree.leaves(updates))
    assert float(task.loss(params, batch)) < first - 0.05


class NNXTransformer(nnx.Module):
    """One pre-norm self-attention block and MLP over 8 tokens; attribute names sort in forward order."""

    def __init__(self, rngs):
        self.dense_0 = nnx.Linear(8, 8, rngs=rngs)
        self.position = nnx.Param(jnp.zeros((8, 8)))
        self.norm_0, self.norm_1 = nnx.LayerNorm(8, rngs=rngs), nnx.LayerNorm(8, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(2, 8, decode=False, rngs=rngs)
        self.dense_1, self.dense_2 = nnx.Linear(8, 16, rngs=rngs), nnx.Linear(16, 8, rngs=rngs)
        self.dense_3 = nnx.Linear(8, 10, rngs=rngs)

    def __call__(self, x):
        h = self.dense_0(x) + self.position[...]
        h = h + self.attention(self.norm_0(h))
        h = h + self.dense_2(nnx.gelu(self.dense_1(self.norm_1(h))))
        return self.dense_3(h.mean(axis=1))


def test_nnx_transformer_trains_with_nnx_optimizer(gnn_meta):
    task = image_task("digits", model="mlp", batch_size=64)
    x, y = task.sample_batch(jax.random.key(3))
    x = x.reshape(-1, 8, 8)
    model = NNXTransformer(nnx.Rngs(0))
    graphdef, _, rest = nnx.split(model, nnx.Param, ...)
    apply_fn = lambda params, x: nnx.merge(graphdef, params, rest)(x)
    tx = l2o_jax.graph_l2o(gnn_meta, apply_fn=apply_fn, example_input=x)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    loss_fn = lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads, value=loss)

    first = float(loss_fn(model))
    with warnings.catch_warnings():
        warnings.simplefilter("error", graphs.UnplacedParametersWarning)  # attention, norms, position: all placed
        for _ in range(30):
            step(model, optimizer)
    assert float(loss_fn(model)) < first - 0.05


class ResidualMLP(nn.Module):
    """``h = Dense(x); h = h + Dense(relu(Dense(h))); out = Dense(relu(h))``: a residual stream of width 6."""

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(6)(x)
        u = nn.relu(nn.Dense(5)(h))
        h = h + nn.Dense(6)(u)
        return nn.Dense(3)(nn.relu(h))


def _two_steps(tx, params, loss_fn):
    state, update, value_and_grad = tx.init(params), jax.jit(tx.update), jax.jit(jax.value_and_grad(loss_fn))
    for _ in range(2):
        loss, grads = value_and_grad(params)
        updates, state = update(grads, state, params, value=loss)
        params = optax.apply_updates(params, updates)
    return updates


@pytest.mark.parametrize("factory", ["graph_l2o", "transformer_l2o"])
def test_residual_edges_are_read_from_the_computation_and_keep_stream_symmetry(factory):
    # The configs of the tests above: their meta-networks are compiled once for the file.
    config = (
        l2o_jax.GraphL2O(hidden=8, layers=1)
        if factory == "graph_l2o"
        else l2o_jax.TransformerL2O(hidden=8, layers=1, heads=2)
    )
    model = ResidualMLP()
    x, y = jax.random.normal(jax.random.key(1), (16, 4)), jnp.arange(16) % 3
    params = model.init(jax.random.key(2), x)
    loss_fn = jax.jit(lambda p: optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean())
    spec = graphs.graph_spec(params, apply_fn=model.apply, example_input=x)
    offsets = spec.node_offsets
    np.testing.assert_array_equal(spec.residual_senders, offsets[1] + np.arange(6))
    np.testing.assert_array_equal(spec.residual_receivers, offsets[3] + np.arange(6))
    assert len(graphs.graph_spec(params).residual_senders) == 0
    np.testing.assert_array_equal(spec.message_senders[spec.n_edge :], spec.residual_senders)
    np.testing.assert_array_equal(spec.message_receivers[: spec.n_edge], spec.receivers)

    meta = randomized(config.init(jax.random.key(0)))
    tx = getattr(l2o_jax, factory)(meta, apply_fn=model.apply, example_input=x)
    updates = _two_steps(tx, params, loss_fn)
    sequential = _two_steps(getattr(l2o_jax, factory)(meta), params, loss_fn)
    assert _max_difference(updates, sequential) > 1e-6

    # The residual stream's neurons (outputs of Dense_0 and Dense_2) permuted together: the same function.
    perm = np.random.default_rng(0).permutation(6)
    stream = lambda tree: graphs.permute_hidden_neurons(
        graphs.permute_hidden_neurons(tree, spec, 1, perm), spec, 3, perm
    )
    permuted_params = stream(params)
    np.testing.assert_allclose(loss_fn(permuted_params), loss_fn(params), rtol=1e-6)
    permuted_updates = _two_steps(tx, permuted_params, loss_fn)
    for got, want in zip(jax.tree.leaves(permuted_updates), jax.tree.leaves(stream(updates))):
        np.testing.assert_allclose(got, want, atol=1e-5)


class BranchMLP(nn.Module):
    """Shapes chain ``Dense_0 -> Dense_1 -> Dense_2``, but ``Dense_2`` reads ``Dense_0``'s outputs."""

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(6)(x)
        g = nn.Dense(6)(h)
        return nn.Dense(3)(h) * jnp.sum(g)


def test_a_chain_the_computation_contradicts_warns_or_is_refused():
    model, x = BranchMLP(), jnp.ones((2, 4))
    params = model.init(jax.random.key(0), x)
    with pytest.warns(UserWarning, match="'params/Dense_2' reads \\['params/Dense_0'\\]"):
        graphs.graph_spec(params, apply_fn=model.apply, example_input=x)
    with pytest.raises(ValueError, match="params/Dense_2"):
        graphs.graph_spec(params, apply_fn=model.apply, example_input=x, strict=True)


class NormResidualMLP(nn.Module):
    """``ResidualMLP`` with a LayerNorm inside the block and one on the residual stream before the head."""

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(6)(x)
        u = nn.relu(nn.LayerNorm()(nn.Dense(5)(h)))
        h = h + nn.Dense(6)(u)
        return nn.Dense(3)(nn.relu(nn.LayerNorm()(h)))


def _max_difference(a, b):
    return max(float(np.abs(np.subtract(x, y)).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _assert_permutes(tx, params, loss_fn, updates, permute):
    """The permuted network computes the same loss and gets the permuted updates."""
    permuted_params = permute(params)
    np.testing.assert_allclose(loss_fn(permuted_params), loss_fn(params), rtol=1e-5)
    for got, want in zip(jax.tree.leaves(_two_steps(tx, permuted_params, loss_fn)), jax.tree.leaves(permute(updates))):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_norm_scales_and_shifts_are_neuron_parameters_that_follow_the_residual_stream():
    model = NormResidualMLP()
    x, y = jax.random.normal(jax.random.key(1), (16, 4)), jnp.arange(16) % 3
    params = model.init(jax.random.key(2), x)
    params = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(jax.random.key(3), a.shape), params)  # scales not 1
    loss_fn = lambda p: optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()
    spec = graphs.graph_spec(params, apply_fn=model.apply, example_input=x, strict=True)
    on = {spec.leaf_paths[leaf][1:]: (layer, kind) for leaf, layer, kind in spec.neuron_params}
    assert on == {
        ("LayerNorm_0", "scale"): (2, "scale"),
        ("LayerNorm_0", "bias"): (2, "shift"),
        ("LayerNorm_1", "scale"): (3, "scale"),  # the residual stream after the block
        ("LayerNorm_1", "bias"): (3, "shift"),
    }
    np.testing.assert_array_equal(spec.neuron_param_nodes[:5], spec.node_offsets[2] + np.arange(5))
    edges, nodes = graphs.tree_to_graph_arrays(params, spec)
    back = graphs.graph_to_params(edges, nodes, spec, neuron_params=graphs.neuron_param_values(params, spec))
    jax.tree.map(np.testing.assert_array_equal, back, params)

    meta = randomized(l2o_jax.GraphL2O(hidden=8, layers=1).init(jax.random.key(0)))
    tx = l2o_jax.graph_l2o(meta, apply_fn=model.apply, example_input=x)
    updates = _two_steps(tx, params, loss_fn)
    with pytest.warns(graphs.UnplacedParametersWarning, match="LayerNorm_1/scale"):
        as_coordinates = _two_steps(l2o_jax.graph_l2o(meta), params, loss_fn)
    assert _max_difference(updates["params"]["LayerNorm_1"], as_coordinates["params"]["LayerNorm_1"]) > 1e-6
    assert float(jnp.abs(updates["params"]["LayerNorm_1"]["scale"]).min()) > 0

    perm = np.random.default_rng(0).permutation(6)
    stream = lambda tree: graphs.permute_hidden_neurons(
        graphs.permute_hidden_neurons(tree, spec, 1, perm), spec, 3, perm
    )
    assert not np.allclose(stream(params)["params"]["LayerNorm_1"]["scale"], params["params"]["LayerNorm_1"]["scale"])
    _assert_permutes(tx, params, loss_fn, updates, stream)


def _without_key_bias_gradient(params):
    # Softmax is invariant to the key bias: its exact gradient is zero, and the float noise in its place, normalised
    # by the Adam-like features, differs between a network and its permuted copy.
    attention = params["params"]["MultiHeadDotProductAttention_0"]
    key = {**attention["key"], "bias": jax.lax.stop_gradient(attention["key"]["bias"])}
    return {"params": {**params["params"], "MultiHeadDotProductAttention_0": {**attention, "key": key}}}


def test_attention_heads_block_mlp_and_residual_stream_permute_the_update():
    model = TransformerClassifier(width=8, depth=1, num_classes=3, heads=2)
    x, y = jax.random.normal(jax.random.key(1), (8, 5, 2)), jnp.arange(8) % 3
    params = jax.tree.map(lambda a: a + 0.1, model.init(jax.random.key(2), x))  # position table, biases not zero
    logits = lambda p: model.apply(_without_key_bias_gradient(p), x)
    loss_fn = lambda p: optax.softmax_cross_entropy_with_integer_labels(logits(p), y).mean()
    spec = graphs.graph_spec(params, apply_fn=model.apply, example_input=x, strict=True)
    # Dense_0 + position embedding, query/key/value, out, Dense_1, Dense_2, Dense_3; 2 + 5 input neurons.
    assert spec.widths == (7, 8, 8, 8, 16, 8, 3)
    assert spec.window == (1, 3) and spec.kernel_mask[1].all() and spec.kernel_mask[0].tolist() == [0, 1, 0]
    meta = randomized(l2o_jax.GraphL2O(hidden=8, layers=1).init(jax.random.key(0)))
    tx = l2o_jax.graph_l2o(meta, apply_fn=model.apply, example_input=x)
    updates = _two_steps(tx, params, loss_fn)

    head_dim, rng = 4, np.random.default_rng(0)
    heads = (np.array([1, 0])[:, None] * head_dim + np.arange(head_dim)).reshape(-1)  # swap the two heads
    stream, mlp = rng.permutation(8), rng.permutation(16)
    permutations = {
        "heads": lambda tree: graphs.permute_hidden_neurons(tree, spec, 2, heads),
        "block mlp": lambda tree: graphs.permute_hidden_neurons(tree, spec, 4, mlp),
        "residual stream": lambda tree: functools.reduce(
            lambda t, layer: graphs.permute_hidden_neurons(t, spec, layer, stream), (1, 3, 5), tree
        ),
    }
    swapped = permutations["heads"](params)["params"]["MultiHeadDotProductAttention_0"]
    original = params["params"]["MultiHeadDotProductAttention_0"]
    np.testing.assert_array_equal(swapped["query"]["kernel"][:, 0], original["query"]["kernel"][:, 1])
    np.testing.assert_array_equal(swapped["out"]["kernel"][0], original["out"]["kernel"][1])
    for permute in permutations.values():
        _assert_permutes(tx, params, loss_fn, updates, permute)


def test_linen_trainstate_trains_a_resnet_with_layernorm():
    task = image_task("digits", model="resnet", width=8, depth=1, batch_size=64)
    batch = task.sample_batch(jax.random.key(1))
    variables = task.init(jax.random.key(0))
    apply_fn = lambda params, x: task.apply({"params": params}, x)  # TrainState holds variables['params']
    tx = l2o_jax.graph_l2o(
        "ng-gnn-digits", activations=task.activations, apply_fn=apply_fn, example_input=batch[0], total_steps=21
    )
    state = train_state.TrainState.create(apply_fn=apply_fn, params=variables["params"], tx=tx)

    @jax.jit
    def train_step(state):
        loss, grads = jax.value_and_grad(lambda p: task.loss({"params": p}, batch))(state.params)
        return state.apply_gradients(grads=grads), loss

    with warnings.catch_warnings():
        warnings.simplefilter("error", graphs.UnplacedParametersWarning)
        losses = [float(train_step(state)[1])]
        for _ in range(20):
            state, loss = train_step(state)
            losses.append(float(loss))
    assert np.isfinite(losses).all() and losses[-1] < losses[0] - 0.05


def test_meta_training_reads_the_graph_of_a_resnet_from_its_computation():
    """Meta-gradients through a short unroll on a ResNet task: the learned optimizer is built from the model's
    computation (residual edges, LayerNorm parameters placed), so nothing is left unplaced."""
    from l2o_jax.meta import fresh_unroll_loss

    task = image_task("digits", model="resnet", width=8, depth=2, batch_size=16)
    meta = l2o_jax.GraphL2O(hidden=8, layers=1).init(jax.random.key(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", graphs.UnplacedParametersWarning)
        loss, grads = jax.value_and_grad(lambda a: fresh_unroll_loss(a, meta, task, jax.random.key(1), 3))(meta.arrays)
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert any(np.abs(g).max() > 0 for g in jax.tree.leaves(grads))


class ActivationsMLP(nn.Module):
    """One hidden layer per activation, as jax emits it, with a LayerNorm between the bias add and the gelu."""

    @nn.compact
    def __call__(self, x):
        exact_gelu = functools.partial(nn.gelu, approximate=False)
        for activation in (nn.tanh, nn.relu, exact_gelu, nn.silu, nn.softplus, nn.sigmoid, jnp.sin):
            x = activation(nn.Dense(3)(x))
        h = nn.gelu(nn.LayerNorm()(nn.Dense(3)(x)))
        return nn.Dense(2)(h)


def test_activations_are_read_from_the_computation():
    model, x = ActivationsMLP(), jnp.ones((2, 4))
    params = model.init(jax.random.key(0), x)
    with pytest.warns(UserWarning, match=r"could not read the activation after layers \['params/Dense_6'\]"):
        spec = graphs.graph_spec(params, apply_fn=model.apply, example_input=x)
    read = ("tanh", "relu", "gelu", "swish", "softplus", "sigmoid", "relu", "gelu", "linear")  # sin: the default
    assert tuple(layer.activation for layer in spec.layers) == read
    category = lambda name: graphs.ACTIVATION_CATEGORIES.index(
        name if name in graphs.ACTIVATION_CATEGORIES else "other"
    )
    want = np.concatenate(
        [np.full(4, 0)] + [np.full(layer.fan_out, category(a)) for layer, a in zip(spec.layers, read)]
    )
    np.testing.assert_array_equal(spec.node_activation, want)
    given = ("linear",) * 8 + ("tanh",)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec = graphs.graph_spec(params, apply_fn=model.apply, example_input=x, activations=given)
    assert tuple(layer.activation for layer in spec.layers) == given  # given activations win
    with pytest.warns(graphs.UnplacedParametersWarning):  # without the computation: as before
        spec = graphs.graph_spec(params)
    assert {layer.activation for layer in spec.layers[:-1]} == {"relu"}


def test_resnet_and_transformer_activations_are_read_from_the_computation():
    """The ResNet's stream is ``relu(LayerNorm(h))`` before the classifier reads it, so the last layer writing the
    stream reads as ReLU; the transformer's attention layers are linear, its MLP's first layer GELU."""
    from l2o_jax.tasks.models import ResNetClassifier

    resnet, images = ResNetClassifier(width=4, depth=2, num_classes=3), jnp.ones((1, 6, 6, 1))
    transformer, tokens = TransformerClassifier(width=8, depth=1, num_classes=3), jnp.ones((1, 5, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resnet_spec = graphs.graph_spec(
            resnet.init(jax.random.key(0), images), apply_fn=resnet.apply, example_input=images
        )
        transformer_spec = graphs.graph_spec(
            transformer.init(jax.random.key(0), tokens), apply_fn=transformer.apply, example_input=tokens
        )
    assert [layer.activation for layer in resnet_spec.layers] == ["linear", "relu", "linear", "relu", "relu", "linear"]
    assert [(layer.activation, layer.attention) for layer in transformer_spec.layers] == [
        ("linear", False), ("linear", True), ("linear", True), ("gelu", False), ("linear", False), ("linear", False)
    ]  # fmt: skip


def test_graph_optimizers_take_the_activations_read_from_the_computation():
    """A tanh MLP: the factory given ``apply_fn`` steps as with ``activations='tanh'``, not as with the ReLU default."""
    model = nn.Sequential([nn.Dense(5), nn.tanh, nn.Dense(3)])
    x, y = jax.random.normal(jax.random.key(1), (16, 4)), jnp.arange(16) % 3
    params = model.init(jax.random.key(2), x)
    loss_fn = jax.jit(lambda p: optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean())
    meta = randomized(l2o_jax.GraphL2O(hidden=8, layers=1).init(jax.random.key(0)))
    read = _two_steps(l2o_jax.graph_l2o(meta, apply_fn=model.apply, example_input=x), params, loss_fn)
    given = _two_steps(l2o_jax.graph_l2o(meta, activations="tanh"), params, loss_fn)
    default = _two_steps(l2o_jax.graph_l2o(meta), params, loss_fn)
    assert _max_difference(read, given) < 1e-6 < _max_difference(read, default)
