"""The learned backward pass: backprop at initialisation, permutation equivariance, meta-training, errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import l2o_jax
from l2o_jax import graphs
from l2o_jax.backward import LearnedBackward
from l2o_jax.backward import learned_gradient_task
from l2o_jax.backward import learned_value_and_grad
from l2o_jax.backward import network_spec
from l2o_jax.backward import record_forward
from l2o_jax.meta import FullUnrollBPTT
from l2o_jax.meta import MetaTrainConfig
from l2o_jax.meta import UnrollConfig
from l2o_jax.meta import fresh_unroll_loss
from l2o_jax.meta import meta_train
from l2o_jax.tasks import MLPClassifier
from l2o_jax.tasks import TaskFamily
from l2o_jax.tasks import image_task

CONFIG = LearnedBackward(hidden=8, layers=2)
TASKS = {
    "mlp-relu": dict(dataset="digits", model="mlp", width=16, depth=3, activation="relu"),
    "mlp-tanh-wide": dict(dataset="mnist1d", model="mlp", width=24, depth=2, activation="tanh"),
    "cnn-relu-2d": dict(dataset="digits", model="cnn", width=6, depth=2, activation="relu"),
    "cnn-tanh-1d": dict(dataset="mnist1d", model="cnn", width=5, depth=1, kernel_size=5, activation="tanh"),
}


@functools.lru_cache(maxsize=None)
def setup(name):
    """A task, random parameters (LeCun-normal kernels, small biases) and a batch, made with numpy: compiling
    the initialisation would cost more than the tests."""
    task = image_task(batch_size=16, **TASKS[name])
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(task.init, jax.random.key(0))
    scale = lambda s: 0.1 if len(s.shape) == 1 else 1 / np.sqrt(np.prod(s.shape[:-1]))
    params = jax.tree.map(lambda s: (scale(s) * rng.normal(size=s.shape)).astype(np.float32), shapes)
    x, y = task.data.split("train")
    x = (np.asarray(x[:16], np.float32) - np.asarray(task.data.mean)) / np.asarray(task.data.std)
    return task, params, (x, np.asarray(y[:16]))


# One compiled program per architecture, shared by every test (meta-parameters are traced arguments).
@jax.jit
def learned_and_true(task, meta_params, params, batch):
    return learned_value_and_grad(task, meta_params)(params, batch), jax.value_and_grad(task.loss)(params, batch)


def perturbed(meta_params, seed, scale=0.3):
    rng = np.random.default_rng(seed)
    noisy = lambda x: np.asarray(x) + np.float32(scale) * rng.normal(size=x.shape).astype(np.float32)
    return meta_params.replace(arrays=jax.tree.map(noisy, meta_params.arrays))


def assert_trees_close(a, b, atol):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_backprop_initialisation_equals_jax_grad(name):
    task, params, batch = setup(name)
    (loss, grads), (true_loss, true_grads) = learned_and_true(task, CONFIG.init(jax.random.key(0)), params, batch)
    np.testing.assert_allclose(loss, true_loss, atol=1e-5)
    assert_trees_close(grads, true_grads, atol=1e-5)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(true_grads)) > 1e-3  # not trivially zero


def test_forward_tape_matches_the_model():
    task, params, batch = setup("cnn-relu-2d")
    tape, logits = jax.jit(lambda p, x: (record_forward(network_spec(task.model, p), p, x), task.apply(p, x)))(
        params, batch[0]
    )
    np.testing.assert_allclose(tape.logits, logits, atol=1e-5)
    assert [z.shape[-1] for z in tape.pre] == [1, 6, 6, 10]
    assert tape.pre[1].shape == (16, 8, 8, 6)  # conv channels are neurons with values at every position


def test_learned_gradients_differ_from_backprop_once_perturbed_and_survive_save_load(tmp_path):
    task, params, batch = setup("mlp-relu")
    meta_params = perturbed(CONFIG.init(jax.random.key(0)), 1)
    (_, grads), (_, true_grads) = learned_and_true(task, meta_params, params, batch)
    differences = [float(jnp.abs(g - t).max()) for g, t in zip(jax.tree.leaves(grads), jax.tree.leaves(true_grads))]
    assert min(differences) > 1e-4
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
    loaded = l2o_jax.load_meta_params(l2o_jax.save_meta_params(tmp_path / "backward", meta_params))
    assert loaded.config == meta_params.config
    jax.tree.map(np.testing.assert_array_equal, loaded.arrays, meta_params.arrays)


@pytest.mark.parametrize("name", ["mlp-relu", "cnn-relu-2d"])
def test_learned_gradients_are_permutation_equivariant(name):
    task, params, batch = setup(name)
    meta_params = perturbed(CONFIG.init(jax.random.key(0)), 2)
    spec = graphs.graph_spec(params)
    (_, grads), _ = learned_and_true(task, meta_params, params, batch)
    rng = np.random.default_rng(0)
    permuted_params, expected = params, grads
    for layer in range(1, len(spec.layers)):
        perm = rng.permutation(spec.widths[layer])
        permuted_params = graphs.permute_hidden_neurons(permuted_params, spec, layer, perm)
        expected = graphs.permute_hidden_neurons(expected, spec, layer, perm)
    (_, permuted_grads), _ = learned_and_true(task, meta_params, permuted_params, batch)
    assert_trees_close(permuted_grads, expected, atol=1e-6)


def test_learned_gradient_task_is_a_drop_in_for_jax_grad():
    task, params, batch = setup("mlp-relu")
    meta_params = perturbed(CONFIG.init(jax.random.key(0)), 3)
    wrapped = learned_gradient_task(task, meta_params)
    loss, grads = jax.jit(jax.value_and_grad(wrapped.loss))(params, batch)
    (expected_loss, expected), _ = learned_and_true(task, meta_params, params, batch)
    np.testing.assert_allclose(loss, expected_loss, atol=1e-6)
    assert_trees_close(grads, expected, atol=1e-6)
    state = optax.sgd(0.1).init(params)
    updates, _ = optax.sgd(0.1).update(grads, state)
    assert jax.tree.structure(optax.apply_updates(params, updates)) == jax.tree.structure(params)


def test_meta_training_beats_the_backprop_initialisation_on_held_out_tasks(tmp_path):
    family = TaskFamily(datasets=("digits",), models=("mlp",), widths=(16,), depths=(2,), batch_size=32)
    config = LearnedBackward(hidden=8, layers=1, optimizer="sgd", learning_rate=0.05)
    length = 10
    run = MetaTrainConfig(
        config,
        family,
        FullUnrollBPTT(lengths=(length,), num_tasks=2),
        outer_steps=25,
        meta_lr=1e-2,
        schedule="constant",
        checkpoint_every=25,
    )
    task = family.sample(jax.random.key(0))
    held_out = jnp.stack([jax.random.key(10_000 + s) for s in range(8)])  # init and batch keys never trained on

    @jax.jit
    def held_out_meta_loss(arrays):
        meta_params = config.init(jax.random.key(0)).replace(arrays=arrays)
        unroll = lambda k: fresh_unroll_loss(arrays, meta_params, task, k, length, UnrollConfig())
        return jax.lax.map(unroll, held_out).mean()

    before = float(held_out_meta_loss(jax.device_get(config.init(jax.random.key(0)).arrays)))
    result = meta_train(run, tmp_path / "run", progress=False)
    after = float(held_out_meta_loss(jax.device_get(result.meta_params.arrays)))
    assert result.skipped_steps == 0
    assert after < before - 0.02, (before, after)


def test_unsupported_models_and_parameters_are_clear_errors():
    meta_params = CONFIG.init(jax.random.key(0))
    model = MLPClassifier(hidden=(8,), num_classes=10)
    x, y = jnp.zeros((4, 8, 8, 1)), jnp.zeros((4,), jnp.int32)
    params = jax.tree.map(lambda s: np.zeros(s.shape, np.float32), jax.eval_shape(model.init, jax.random.key(0), x))
    value_and_grad = learned_value_and_grad(model, meta_params)
    with pytest.raises(ValueError, match="params/BatchNorm_0/scale"):
        value_and_grad({"params": {**params["params"], "BatchNorm_0": {"scale": jnp.ones(8)}}}, (x, y))
    conv_kernel = {"kernel": jnp.zeros((3, 3, 1, 8)), "bias": jnp.zeros(8)}
    with pytest.raises(ValueError, match="params/Dense_0/kernel"):
        value_and_grad({"params": {**params["params"], "Dense_0": conv_kernel}}, (x, y))
    extra = {"kernel": jnp.zeros((10, 10)), "bias": jnp.zeros(10)}
    with pytest.raises(ValueError, match="params/Dense_2"):
        value_and_grad({"params": {**params["params"], "Dense_2": extra}}, (x, y))
    with pytest.raises(ValueError, match="params/Dense_0/kernel"):
        value_and_grad(params, (jnp.zeros((4, 7)), y))
    with pytest.raises(ValueError, match="MLPClassifier and CNNClassifier"):
        learned_value_and_grad(object(), meta_params)
    with pytest.raises(ValueError, match="optimizer"):
        LearnedBackward(optimizer="lbfgs")
