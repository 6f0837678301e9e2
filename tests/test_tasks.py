"""Tests for l2o_jax.tasks: datasets (embedded and mocked tfds), models, Task and TaskFamily."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from l2o_jax.graphs import UnplacedParametersWarning
from l2o_jax.graphs import graph_spec
from l2o_jax.tasks import CNNClassifier
from l2o_jax.tasks import Dataset
from l2o_jax.tasks import DatasetUnavailableError
from l2o_jax.tasks import MLPClassifier
from l2o_jax.tasks import TaskFamily
from l2o_jax.tasks import image_task
from l2o_jax.tasks import layer_activations
from l2o_jax.tasks import load_dataset
from l2o_jax.tasks import principal_components


def train(task, steps, learning_rate, seed=0):
    """Adam on ``task`` for ``steps`` jitted steps; returns the final params."""
    optimizer = optax.adam(learning_rate)

    @jax.jit
    def run(task, params, key):
        def step(carry, key):
            params, state = carry
            grads = jax.grad(task.loss)(params, task.sample_batch(key))
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), jax.random.split(key, steps))
        return params

    key_init, key_train = jax.random.split(jax.random.key(seed))
    return run(task, task.init(key_init), key_train)


def test_digits_splits_dtypes_and_normalisation():
    data = load_dataset('digits')
    assert (data.train_x.shape, data.val_x.shape, data.test_x.shape) == (
        (1197, 8, 8, 1),
        (300, 8, 8, 1),
        (300, 8, 8, 1),
    )
    assert data.train_x.dtype == jnp.float32 and data.train_y.dtype == jnp.int32
    assert (data.input_shape, data.num_classes) == ((8, 8, 1), 10)
    assert data.mean.shape == data.std.shape == (1,)
    train_x = data.normalize(data.train_x)
    np.testing.assert_allclose(train_x.mean(), 0.0, atol=1e-4)
    np.testing.assert_allclose(train_x.std(), 1.0, atol=1e-4)
    assert load_dataset('digits') is data  # cached
    assert set(np.unique(data.test_y)) == set(range(10))


def test_mnist1d_shapes():
    data = load_dataset('mnist1d')
    assert (data.train_x.shape, data.val_x.shape, data.test_x.shape) == ((3500, 40, 1), (500, 40, 1), (1000, 40, 1))
    assert data.input_shape == (40, 1) and data.train_y.dtype == jnp.int32


def test_split_and_dataset_names_are_checked():
    with pytest.raises(ValueError, match='validation'):
        load_dataset('digits').split('valid')
    with pytest.raises(ValueError, match='mnist1d'):
        load_dataset('imagenet')


def test_principal_components_are_fitted_on_the_training_split_only():
    data = load_dataset('digits')
    reduced = principal_components(data, 48)
    assert (reduced.name, reduced.input_shape, reduced.train_x.shape) == ('digits-pca48', (48,), (1197, 48))
    train = np.asarray(reduced.train_x, np.float64)
    covariance = np.cov(train.T)
    np.testing.assert_allclose(train.mean(0), 0.0, atol=1e-3)  # centred on the training split
    np.testing.assert_allclose(covariance - np.diag(np.diag(covariance)), 0.0, atol=1e-2)  # uncorrelated
    assert np.all(np.diff(np.diag(covariance)) <= 1e-6)  # leading components first
    # Validation inputs are projected with the training split's centre and components, not refitted.
    flat = lambda x: np.asarray(x, np.float64).reshape(len(x), -1)
    directions = np.linalg.lstsq(flat(data.train_x) - flat(data.train_x).mean(0), train, rcond=None)[0]
    expected = (flat(data.val_x) - flat(data.train_x).mean(0)) @ directions
    np.testing.assert_allclose(reduced.val_x, expected, atol=1e-3)
    np.testing.assert_allclose(reduced.normalize(reduced.train_x).std(0), 1.0, atol=1e-4)
    assert principal_components(load_dataset('mnist1d'), 48).input_shape == (40,)  # fewer values: all kept
    task = image_task('digits', model='mlp', width=48, depth=2, pca_dims=48)
    assert task.name == 'digits-pca48/mlp-w48-d2-relu' and load_dataset('digits', pca_dims=48) is task.data
    assert TaskFamily(datasets=('digits',), models=('mlp',), pca_dims=8).sample(jax.random.key(0)).input_shape == (8,)
    with pytest.raises(ValueError, match='dims'):
        principal_components(data, 0)


def test_cnn_learns_digits():
    # Batch 32: XLA's CPU convolution gradients dominate the test's time; accuracy is the same.
    task = image_task('digits', model='cnn', width=16, depth=2, batch_size=32)
    params = train(task, steps=300, learning_rate=1e-2)
    assert float(task.evaluate(params)['accuracy']) > 0.8  # chance is 0.1; reaches 0.86-0.90


def test_mlp_learns_mnist1d():
    task = image_task('mnist1d', model='mlp', width=64, depth=2, batch_size=64)
    params = train(task, steps=300, learning_rate=1e-2)
    assert float(task.evaluate(params)['accuracy']) > 0.4  # chance is 0.1; reaches ~0.5


def test_task_is_a_jit_argument_not_a_constant():
    task = image_task('digits', width=8, depth=1, batch_size=16)
    key = jax.random.key(0)
    x, y = jax.jit(lambda t, k: t.sample_batch(k))(task, key)
    assert x.shape == (16, 8, 8, 1) and x.dtype == jnp.float32 and y.shape == (16,)
    # The dataset enters the computation as arguments, never baked in as constants.
    assert not jax.make_jaxpr(lambda t, k: t.sample_batch(k))(task, key).consts
    metrics = jax.jit(lambda t, p: t.evaluate(p, 'validation'))(task, task.init(key))
    assert np.isfinite(float(metrics['loss'])) and 0.0 <= float(metrics['accuracy']) <= 1.0


def test_evaluate_masks_the_last_chunk():
    task = image_task('mnist1d', model='mlp', width=8, depth=2)
    params = task.init(jax.random.key(0))
    metrics = jax.jit(lambda p: task.evaluate(p, 'test', max_examples=700))(params)
    x, y = task.data.split('test')
    logits = task.apply(params, task.data.normalize(x[:700]))
    np.testing.assert_allclose(
        metrics['loss'], optax.softmax_cross_entropy_with_integer_labels(logits, y[:700]).mean(), rtol=1e-5
    )
    np.testing.assert_allclose(metrics['accuracy'], (logits.argmax(-1) == y[:700]).mean(), rtol=1e-6)


def test_conv_kernels_follow_input_rank_and_activations_are_listed():
    model = CNNClassifier(width=4, depth=2, num_classes=10, kernel_size=5, activation='tanh')
    params_1d = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 40, 1)))['params']
    params_2d = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8, 8, 1)))['params']
    assert params_1d['Conv_0']['kernel'].shape == (5, 1, 4)
    assert params_2d['Conv_1']['kernel'].shape == (5, 5, 4, 4)
    assert params_2d['Dense_0']['kernel'].shape == (4, 10) and 'Dense_1' not in params_2d
    assert layer_activations(model) == ('tanh', 'tanh', 'linear')
    assert layer_activations(MLPClassifier(hidden=(48,), num_classes=10)) == ('relu', 'linear')
    task = image_task(load_dataset('digits'), model='mlp', width=48, depth=2)
    assert task.name == 'digits/mlp-w48-d2-relu'
    assert jax.eval_shape(task.init, jax.random.key(0))['params']['Dense_1']['kernel'].shape == (48, 10)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match='gelu'):
        MLPClassifier(hidden=(4,), num_classes=3, activation='elu').init(jax.random.key(0), jnp.zeros((1, 2)))
    with pytest.raises(ValueError, match='transformer'):
        image_task('digits', model='vgg')
    with pytest.raises(ValueError, match='divisible by its 2 heads'):
        image_task('digits', model='transformer', width=5)
    with pytest.raises(ValueError, match='width'):
        image_task('digits', width=0)


def test_task_family_samples_resnets_and_transformers():
    family = TaskFamily(datasets=('digits', 'mnist1d'), models=('resnet', 'transformer'), widths=(4,), depths=(1,))
    tasks = {task.name: task for task in (family.sample(jax.random.key(seed)) for seed in range(8))}
    assert {name.split('/')[1].split('-')[0] for name in tasks} == {'resnet', 'transformer'}
    for task in tasks.values():
        params = task.init(jax.random.key(0))
        assert np.isfinite(float(task.loss(params, task.sample_batch(jax.random.key(1)))))
        with pytest.warns(UnplacedParametersWarning, match='LayerNorm_0/scale'):
            spec = graph_spec(params, activations=task.activations)  # one activation per placed layer
        assert spec.widths[-1] == task.num_classes and len(spec.layers) == 2 * 1 + 2


def test_task_family_samples_deterministic_varied_tasks():
    family = TaskFamily(datasets=('digits', 'mnist1d'), models=('cnn', 'mlp'), widths=(8, 16), depths=(1, 2))
    names = [family.sample(jax.random.key(seed)).name for seed in range(12)]
    assert names == [family.sample(jax.random.key(seed)).name for seed in range(12)]
    assert len(set(names)) > 3
    assert {name.split('/')[0] for name in names} == {'digits', 'mnist1d'}


@pytest.mark.parametrize('name, shape, num_classes', [('mnist', (28, 28, 1), 10), ('cifar100', (32, 32, 3), 100)])
def test_tfds_source_with_mock_data(tmp_path, name, shape, num_classes):
    tfds = pytest.importorskip('tensorflow_datasets')
    with tfds.testing.mock_data(num_examples=20):
        data = load_dataset(name, data_dir=str(tmp_path))
    assert isinstance(data, Dataset)
    assert (data.train_x.shape, data.val_x.shape, data.test_x.shape) == ((18, *shape), (2, *shape), (20, *shape))
    assert data.train_x.dtype == jnp.uint8 and data.test_y.dtype == jnp.int32
    assert (data.input_shape, data.num_classes, data.mean.shape) == (shape, num_classes, (shape[-1],))
    assert int(data.train_y.max()) < num_classes
    reduced = principal_components(data, 24)  # fewer training examples (18) than values: all 24 components anyway
    covariance = np.cov(np.asarray(reduced.train_x, np.float64).T)
    variances = np.diag(covariance)
    assert reduced.input_shape == (24,) and np.all(np.diff(variances) <= 1e-6 * variances[0])  # leading first
    np.testing.assert_allclose(covariance - np.diag(variances), 0.0, atol=1e-5 * variances[0])  # uncorrelated
    np.testing.assert_allclose(variances[17:], 0.0, atol=1e-5 * variances[0])  # rank 17 once centred


def test_unprepared_tfds_dataset_names_offline_alternatives(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="'digits'") as error:
        load_dataset('fashion_mnist', data_dir=str(tmp_path), download=False)
    assert 'fashion_mnist' in str(error.value) and 'mnist1d' in str(error.value)
