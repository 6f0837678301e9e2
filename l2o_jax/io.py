"""Saving and loading meta-parameters: one config encoding, two containers.

Every file holds its learned optimizer's config in the encoding of ``l2o_jax.optimizers.config_to_dict``
(``{"type": "GraphL2O", "hidden": 32, ...}``), which rebuilds any registered family: GraphL2O, TransformerL2O,
RecurrentGraphL2O, LSTML2O, MLPL2O, LiMalikL2O, ``amortized.ScaleGMN`` and ``backward.LearnedBackward``. The
arrays go either to

- an orbax checkpoint directory (``save_meta_params`` / ``load_meta_params``): what runs and users write;
- a compact archive, ``<stem>.npz`` (arrays keyed by their pytree paths) beside ``<stem>.json`` (config and
  record) (``save_archive`` / ``load_archive``): what ships inside the package as ``l2o_jax.pretrained``.

Both are read against the shapes the config's ``init`` would make, so a file that does not fit its config is
a clear error. A meta-training run's ``config.json`` uses the same encoding (``l2o_jax.meta.load_checkpoint``).

Model zoos (``l2o_jax.amortized.Zoo``) go to the same kind of orbax checkpoint directory, arrays and a JSON item
(config and one row per member), with a ``members.csv`` table beside them (``save_zoo`` / ``load_zoo``);
``cached_zoo`` builds a zoo once and reloads it afterwards.

Example:
  >>> save_meta_params('/tmp/ng_gnn', meta_params, metadata={'outer_steps': 1000})
  >>> meta_params = load_meta_params('/tmp/ng_gnn')
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from l2o_jax.amortized import Zoo
from l2o_jax.amortized import ZooConfig
from l2o_jax.amortized import build_zoo
from l2o_jax.optimizers import MetaParams
from l2o_jax.optimizers import abstract_meta_params
from l2o_jax.optimizers import config_from_dict
from l2o_jax.optimizers import config_to_dict


def _check(meta_params, caller: str) -> None:
    if not isinstance(meta_params, MetaParams):
        raise TypeError(f"{caller} expects MetaParams, got {type(meta_params).__name__}.")


def save_meta_params(path: str | os.PathLike, meta_params: MetaParams, *, metadata: dict | None = None) -> str:
    """Writes meta-parameters and their config to the directory ``path`` (atomically, replacing it).

    Args:
      path: a directory; created, or replaced if it exists.
      meta_params: what to save (any registered family).
      metadata: extra JSON-serialisable facts to keep with it (how it was trained, evaluation numbers).

    Returns:
      The absolute path written.

    Example:
      >>> save_meta_params('/tmp/ng_gnn', meta_params, metadata={'outer_steps': 1000})
      >>> restored = load_meta_params('/tmp/ng_gnn')
    """
    _check(meta_params, "save_meta_params")
    path = os.path.abspath(os.fspath(path))
    info = {"config": config_to_dict(meta_params.config), "metadata": metadata or {}}
    json.dumps(info)  # fail before writing anything if metadata is not serialisable
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        checkpointer.save(
            path,
            ocp.args.Composite(arrays=ocp.args.StandardSave(meta_params.arrays), info=ocp.args.JsonSave(info)),
            force=True,
        )
    return path


def load_info(path: str | os.PathLike) -> dict:
    """The config (encoded) and metadata stored with saved meta-parameters, without loading the arrays.

    Example:
      >>> load_info('/tmp/ng_gnn')['metadata']
      {'outer_steps': 1000}
    """
    path = _existing_checkpoint(path)
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        try:
            return checkpointer.restore(path, ocp.args.Composite(info=ocp.args.JsonRestore()))["info"]
        except Exception as error:  # orbax raises many types for damaged directories
            raise ValueError(f"{path} is not a readable l2o_jax meta-parameter checkpoint: {error}") from error


def load_meta_params(path: str | os.PathLike) -> MetaParams:
    """Reads meta-parameters written by ``save_meta_params``; the config is rebuilt from the file.

    Raises:
      FileNotFoundError: nothing at ``path``.
      ValueError: ``path`` is not a complete l2o_jax checkpoint (wrong directory, damaged, other version).

    Example:
      >>> tx = l2o_jax.graph_l2o(load_meta_params('/tmp/ng_gnn'))
    """
    path = _existing_checkpoint(path)
    config = config_from_dict(load_info(path)["config"])
    template = abstract_meta_params(config).arrays
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        try:
            restored = checkpointer.restore(path, ocp.args.Composite(arrays=ocp.args.StandardRestore(template)))
        except Exception as error:
            raise ValueError(
                f"{path}: the saved arrays do not match {type(config).__name__}'s meta-parameters ({error})."
            ) from error
    return MetaParams(arrays=restored["arrays"], config=config)


def _existing_checkpoint(path) -> str:
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"no meta-parameter checkpoint at {path}.")
    if not os.path.isdir(path) or not os.path.exists(os.path.join(path, "info")):
        raise ValueError(
            f"{path} is not an l2o_jax meta-parameter checkpoint (no 'info' item inside); "
            "write one with l2o_jax.save_meta_params."
        )
    return path


def _key(path) -> str:
    return jax.tree_util.keystr(path)


def save_archive(stem: str | os.PathLike, meta_params: MetaParams, record: dict | None = None) -> Path:
    """Writes ``<stem>.npz`` (the arrays) and ``<stem>.json`` (``{"config": ..., **record}``), each atomically.

    Both files are written to temporary names first and renamed into place, so an archive is never half-written.

    Returns:
      The path of the JSON file.

    Example:
      >>> save_archive('l2o_jax/pretrained/ng-gnn-digits', meta_params, {'command': 'python experiments/...'})
    """
    _check(meta_params, "save_archive")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"config": config_to_dict(meta_params.config), **(record or {})}, indent=2, sort_keys=True)
    leaves = jax.tree_util.tree_flatten_with_path(meta_params.arrays)[0]
    arrays = {_key(path): np.asarray(leaf) for path, leaf in leaves}
    writers = {".npz": lambda f: np.savez_compressed(f, **arrays), ".json": lambda f: f.write(text.encode())}
    for suffix, write in writers.items():
        fd, tmp = tempfile.mkstemp(dir=stem.parent, suffix=suffix + ".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.chmod(tmp, 0o644)  # mkstemp makes files private; shipped archives must be readable by all
            os.replace(tmp, stem.parent / f"{stem.name}{suffix}")
        except BaseException:
            os.unlink(tmp)
            raise
    return stem.parent / f"{stem.name}.json"


def archive_record(stem: str | os.PathLike) -> dict:
    """The JSON half of an archive: its encoded config and whatever record was saved with it.

    Example:
      >>> archive_record('l2o_jax/pretrained/ng-gnn-digits')['command']
    """
    with open(f"{os.fspath(stem)}.json") as f:
        return json.load(f)


def load_archive(stem: str | os.PathLike) -> MetaParams:
    """Reads an archive written by ``save_archive``; its config is rebuilt from the JSON half.

    Raises:
      ValueError: arrays that do not match the config's meta-parameters (missing, unexpected or misshapen),
        naming the archive and the array.

    Example:
      >>> meta_params = load_archive('l2o_jax/pretrained/ng-gnn-digits')
    """
    name = Path(stem).name
    config = config_from_dict(archive_record(stem)["config"])
    template = abstract_meta_params(config).arrays
    paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    expected = [_key(path) for path, _ in paths_and_leaves]
    with np.load(f"{os.fspath(stem)}.npz") as stored:
        if sorted(expected) != sorted(stored.files):
            raise ValueError(
                f"archive {name!r} does not match {type(config).__name__}'s meta-parameters: missing "
                f"{sorted(set(expected) - set(stored.files))}, unexpected {sorted(set(stored.files) - set(expected))}."
            )
        leaves = []
        for (_, like), key in zip(paths_and_leaves, expected):
            array = stored[key]
            if array.shape != tuple(like.shape):
                raise ValueError(f"archive {name!r}: {key} has shape {array.shape}, expected {like.shape}.")
            leaves.append(jax.numpy.asarray(array, dtype=like.dtype))
    return MetaParams(arrays=jax.tree_util.tree_unflatten(treedef, leaves), config=config)


def save_zoo(path: str | os.PathLike, zoo: Zoo) -> str:
    """Writes a model zoo to the directory ``path`` (replacing it): an orbax checkpoint of the stacked parameters
    and of ``{"config", "members"}``, and a ``members.csv`` table of the members' hyperparameters and accuracies.

    Returns:
      The absolute path written.

    Example:
      >>> save_zoo('/tmp/zoo_digits', zoo)
      >>> zoo = load_zoo('/tmp/zoo_digits')
    """
    if not isinstance(zoo, Zoo):
        raise TypeError(f"save_zoo expects an l2o_jax.amortized.Zoo, got {type(zoo).__name__}.")
    path = os.path.abspath(os.fspath(path))
    info = {"config": zoo.config.to_dict(), "members": list(zoo.members)}
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        checkpointer.save(
            path, ocp.args.Composite(params=ocp.args.StandardSave(zoo.params), zoo=ocp.args.JsonSave(info)), force=True
        )
    with open(os.path.join(path, "members.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(zoo.members[0]))
        writer.writeheader()
        writer.writerows(zoo.members)
    return path


def load_zoo(path: str | os.PathLike) -> Zoo:
    """Reads a model zoo written by ``save_zoo``.

    Raises:
      FileNotFoundError: ``path`` holds no zoo.
      ValueError: the zoo was written with fields this version does not know.

    Example:
      >>> zoo = load_zoo('/tmp/zoo_digits')
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(os.path.join(path, "zoo")):
        raise FileNotFoundError(
            f"no model zoo at {path} (no 'zoo' item inside); build one with l2o_jax.io.cached_zoo or `l2o-jax zoo`."
        )
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        restored = checkpointer.restore(
            path, ocp.args.Composite(params=ocp.args.StandardRestore(), zoo=ocp.args.JsonRestore())
        )
    info = restored["zoo"]
    params = jax.tree.map(jax.numpy.asarray, restored["params"])
    return Zoo(config=ZooConfig.from_dict(info["config"]), params=params, members=tuple(info["members"]))


def cached_zoo(path: str | os.PathLike, config: ZooConfig, *, progress: bool = True) -> tuple[Zoo, bool]:
    """The zoo of ``config`` at ``path``: loaded when one built from the same config is there, else built and saved.

    Returns:
      ``(zoo, reused)``: ``reused`` is False when the zoo was built by this call.

    Example:
      >>> zoo, reused = cached_zoo('runs/zoos/digits-cnn-tanh', ZooConfig(model='cnn', members=2000))
    """
    try:
        zoo = load_zoo(path)
    except (FileNotFoundError, ValueError):
        zoo = None
    if zoo is not None and zoo.config == config:
        return zoo, True
    zoo = build_zoo(config, progress=progress)
    save_zoo(path, zoo)
    return zoo, False


#: The suffix of the file ``cached_json`` records a stage's compute time in.
SECONDS_SUFFIX = ".seconds"


def cached_json(path: str | os.PathLike, compute):
    """``compute()``'s JSON-ready result, stored at ``path`` the first time (never half-written) and read back after:
    the stages of a long study resume where a killed run stopped. The seconds ``compute`` took are kept beside it
    (``<path>.seconds``), so ``stage_seconds`` can add up what a study cost over all the runs that resumed it.

    Example:
      >>> tuned = cached_json('runs/study/tuning/adam-1000.json', lambda: dataclasses.asdict(tune()))
    """
    path = os.fspath(path)
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    started = time.perf_counter()
    value = compute()
    seconds = time.perf_counter() - started
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    for target, text in ((path, json.dumps(value)), (path + SECONDS_SUFFIX, f"{seconds:.1f}")):
        with open(target + ".tmp", "w") as f:
            f.write(text)
        os.replace(target + ".tmp", target)
    return value


def stage_seconds(directory: str | os.PathLike, prefixes: tuple[str, ...] = ("",)) -> float:
    """The seconds every ``cached_json`` stage under ``directory`` took to compute, added up: a study's cost even
    when its last run only read its stages back (stages cached before their times were recorded count 0). With
    ``prefixes``, only stages whose file name starts with one of them count.

    Example:
      >>> stage_seconds('runs/horizon_smoke')  # e.g. 5120.3
      >>> stage_seconds('runs/horizon_smoke/tuning', prefixes=('adam-',))  # e.g. 310.6
    """
    total = 0.0
    for root, _, files in os.walk(os.fspath(directory)):
        for name in files:
            if name.endswith(SECONDS_SUFFIX) and name.startswith(prefixes):
                with open(os.path.join(root, name)) as f:
                    total += float(f.read())
    return round(total, 1)


def use_compilation_cache(directory: str | os.PathLike) -> str:
    """Keeps compiled programs in ``directory`` (JAX's persistent compilation cache), so a resumed study does not
    compile them again, unless a cache directory is set already (``JAX_COMPILATION_CACHE_DIR`` wins); returns the
    directory in use. For a study's entry point: it sets a process-wide option.

    Example:
      >>> use_compilation_cache('runs/horizon_smoke/jax_cache')
      'runs/horizon_smoke/jax_cache'
    """
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", os.fspath(directory))
    return jax.config.jax_compilation_cache_dir


__all__ = [
    "archive_record",
    "cached_json",
    "cached_zoo",
    "config_from_dict",
    "config_to_dict",
    "load_archive",
    "load_info",
    "load_meta_params",
    "load_zoo",
    "save_archive",
    "save_meta_params",
    "save_zoo",
    "stage_seconds",
    "use_compilation_cache",
]
