"""Optimizee tasks: a model, a dataset and a batch size, with pure ``init``/``loss``/``sample_batch``.

A :class:`Task` is a pytree whose only arrays are its dataset, so it can be passed to ``jax.jit``,
``jax.vmap`` (over stacked tasks of one architecture) and ``jax.lax.scan`` like any other argument.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from l2o_jax.graphs import ACTIVATIONS
from l2o_jax.tasks.datasets import Dataset
from l2o_jax.tasks.datasets import load_dataset
from l2o_jax.tasks.datasets import principal_components
from l2o_jax.tasks.models import CNNClassifier
from l2o_jax.tasks.models import MLPClassifier
from l2o_jax.tasks.models import ResNetClassifier
from l2o_jax.tasks.models import TransformerClassifier
from l2o_jax.tasks.models import layer_activations

MODELS = ('cnn', 'mlp', 'resnet', 'transformer')
TRANSFORMER_HEADS = 2
EVAL_CHUNK = 512


@struct.dataclass
class Task:
    """Classification of ``data`` by ``model``, trained on batches of ``batch_size``.

    Params are the Linen variables dict ``{'params': ...}``; batches are ``(x, y)`` with ``x`` normalised
    float32 and ``y`` int32.

    Example:
      >>> task = image_task('digits', model='cnn', width=16, depth=2)
      >>> params = task.init(jax.random.key(0))
      >>> loss = task.loss(params, task.sample_batch(jax.random.key(1)))
    """

    data: Dataset
    model: nn.Module = struct.field(pytree_node=False)
    batch_size: int = struct.field(pytree_node=False)
    name: str = struct.field(pytree_node=False)

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.data.input_shape

    @property
    def activations(self) -> tuple[str, ...]:
        """Activation per parameterised layer, see :func:`layer_activations`."""
        return layer_activations(self.model)

    @property
    def is_chain(self) -> bool:
        """Whether the model is a plain chain of Dense/Conv layers (an MLP or a CNN), whose neural graph its
        parameters alone describe; a ResNet's or a transformer's is read from its computation."""
        return isinstance(self.model, (MLPClassifier, CNNClassifier))

    def example_input(self) -> jax.Array:
        """A zero input batch of one example: what tracing the model's computation needs."""
        return jnp.zeros((1, *self.input_shape), jnp.float32)

    def init(self, key: jax.Array):
        """Returns freshly initialised variables ``{'params': ...}``."""
        return self.model.init(key, self.example_input())

    def apply(self, params, x: jax.Array) -> jax.Array:
        """Returns the logits of a normalised batch ``x``."""
        return self.model.apply(params, x)

    def loss(self, params, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
        """Mean softmax cross-entropy of a normalised batch ``(x, y)``."""
        x, y = batch
        return optax.softmax_cross_entropy_with_integer_labels(self.apply(params, x), y).mean()

    def sample_batch(self, key: jax.Array, split: str = 'train') -> tuple[jax.Array, jax.Array]:
        """Draws ``batch_size`` examples of ``split`` uniformly with replacement, normalised."""
        x, y = self.data.split(split)
        index = jax.random.randint(key, (self.batch_size,), 0, x.shape[0])
        return self.data.normalize(x[index]), y[index]

    def evaluate(self, params, split: str = 'test', max_examples: int = 2048) -> dict[str, jax.Array]:
        """Mean loss and accuracy over the first ``min(max_examples, N)`` examples of ``split``.

        Examples are processed in chunks of 512 with ``jax.lax.map``; the last chunk is masked.
        """
        x, y = self.data.split(split)
        num_used = min(max_examples, x.shape[0])
        chunk = min(EVAL_CHUNK, num_used)
        num_chunks = -(-num_used // chunk)
        positions = jnp.arange(num_chunks * chunk).reshape(num_chunks, chunk)

        def chunk_sums(chunk_positions):
            valid = chunk_positions < num_used
            index = jnp.minimum(chunk_positions, num_used - 1)
            logits = self.apply(params, self.data.normalize(x[index]))
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, y[index])
            correct = jnp.argmax(logits, axis=-1) == y[index]
            return jnp.sum(jnp.where(valid, losses, 0.0)), jnp.sum(valid & correct)

        loss_sums, correct_sums = jax.lax.map(chunk_sums, positions)
        return {'loss': loss_sums.sum() / num_used, 'accuracy': correct_sums.sum() / num_used}


def image_task(
    dataset: str | Dataset = 'digits',
    model: str = 'cnn',
    width: int = 32,
    depth: int = 3,
    kernel_size: int = 3,
    activation: str = 'relu',
    batch_size: int = 128,
    *,
    data_dir: str | None = None,
    download: bool = False,
    pca_dims: int | None = None,
) -> Task:
    """Builds a classification task.

    Args:
      dataset: a dataset name (see :func:`load_dataset`) or a loaded :class:`Dataset`.
      model: ``'cnn'`` (``depth`` convolutions of ``width`` channels, then one Dense classifier) or
        ``'mlp'`` (``depth`` Dense layers in all: ``depth - 1`` hidden layers of ``width`` units, then the
        classifier; Li & Malik's two-layer net with 48 hidden units is ``model='mlp', width=48, depth=2``),
        ``'resnet'`` (a conv stem, ``depth`` residual blocks with LayerNorm, a Dense classifier; see
        :class:`ResNetClassifier`) or ``'transformer'`` (``depth`` self-attention blocks of model width ``width``
        with 2 heads over the input's steps, or an image's rows, as tokens; see :class:`TransformerClassifier`).
      width, depth, kernel_size, activation: the architecture; ``kernel_size`` is used by the CNN and ResNet
        only, ``activation`` is the transformer MLP's.
      batch_size: examples per :meth:`Task.sample_batch`.
      data_dir, download: passed to :func:`load_dataset` when ``dataset`` is a name.
      pca_dims: read the inputs as their first ``pca_dims`` principal components, fitted on the training split
        (:func:`principal_components`; Li & Malik's MLP: ``model='mlp', width=48, depth=2, pca_dims=48``).

    Returns:
      A :class:`Task` named like ``'digits/cnn-w32-d3-k3-relu'``.

    Example:
      >>> task = image_task('mnist1d', model='mlp', width=64, depth=3)
      >>> task.name, task.activations
      ('mnist1d/mlp-w64-d3-relu', ('relu', 'relu', 'linear'))
    """
    if model not in MODELS:
        raise ValueError(f'Unknown model {model!r}; expected one of {MODELS}.')
    if activation not in ACTIVATIONS:
        raise ValueError(f'Unknown activation {activation!r}; available: {tuple(ACTIVATIONS)}.')
    for argument, value in (
        ('width', width),
        ('depth', depth),
        ('kernel_size', kernel_size),
        ('batch_size', batch_size),
    ):
        if int(value) != value or value < 1:
            raise ValueError(f'{argument} must be a positive integer, got {value!r}.')
    if isinstance(dataset, Dataset):
        data = dataset if pca_dims is None else principal_components(dataset, pca_dims)
    else:
        data = load_dataset(dataset, data_dir=data_dir, download=download, pca_dims=pca_dims)
    if model == 'transformer' and width % TRANSFORMER_HEADS:
        raise ValueError(f'the transformer needs a width divisible by its {TRANSFORMER_HEADS} heads, got {width}.')
    if model in ('cnn', 'resnet'):
        network = (CNNClassifier if model == 'cnn' else ResNetClassifier)(
            width=width, depth=depth, num_classes=data.num_classes, kernel_size=kernel_size, activation=activation
        )
        architecture = f'{model}-w{width}-d{depth}-k{kernel_size}-{activation}'
    elif model == 'transformer':
        network = TransformerClassifier(
            width=width, depth=depth, num_classes=data.num_classes, heads=TRANSFORMER_HEADS, activation=activation
        )
        architecture = f'transformer-w{width}-d{depth}-h{TRANSFORMER_HEADS}-{activation}'
    else:
        network = MLPClassifier(hidden=(width,) * (depth - 1), num_classes=data.num_classes, activation=activation)
        architecture = f'mlp-w{width}-d{depth}-{activation}'
    return Task(data=data, model=network, batch_size=batch_size, name=f'{data.name}/{architecture}')


@dataclasses.dataclass(frozen=True)
class TaskFamily:
    """A distribution over image tasks: each attribute is drawn uniformly from its tuple of choices.

    Datasets are loaded once (``load_dataset`` caches them), so sampling is cheap. ``sample`` needs a
    concrete key: architecture choices are Python values, not traced ones. ``pca_dims`` reads every dataset's
    inputs as their first principal components (see :func:`image_task`).

    Example:
      >>> family = TaskFamily(widths=(16, 32, 64), depths=(2, 3, 4))
      >>> task = family.sample(jax.random.key(0))
    """

    datasets: tuple[str, ...] = ('digits',)
    models: tuple[str, ...] = ('cnn',)
    widths: tuple[int, ...] = (32,)
    depths: tuple[int, ...] = (3,)
    kernel_sizes: tuple[int, ...] = (3,)
    activations: tuple[str, ...] = ('relu',)
    batch_size: int = 128
    data_dir: str | None = None
    pca_dims: int | None = None

    def __post_init__(self):
        for field in ('datasets', 'models', 'widths', 'depths', 'kernel_sizes', 'activations'):
            if not getattr(self, field):
                raise ValueError(f'TaskFamily.{field} needs at least one choice.')

    def sample(self, key: jax.Array) -> Task:
        """Returns a task with every attribute drawn uniformly, deterministically from ``key``."""
        rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
        pick = lambda choices: choices[int(rng.integers(len(choices)))]
        return image_task(
            pick(self.datasets),
            model=pick(self.models),
            width=pick(self.widths),
            depth=pick(self.depths),
            kernel_size=pick(self.kernel_sizes),
            activation=pick(self.activations),
            batch_size=self.batch_size,
            data_dir=self.data_dir,
            pca_dims=self.pca_dims,
        )
