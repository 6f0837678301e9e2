"""Model zoos: many small networks of one architecture, trained with varied seeds, initialisation scales,
learning rates, weight decays and lengths.

A zoo is the training set of a single-shot metanetwork (Kuipers et al., after the Small CNN Zoo of Unterthiner
et al. 2020, which varies the same hyperparameters). Members share one architecture so that thousands of
them train at once under ``jax.vmap``; many are deliberately under-trained, which leaves the metanetwork
something to improve. Zoos are split into train/validation/test *by member*. ``l2o_jax.io`` saves and loads
them (``save_zoo``, ``load_zoo``, ``cached_zoo``); ``l2o-jax zoo`` builds one from the command line.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from l2o_jax.amortized.objective import evaluate_splits
from l2o_jax.amortized.objective import run_optimizer
from l2o_jax.graphs import GraphSpec
from l2o_jax.graphs import graph_spec
from l2o_jax.tasks import Dataset
from l2o_jax.tasks import Task
from l2o_jax.tasks import image_task
from l2o_jax.tasks import load_dataset

ZOO_SPLITS = ('train', 'validation', 'test')
GRAY_SUFFIX = '_gray'
_CHUNK_STEPS = 50
# One optimizer object for every zoo: the compiled training loop is cached per optimizer object.
_ZOO_OPTIMIZER = optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3, weight_decay=0.0)


@dataclasses.dataclass(frozen=True)
class ZooConfig:
    """How a zoo is built; stored with it.

    Attributes:
      dataset: a name for ``l2o_jax.tasks.load_dataset`` (``'digits'``, ``'mnist1d'``, ``'cifar10'`` ...);
        a ``'_gray'`` suffix converts colour images to one grey channel (``'cifar10_gray'``, the CNN Zoo's
        data).
      model, width, depth, kernel_size, activation: the architecture, as in ``l2o_jax.tasks.image_task``.
      members: number of networks.
      min_steps, max_steps: each member trains for a uniformly drawn number of AdamW steps in this range.
      lr_range: each member's AdamW learning rate is drawn log-uniformly from ``(low, high)``.
      init_scale_range: each member's initial parameters are multiplied by a factor drawn log-uniformly from
        ``(low, high)``.
      weight_decay_range: each member's AdamW weight decay is drawn log-uniformly from ``(low, high)``
        (``(0, 0)``: none).
      batch_size: training batch size.
      split_fractions: fractions of members in the train/validation/test splits.
      seed: the only source of randomness (inits, hyperparameters, batches, split).
      data_dir: tfds data directory for real datasets.
    """

    dataset: str = 'digits'
    model: str = 'mlp'
    width: int = 16
    depth: int = 3
    kernel_size: int = 3
    activation: str = 'tanh'
    members: int = 64
    min_steps: int = 10
    max_steps: int = 300
    lr_range: tuple[float, float] = (1e-3, 3e-2)
    init_scale_range: tuple[float, float] = (1.0, 1.0)
    weight_decay_range: tuple[float, float] = (0.0, 0.0)
    batch_size: int = 64
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0
    data_dir: str | None = None

    def __post_init__(self):
        if self.members < 3:
            raise ValueError(f'ZooConfig.members must be at least 3 (one per split), got {self.members}.')
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(f'ZooConfig needs 1 <= min_steps <= max_steps, got {self.min_steps}, {self.max_steps}.')
        for name in ('lr_range', 'init_scale_range'):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f'ZooConfig.{name} must be (low, high) with 0 < low <= high, got {(low, high)}.')
        low, high = self.weight_decay_range
        if not (low == high == 0 or 0 < low <= high):
            raise ValueError(
                f'ZooConfig.weight_decay_range must be (0, 0) or (low, high) with 0 < low <= high, got {(low, high)}.'
            )
        if len(self.split_fractions) != 3 or min(self.split_fractions) <= 0:
            raise ValueError(
                'ZooConfig.split_fractions must be three positive fractions (train, validation, '
                f'test), got {self.split_fractions}.'
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> 'ZooConfig':
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f'ZooConfig has no fields {unknown}; the zoo was written by another version.')
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclasses.dataclass(frozen=True, eq=False)
class Zoo:
    """A stack of trained networks of one architecture with a metadata row per member.

    Attributes:
      config: how the zoo was built.
      params: the members' parameters, every leaf with a leading member axis.
      members: one dict per member: ``index``, ``split``, ``learning_rate``, ``weight_decay``, ``init_scale``,
        ``steps`` and the
        ``{train,validation,test}_{accuracy,loss}`` (loss: cross-entropy) of the trained network.

    Example:
      >>> zoo = build_zoo(dataset='digits', model='mlp', members=20, max_steps=50)
      >>> test = zoo.split('test')
      >>> len(test), test.task().name
      (3, 'digits/mlp-w16-d3-tanh')
    """

    config: ZooConfig
    params: Any
    members: tuple[dict, ...]

    def __len__(self) -> int:
        return len(self.members)

    def task(self, batch_size: int | None = None) -> Task:
        """The members' task (architecture and data); ``batch_size`` defaults to the zoo's."""
        return zoo_task(self.config, batch_size)

    @property
    def activations(self) -> tuple[str, ...]:
        return (self.config.activation,) * (self.config.depth - (self.config.model == 'mlp')) + ('linear',)

    @property
    def spec(self) -> GraphSpec:
        """The members' neural graph."""
        return graph_spec(self.member(0), activations=self.activations, strict=True)

    def member(self, i: int):
        """The parameters of member ``i`` (position in this zoo, not the original index)."""
        return jax.tree.map(lambda x: x[i], self.params)

    def split(self, name: str) -> 'Zoo':
        """The members of one split, ``'train'``, ``'validation'`` or ``'test'``."""
        if name not in ZOO_SPLITS:
            raise ValueError(f'unknown zoo split {name!r}; expected one of {ZOO_SPLITS}.')
        return self.select([i for i, m in enumerate(self.members) if m['split'] == name])

    def select(self, positions: Sequence[int]) -> 'Zoo':
        """The members at ``positions`` (in this zoo's order)."""
        positions = np.asarray(positions, dtype=np.int64)
        return Zoo(
            config=self.config,
            params=jax.tree.map(lambda x: x[positions], self.params),
            members=tuple(self.members[i] for i in positions),
        )


def load_zoo_dataset(name: str, *, data_dir: str | None = None, download: bool = False) -> Dataset:
    """``l2o_jax.tasks.load_dataset``, plus grey-scale variants of colour datasets (``'cifar10_gray'``).

    Raises:
      l2o_jax.tasks.DatasetUnavailableError: a tfds dataset that is not prepared and cannot be downloaded.

    Example:
      >>> load_zoo_dataset('digits').input_shape
      (8, 8, 1)
    """
    if not name.endswith(GRAY_SUFFIX):
        return load_dataset(name, data_dir=data_dir, download=download)
    colour = load_dataset(name[: -len(GRAY_SUFFIX)], data_dir=data_dir, download=download)
    if colour.input_shape[-1] != 3:
        raise ValueError(
            f'{name!r}: {colour.name!r} has {colour.input_shape[-1]} channels; only RGB data can be turned grey.'
        )
    gray = {f: _to_gray(getattr(colour, f)) for f in ('train_x', 'val_x', 'test_x')}
    flat = np.asarray(gray['train_x'], np.float64).reshape(-1)
    return dataclasses.replace(
        colour,
        **gray,
        mean=jnp.asarray([flat.mean()], jnp.float32),
        std=jnp.asarray([max(flat.std(), 1e-6)], jnp.float32),
        name=name,
        input_shape=colour.input_shape[:-1] + (1,),
    )


def _to_gray(images: jax.Array) -> jax.Array:
    """ITU-R 601 luma of RGB images, kept as uint8 like tfds images."""
    luma = np.asarray(images, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return jnp.asarray(np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None])


def zoo_task(config: ZooConfig, batch_size: int | None = None) -> Task:
    """The task a zoo's members solve."""
    data = load_zoo_dataset(config.dataset, data_dir=config.data_dir)
    return image_task(
        data,
        model=config.model,
        width=config.width,
        depth=config.depth,
        kernel_size=config.kernel_size,
        activation=config.activation,
        batch_size=batch_size or config.batch_size,
    )


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float], size: int) -> np.ndarray:
    if bounds[1] == 0:
        return np.zeros(size, np.float32)
    return np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]), size)).astype(np.float32)


def _member_hyperparameters(config: ZooConfig) -> dict[str, np.ndarray]:
    """Learning rates, weight decays, init scales, step counts and split names, drawn from the zoo's seed."""
    rng = np.random.default_rng(config.seed)
    learning_rates = _log_uniform(rng, config.lr_range, config.members)
    steps = rng.integers(config.min_steps, config.max_steps + 1, config.members)
    fractions = np.asarray(config.split_fractions, np.float64) / np.sum(config.split_fractions)
    n_val = max(1, int(round(fractions[1] * config.members)))
    n_test = max(1, int(round(fractions[2] * config.members)))
    n_train = config.members - n_val - n_test
    if n_train < 1:
        raise ValueError(f'ZooConfig: {config.members} members leave none for the train split.')
    splits = np.array(['train'] * n_train + ['validation'] * n_val + ['test'] * n_test)
    splits = splits[rng.permutation(config.members)]
    # Drawn after the split so that zoos written before these two draws existed keep their members.
    weight_decays = _log_uniform(rng, config.weight_decay_range, config.members)
    init_scales = _log_uniform(rng, config.init_scale_range, config.members)
    return {
        'learning_rate': learning_rates,
        'weight_decay': weight_decays,
        'init_scale': init_scales,
        'steps': steps,
        'split': splits,
    }


def _train_members(task: Task, params, hyper: dict, key, progress: bool):
    """AdamW with per-member learning rates and weight decays, each member stopping after its own steps."""
    tx = _ZOO_OPTIMIZER
    steps = hyper['steps']
    opt_state = jax.vmap(tx.init)(params)
    opt_state.hyperparams['learning_rate'] = jnp.asarray(hyper['learning_rate'])
    opt_state.hyperparams['weight_decay'] = jnp.asarray(hyper['weight_decay'])
    max_steps = int(np.max(steps))
    done = 0
    members = len(steps)
    with tqdm(total=max_steps, desc=f'zoo ({members} members)', unit='step', disable=not progress) as bar:
        while done < max_steps:
            chunk = min(_CHUNK_STEPS, max_steps - done)
            key, chunk_key = jax.random.split(key)
            params, opt_state = run_optimizer(
                task, params, tx, chunk_key, chunk, opt_state=opt_state, active_steps=jnp.asarray(steps) - done
            )
            jax.block_until_ready(params)
            done += chunk
            bar.update(chunk)
    return params


def build_zoo(config: ZooConfig | None = None, *, progress: bool = True, **fields) -> Zoo:
    """Trains a zoo of networks of one architecture, all members at once under ``jax.vmap``.

    Args:
      config: a ``ZooConfig``; keyword ``fields`` override it (or build one from the defaults).
      progress: show a tqdm bar over training steps.

    Returns:
      The trained ``Zoo`` with accuracies and losses of every member on the data's three splits.

    Example:
      >>> zoo = build_zoo(dataset='digits', model='cnn', activation='relu', width=8, depth=2, members=32)
      >>> [m['test_accuracy'] for m in zoo.members][:3]
    """
    config = dataclasses.replace(config or ZooConfig(), **fields)
    task = zoo_task(config)
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    hyper = _member_hyperparameters(config)
    params = jax.vmap(task.init)(jax.random.split(init_key, config.members))
    params = jax.tree.map(lambda x: x * hyper['init_scale'].reshape((-1,) + (1,) * (x.ndim - 1)), params)
    params = _train_members(task, params, hyper, train_key, progress)
    metrics = evaluate_splits(task, params, ZOO_SPLITS)
    members = tuple(
        {
            'index': i,
            'split': str(hyper['split'][i]),
            'learning_rate': float(hyper['learning_rate'][i]),
            'weight_decay': float(hyper['weight_decay'][i]),
            'init_scale': float(hyper['init_scale'][i]),
            'steps': int(hyper['steps'][i]),
            **{
                f'{s}_{name}': float(metrics[s][m][i])
                for s in ZOO_SPLITS
                for name, m in (('accuracy', 'accuracy'), ('loss', 'ce'))
            },
        }
        for i in range(config.members)
    )
    return Zoo(config=config, params=params, members=members)
