"""Saving and loading meta-parameters with orbax; the learned optimizer's config travels with its weights."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import orbax.checkpoint as ocp

from l2o_jax.features import FeatureConfig
from l2o_jax.features import ProbeConfig
from l2o_jax.optimizers import FAMILIES
from l2o_jax.optimizers import MetaParams
from l2o_jax.optimizers import OutputConfig

_NESTED = {"features": FeatureConfig, "output": OutputConfig, "probes": ProbeConfig}


def config_to_dict(config) -> dict:
    """A learned optimizer's config as JSON-ready data: ``{'family': name, 'fields': {...}}``.

    Example:
      >>> config_to_dict(GraphL2O())['family']
      'GraphL2O'
    """
    return {"family": type(config).__name__, "fields": dataclasses.asdict(config)}


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def config_from_dict(data: dict):
    """Inverse of ``config_to_dict``; an unknown family or field is a clear error."""
    from l2o_jax.backward import LearnedBackward  # the backward package imports the optimizers, so not at the top

    families = {**FAMILIES, LearnedBackward.__name__: LearnedBackward}
    family = data.get("family")
    if family not in families:
        raise ValueError(f"unknown learned optimizer family {family!r}; known: {sorted(families)}.")
    cls = families[family]
    names = {f.name for f in dataclasses.fields(cls)}
    fields = data.get("fields", {})
    unknown = sorted(set(fields) - names)
    if unknown:
        raise ValueError(f"{family} has no fields {unknown}; the checkpoint was written by another version.")
    kwargs = {k: _nested(k, v) if k in _NESTED else _tuples(v) for k, v in fields.items()}
    return cls(**kwargs)


def _nested(name: str, value):
    """A nested config field rebuilt from its dict; ``None`` stays ``None`` (e.g. ``probes`` left off)."""
    return None if value is None else _NESTED[name](**{n: _tuples(v) for n, v in value.items()})


def save_meta_params(path: str | os.PathLike, meta_params: MetaParams, *, metadata: dict | None = None) -> str:
    """Writes meta-parameters and their config to the directory ``path`` (atomically, replacing it).

    Args:
      path: a directory; created, or replaced if it exists.
      meta_params: what to save.
      metadata: extra JSON-serialisable facts to keep with it (how it was trained, evaluation numbers).

    Returns:
      The absolute path written.

    Example:
      >>> save_meta_params('/tmp/ng_gnn', meta_params, metadata={'outer_steps': 1000})
      >>> restored = load_meta_params('/tmp/ng_gnn')
    """
    if not isinstance(meta_params, MetaParams):
        raise TypeError(f"save_meta_params expects MetaParams, got {type(meta_params).__name__}.")
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
    """The config and metadata stored with saved meta-parameters, without loading the arrays."""
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
    template = jax.eval_shape(lambda: config.init(jax.random.key(0)).arrays)  # shapes only: nothing is computed
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
