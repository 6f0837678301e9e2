"""Meta-trained learned optimizers that ship inside the package, so nobody has to meta-train before trying one.

Each entry is two files in this directory: ``<name>.npz`` (the meta-parameter arrays, keyed by their pytree
paths) and ``<name>.json`` (the learned optimizer's config and how the entry was made: the exact command, the
data, the outer steps, the checkpoint chosen and its evaluation numbers). ``docs/pretrained.md`` lists them;
``experiments/export_pretrained.py`` writes them from an experiment's run directory.

Example:
  >>> import optax, l2o_jax
  >>> l2o_jax.pretrained.available()
  ['lstm-digits', 'ng-gnn-digits', ...]
  >>> tx = optax.chain(optax.clip_by_global_norm(1.0), l2o_jax.graph_l2o('ng-gnn-digits'))
  >>> meta_params = l2o_jax.pretrained.load('ng-gnn-digits')   # the same, as MetaParams
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import jax
import numpy as np

from l2o_jax.optimizers import MetaParams

#: Where the shipped entries live.
DIRECTORY = Path(__file__).resolve().parent


def available(directory: str | os.PathLike | None = None) -> list[str]:
    """The names of the shipped pretrained learned optimizers, sorted.

    Example:
      >>> 'ng-gnn-digits' in available()
      True
    """
    root = Path(directory) if directory is not None else DIRECTORY
    return sorted(p.stem for p in root.glob("*.json") if (root / f"{p.stem}.npz").exists())


def _entry_path(name: str, directory, suffix: str) -> Path:
    if not isinstance(name, str):
        raise TypeError(f"a pretrained learned optimizer is named by a string, got {type(name).__name__}.")
    root = Path(directory) if directory is not None else DIRECTORY
    names = available(root)
    if name not in names:
        listed = ", ".join(names) if names else "none"
        raise ValueError(f"no pretrained learned optimizer named {name!r}; available: {listed}.")
    return root / f"{name}{suffix}"


def info(name: str, directory: str | os.PathLike | None = None) -> dict:
    """How the entry ``name`` was made: ``{'config', 'command', 'data', 'outer_steps', 'evaluation', ...}``.

    Example:
      >>> print(info('ng-gnn-digits')['command'])
    """
    with open(_entry_path(name, directory, ".json")) as f:
        return json.load(f)


def _key(path) -> str:
    return jax.tree_util.keystr(path)


def load(name: str, directory: str | os.PathLike | None = None) -> MetaParams:
    """The meta-parameters of the pretrained entry ``name``; its config is rebuilt from the entry.

    Raises:
      ValueError: an unknown name (the message lists the available ones), or files that do not match the
        entry's config (written by another version).

    Example:
      >>> tx = l2o_jax.graph_l2o(load('ng-gnn-digits'))
    """
    from l2o_jax.checkpoints import config_from_dict  # checkpoints imports the optimizers, which import us lazily

    entry = info(name, directory)
    config = config_from_dict(entry["config"])
    template = jax.eval_shape(lambda: config.init(jax.random.key(0)).arrays)  # shapes only: nothing is computed
    paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    with np.load(_entry_path(name, directory, ".npz")) as stored:
        expected = [_key(path) for path, _ in paths_and_leaves]
        if sorted(expected) != sorted(stored.files):
            raise ValueError(
                f"pretrained entry {name!r} does not match {type(config).__name__}'s meta-parameters: "
                f"missing {sorted(set(expected) - set(stored.files))}, unexpected "
                f"{sorted(set(stored.files) - set(expected))}."
            )
        leaves = []
        for (path, like), key in zip(paths_and_leaves, expected):
            array = stored[key]
            if array.shape != tuple(like.shape):
                raise ValueError(f"pretrained entry {name!r}: {key} has shape {array.shape}, expected {like.shape}.")
            leaves.append(jax.numpy.asarray(array, dtype=like.dtype))
    return MetaParams(arrays=jax.tree_util.tree_unflatten(treedef, leaves), config=config)


def save(name: str, meta_params: MetaParams, record: dict, directory: str | os.PathLike | None = None) -> Path:
    """Writes ``meta_params`` as the entry ``name`` with ``record`` (command, data, evaluation, ...).

    Both files are written to temporary names first and renamed into place, so an entry is never half-written.

    Example:
      >>> save('ng-gnn-digits', meta_params, {'command': 'python experiments/replicate.py ...'})
    """
    from l2o_jax.checkpoints import config_to_dict

    if not isinstance(meta_params, MetaParams):
        raise TypeError(f"pretrained.save expects MetaParams, got {type(meta_params).__name__}.")
    if not name or any(c in name for c in "/\\. "):
        raise ValueError(f"a pretrained name needs letters, digits and dashes only, got {name!r}.")
    root = Path(directory) if directory is not None else DIRECTORY
    root.mkdir(parents=True, exist_ok=True)
    entry = {"name": name, "config": config_to_dict(meta_params.config), **record}
    text = json.dumps(entry, indent=2, sort_keys=True)  # fails before anything is written if not serialisable
    leaves = jax.tree_util.tree_flatten_with_path(meta_params.arrays)[0]
    arrays = {_key(path): np.asarray(leaf) for path, leaf in leaves}
    writers = {".npz": lambda f: np.savez_compressed(f, **arrays), ".json": lambda f: f.write(text.encode())}
    for suffix, write in writers.items():
        fd, tmp = tempfile.mkstemp(dir=root, suffix=suffix + ".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.chmod(tmp, 0o644)  # mkstemp makes files private; shipped entries must be readable by all
            os.replace(tmp, root / f"{name}{suffix}")
        except BaseException:
            os.unlink(tmp)
            raise
    return root / f"{name}.json"


def resolve(meta_params_or_name):
    """``meta_params`` unchanged, or the pretrained entry if given a name (what the factories accept).

    Example:
      >>> resolve('ng-gnn-digits').config
      GraphL2O(...)
    """
    return load(meta_params_or_name) if isinstance(meta_params_or_name, str) else meta_params_or_name


__all__ = ["DIRECTORY", "available", "info", "load", "resolve", "save"]
