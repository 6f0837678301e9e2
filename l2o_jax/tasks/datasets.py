"""Image classification datasets as device-resident pytrees.

Two datasets ship inside installed packages and need no network: scikit-learn's 8x8 ``'digits'`` and
the procedural ``'mnist1d'``. The real ones (MNIST, FashionMNIST, CIFAR10, CIFAR100) come through
``tfds.data_source`` (array_record, no TensorFlow) and must be prepared once with a network:
:func:`prepare_datasets` (``l2o-jax data prepare fashion_mnist cifar10``).
"""

from __future__ import annotations

import functools
import random
import socket
import urllib.parse
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

EMBEDDED_DATASETS = ('digits', 'mnist1d')
TFDS_DATASETS = ('mnist', 'fashion_mnist', 'cifar10', 'cifar100')
SPLITS = ('train', 'validation', 'test')


class DatasetUnavailableError(RuntimeError):
    """A tfds dataset is neither prepared in ``data_dir`` nor downloadable."""


def _offline_hint() -> str:
    return f"offline, use an embedded dataset: {' or '.join(repr(n) for n in EMBEDDED_DATASETS)}"


@struct.dataclass
class Dataset:
    """Train/validation/test arrays of one dataset, with train-split normalisation statistics.

    ``x`` arrays are stored compactly (uint8 for tfds images, float32 for embedded datasets) with shape
    ``(N, H, W, C)`` for images or ``(N, L, C)`` for 1-D signals; ``y`` arrays are int32 of shape ``(N,)``.
    ``mean`` and ``std`` have shape ``(C,)``. Being a pytree, a Dataset passes through ``jax.jit`` as traced
    arrays; ``name``, ``num_classes`` and ``input_shape`` are static.

    Example:
      >>> data = load_dataset('digits')
      >>> x, y = data.split('validation')
      >>> data.normalize(x).shape
      (300, 8, 8, 1)
    """

    train_x: jax.Array
    train_y: jax.Array
    val_x: jax.Array
    val_y: jax.Array
    test_x: jax.Array
    test_y: jax.Array
    mean: jax.Array
    std: jax.Array
    name: str = struct.field(pytree_node=False)
    num_classes: int = struct.field(pytree_node=False)
    input_shape: tuple[int, ...] = struct.field(pytree_node=False)

    def normalize(self, x: jax.Array) -> jax.Array:
        """Returns ``(x - mean) / std`` as float32, per channel (the last axis)."""
        return (jnp.asarray(x, jnp.float32) - self.mean) / self.std

    def split(self, name: str) -> tuple[jax.Array, jax.Array]:
        """Returns the raw (un-normalised) ``(x, y)`` of ``'train'``, ``'validation'`` or ``'test'``."""
        if name == 'train':
            return self.train_x, self.train_y
        if name == 'validation':
            return self.val_x, self.val_y
        if name == 'test':
            return self.test_x, self.test_y
        raise ValueError(f'Unknown split {name!r}; expected one of {SPLITS}.')


def load_dataset(
    name: str, *, data_dir: str | None = None, download: bool = False, pca_dims: int | None = None
) -> Dataset:
    """Loads a dataset by name onto the default device; results are cached per arguments.

    Args:
      name: one of ``EMBEDDED_DATASETS`` (offline) or ``TFDS_DATASETS``.
      data_dir: tfds data directory (tfds's default when ``None``); ignored for embedded datasets.
      download: let tfds download and prepare a missing dataset (needs a network).
      pca_dims: read the inputs as their first ``pca_dims`` principal components (:func:`principal_components`).

    Returns:
      A :class:`Dataset`. For tfds datasets, validation is the last 10% of tfds's train split.

    Raises:
      ValueError: for an unknown name.
      DatasetUnavailableError: when a tfds dataset is not prepared and cannot be downloaded.

    Example:
      >>> data = load_dataset('mnist1d')
      >>> data.input_shape, data.num_classes
      ((40, 1), 10)
    """
    if name not in EMBEDDED_DATASETS + TFDS_DATASETS:
        raise ValueError(
            f'Unknown dataset {name!r}; available: {EMBEDDED_DATASETS + TFDS_DATASETS} (offline: {EMBEDDED_DATASETS}).'
        )
    if name in EMBEDDED_DATASETS:
        data_dir, download = None, False
    return _load_cached(name, data_dir, download, pca_dims)


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, data_dir: str | None, download: bool, pca_dims: int | None = None) -> Dataset:
    if pca_dims is not None:
        return principal_components(_load_cached(name, data_dir, download), pca_dims)
    if name == 'digits':
        splits, num_classes = _digits_splits(), 10
    elif name == 'mnist1d':
        splits, num_classes = _mnist1d_splits(), 10
    else:
        splits, num_classes = _tfds_splits(name, data_dir, download)
    return _make_dataset(name, num_classes, splits)


def principal_components(data: Dataset, dims: int = 48) -> Dataset:
    """``data`` with each input replaced by its coordinates on the first ``dims`` principal components.

    The centre and the components are those of the training split only; validation and test inputs are projected
    with them, and the normalisation statistics are the projected training split's (per component). Inputs with at
    most ``dims`` values keep all their components (a rotation). Li & Malik's 48-48-10 MLP reads MNIST this way.

    Args:
      data: a loaded :class:`Dataset`.
      dims: how many components to keep.

    Returns:
      A :class:`Dataset` with inputs of shape ``(min(dims, values),)``, named ``'<name>-pca<that number>'``.

    Example:
      >>> principal_components(load_dataset('digits'), 48).input_shape
      (48,)
    """
    if int(dims) != dims or dims < 1:
        raise ValueError(f'principal_components needs a positive integer number of dims, got {dims!r}.')
    flat = lambda x: np.asarray(x, np.float64).reshape(len(x), -1)
    train = flat(data.train_x)
    dims = min(dims, train.shape[1])
    centre = train.mean(0)
    if len(train) < train.shape[1]:
        # Fewer examples than values (a dry run's few mock images): the full SVD of the data gives every component,
        # the zero-variance ones too, in O(examples x values²); eigh of CIFAR's 3072² covariance takes ~30 s.
        directions = np.linalg.svd(train - centre, full_matrices=True)[2][:dims].T
    else:
        _, vectors = np.linalg.eigh(np.cov(train, rowvar=False))
        directions = vectors[:, ::-1][:, :dims]  # eigenvalues ascend: the leading components are the last
    directions = directions * np.sign(directions[np.abs(directions).argmax(0), np.arange(dims)])  # a fixed sign
    project = lambda x: ((flat(x) - centre) @ directions).astype(np.float32)
    splits = [(project(x), np.asarray(y)) for x, y in (data.split(s) for s in SPLITS)]
    return _make_dataset(f'{data.name}-pca{dims}', data.num_classes, splits)


def _make_dataset(name: str, num_classes: int, splits) -> Dataset:
    """Builds a Dataset from numpy ``((train_x, train_y), (val_x, val_y), (test_x, test_y))``."""
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = splits
    mean, std = _channel_stats(train_x)
    as_y = lambda y: jnp.asarray(y, jnp.int32)
    return Dataset(
        train_x=jnp.asarray(train_x),
        train_y=as_y(train_y),
        val_x=jnp.asarray(val_x),
        val_y=as_y(val_y),
        test_x=jnp.asarray(test_x),
        test_y=as_y(test_y),
        mean=jnp.asarray(mean),
        std=jnp.asarray(std),
        name=name,
        num_classes=num_classes,
        input_shape=tuple(train_x.shape[1:]),
    )


def _channel_stats(x: np.ndarray, rows_per_chunk: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over all but the last axis, as float32."""
    # Chunked float64 sums: a float64 copy of CIFAR's train split alone would take 1.2 GB.
    flat = x.reshape(-1, x.shape[-1])
    total = np.zeros(flat.shape[1])
    total_sq = np.zeros(flat.shape[1])
    for start in range(0, flat.shape[0], rows_per_chunk):
        chunk = flat[start : start + rows_per_chunk].astype(np.float64)
        total += chunk.sum(axis=0)
        total_sq += np.square(chunk).sum(axis=0)
    mean = total / flat.shape[0]
    std = np.sqrt(np.maximum(total_sq / flat.shape[0] - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def _digits_splits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.images.astype(np.float32)[..., None]
    y = digits.target
    order = np.random.default_rng(0).permutation(len(y))
    train, val, test = order[:1197], order[1197:1497], order[1497:]
    return (x[train], y[train]), (x[val], y[val]), (x[test], y[test])


def _mnist1d_splits():
    from mnist1d.data import get_dataset_args
    from mnist1d.data import make_dataset

    # make_dataset reseeds Python's and numpy's global generators; leave the caller's untouched.
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        raw = make_dataset(get_dataset_args())
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    x = raw['x'].astype(np.float32)[..., None]
    x_test = raw['x_test'].astype(np.float32)[..., None]
    return (x[:-500], raw['y'][:-500]), (x[-500:], raw['y'][-500:]), (x_test, raw['y_test'])


def _tfds_splits(name: str, data_dir: str | None, download: bool):
    # Imported here: tfds is slow to import and only the real datasets need it.
    import tensorflow_datasets as tfds

    try:
        train_source = tfds.data_source(name, split='train', data_dir=data_dir, download=download)
        test_source = tfds.data_source(name, split='test', data_dir=data_dir, download=download)
    except Exception as error:
        raise DatasetUnavailableError(
            f'Dataset {name!r} is not prepared in data_dir={data_dir or "<tfds default>"!s} and could not '
            f'be downloaded ({type(error).__name__}). Prepare it once with a network '
            f'(`l2o-jax data prepare {name}{f" --data-dir {data_dir}" if data_dir else ""}`), or {_offline_hint()}.'
        ) from error
    num_classes = train_source.dataset_info.features['label'].num_classes
    train_x, train_y = _read_source(train_source)
    num_val = len(train_y) // 10
    num_train = len(train_y) - num_val
    validation = (train_x[num_train:], train_y[num_train:])
    train = (train_x[:num_train], train_y[:num_train])
    return (train, validation, _read_source(test_source)), num_classes


def prepare_datasets(
    names: Sequence[str], *, data_dir: str | None = None, progress: bool = True, timeout: float = 10.0
) -> list[str]:
    """Downloads and prepares tfds datasets as array_record in ``data_dir``, so :func:`load_dataset` reads them
    offline afterwards (with ``tfds.data_source``). Prepared datasets are skipped; embedded ones need nothing.

    Args:
      names: dataset names from ``TFDS_DATASETS`` (or ``EMBEDDED_DATASETS``, a no-op).
      data_dir: tfds data directory (tfds's default, ``~/tensorflow_datasets``, when ``None``).
      progress: show a progress bar over the datasets.
      timeout: seconds to wait for each download host to answer before calling the network unreachable.

    Returns:
      The names of the datasets now prepared (every tfds name in ``names``).

    Raises:
      ValueError: for an unknown name (before anything is downloaded).
      DatasetUnavailableError: when a dataset cannot be downloaded or built; the one-line message names the
        dataset and the offline alternatives.

    Example:
      >>> prepare_datasets(['fashion_mnist', 'cifar10'], data_dir='~/tensorflow_datasets')
      ['fashion_mnist', 'cifar10']
    """
    unknown = [n for n in names if n not in EMBEDDED_DATASETS + TFDS_DATASETS]
    if unknown:
        raise ValueError(
            f'Unknown dataset {unknown[0]!r}; tfds datasets: {TFDS_DATASETS}, embedded: {EMBEDDED_DATASETS}.'
        )
    import tensorflow_datasets as tfds
    from tqdm.auto import tqdm

    prepared = []
    bar = tqdm([n for n in dict.fromkeys(names) if n in TFDS_DATASETS], desc='datasets', disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
        if not builder.is_prepared():
            try:
                _check_reachable(name, builder.url_infos or {}, timeout)
                # tfds's GCS mirror holds tfrecord files; build array_record from the original sources instead.
                builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
            except ModuleNotFoundError as error:
                raise DatasetUnavailableError(
                    f'Cannot prepare {name!r}: tfds builds it with {error.name!r}, which is not installed '
                    f'(pip install "l2o-jax[data]", or tensorflow-cpu); reading it later needs no TensorFlow.'
                ) from error
            except (tfds.download.DownloadError, OSError) as error:
                raise DatasetUnavailableError(
                    f'Cannot download {name!r} into {builder.data_dir} ({type(error).__name__}: {error}); '
                    f'retry with a network, or {_offline_hint()}.'
                ) from error
        prepared.append(name)
    return prepared


def _check_reachable(name: str, urls, timeout: float) -> None:
    """Fails fast when a download host does not answer: tfds's own requests have no timeout and hang offline."""
    for url in sorted(urls):
        parsed = urllib.parse.urlsplit(url)
        port = parsed.port or (443 if parsed.scheme == 'https' else 80)
        try:
            socket.create_connection((parsed.hostname, port), timeout=timeout).close()
        except OSError as error:
            raise DatasetUnavailableError(
                f'Cannot download {name!r}: {parsed.hostname} is unreachable ({type(error).__name__}: {error}); '
                f'retry with a network, or {_offline_hint()}.'
            ) from None


def _read_source(source) -> tuple[np.ndarray, np.ndarray]:
    """Reads every example of a tfds data source into ``(uint8 images, int32 labels)``."""
    examples = [source[i] for i in range(len(source))]
    images = np.stack([np.asarray(example['image'], np.uint8) for example in examples])
    labels = np.asarray([example['label'] for example in examples], np.int32)
    return images, labels
