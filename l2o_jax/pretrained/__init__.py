"""Meta-trained learned optimizers that ship inside the package, so nobody has to meta-train before trying one.

Each entry is an ``l2o_jax.io`` archive in this directory: ``<name>.npz`` (the meta-parameter arrays, keyed by
their pytree paths) and ``<name>.json`` (the learned optimizer's config, in the one encoding every saved file
uses, and how the entry was made: the exact command, the data, the outer steps, the checkpoint chosen and its
evaluation numbers). ``docs/pretrained.md`` lists them;
``experiments/export_pretrained.py`` writes them from an experiment's run directory.

Example:
  >>> import optax, l2o_jax
  >>> l2o_jax.pretrained.available()
  ['lstm-digits', 'ng-gnn-digits', ...]
  >>> tx = optax.chain(optax.clip_by_global_norm(1.0), l2o_jax.graph_l2o('ng-gnn-digits', total_steps=5000))
  >>> meta_params = l2o_jax.pretrained.load('ng-gnn-digits')   # the same, as MetaParams
"""

from __future__ import annotations

import os
from pathlib import Path

from l2o_jax import io
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


def _entry(name: str, directory) -> Path:
    if not isinstance(name, str):
        raise TypeError(f"a pretrained learned optimizer is named by a string, got {type(name).__name__}.")
    root = Path(directory) if directory is not None else DIRECTORY
    names = available(root)
    if name not in names:
        listed = ", ".join(names) if names else "none"
        raise ValueError(f"no pretrained learned optimizer named {name!r}; available: {listed}.")
    return root / name


def info(name: str, directory: str | os.PathLike | None = None) -> dict:
    """How the entry ``name`` was made: ``{'config', 'command', 'data', 'outer_steps', 'evaluation', ...}``.

    Example:
      >>> print(info('ng-gnn-digits')['command'])
    """
    return io.archive_record(_entry(name, directory))


def load(name: str, directory: str | os.PathLike | None = None) -> MetaParams:
    """The meta-parameters of the pretrained entry ``name``; its config is rebuilt from the entry.

    Raises:
      ValueError: an unknown name (the message lists the available ones), or files that do not match the
        entry's config (written by another version).

    Example:
      >>> tx = l2o_jax.graph_l2o(load('ng-gnn-digits'), total_steps=5000)
    """
    return io.load_archive(_entry(name, directory))


def save(name: str, meta_params: MetaParams, record: dict, directory: str | os.PathLike | None = None) -> Path:
    """Writes ``meta_params`` as the entry ``name`` with ``record`` (command, data, evaluation, ...).

    Example:
      >>> save('ng-gnn-digits', meta_params, {'command': 'python experiments/replicate.py ...'})
    """
    if not name or any(c in name for c in "/\\. "):
        raise ValueError(f"a pretrained name needs letters, digits and dashes only, got {name!r}.")
    root = Path(directory) if directory is not None else DIRECTORY
    return io.save_archive(root / name, meta_params, {"name": name, **record})


def resolve(meta_params_or_name):
    """``meta_params`` unchanged, or the pretrained entry if given a name (what the top-level factories accept).

    Example:
      >>> resolve('ng-gnn-digits').config
      GraphL2O(...)
    """
    return load(meta_params_or_name) if isinstance(meta_params_or_name, str) else meta_params_or_name


__all__ = ["DIRECTORY", "available", "info", "load", "resolve", "save"]
