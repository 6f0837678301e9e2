"""The one registry of learned-optimizer families and the one config encoding every saved file uses.

A config is a frozen dataclass; as JSON it is ``{"type": <class name>, <field>: <value>, ...}``, nested configs
the same way, tuples as lists. Saved meta-parameters (``l2o_jax.io``), pretrained entries and a meta-training
run's ``config.json`` all hold their configs in this form, and ``config_from_dict`` rebuilds any of them from the
classes registered here: every family registers itself where it is defined (``@register_family``), and so do
the configs nested in families or runs (``register_config``).

Example:
  >>> data = config_to_dict(GraphL2O(hidden=16))
  >>> data['type'], data['hidden']
  ('GraphL2O', 16)
  >>> config_from_dict(data) == GraphL2O(hidden=16)
  True
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any
from typing import Callable

import jax

from l2o_jax.features import FeatureConfig
from l2o_jax.features import ProbeConfig
from l2o_jax.optimizers.base import MetaParams
from l2o_jax.optimizers.base import OutputConfig

_FAMILIES: dict[str, type] = {}
_CONFIGS: dict[str, type] = {}


def _register(table: dict[str, type], cls: type) -> type:
    if not (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen):
        raise TypeError(f"only frozen dataclasses can be registered as configs, got {cls!r}.")
    known = _FAMILIES.get(cls.__name__) or _CONFIGS.get(cls.__name__)
    if known is not None and known is not cls:
        raise ValueError(f"two config classes are named {cls.__name__!r}: {known!r} and {cls!r}.")
    table[cls.__name__] = cls
    return cls


def register_family(cls: type) -> type:
    """Class decorator: makes a learned-optimizer family (a config with ``init(key)`` and ``transform``) loadable.

    Example:
      >>> @register_family
      ... @dataclasses.dataclass(frozen=True)
      ... class MyL2O: ...
    """
    return _register(_FAMILIES, cls)


def register_config(cls: type) -> type:
    """Class decorator: makes a config that appears inside a family's or a run's config decodable.

    Example:
      >>> register_config(TaskFamily)
    """
    return _register(_CONFIGS, cls)


def families() -> dict[str, type]:
    """Every registered learned-optimizer family by class name.

    Example:
      >>> sorted(families())[:2]
      ['GraphL2O', 'LSTML2O']
    """
    return dict(_FAMILIES)


def config_to_dict(config, *, fallback: Callable[[Any], Any] | None = None) -> dict:
    """A config as JSON-ready data: ``{"type": class name, field: value, ...}``, nested configs alike.

    Args:
      config: a dataclass instance.
      fallback: what to write for a value JSON cannot hold (a callable, an array, an object that is no
        dataclass); by default such a value is a TypeError naming its field.

    Example:
      >>> config_to_dict(LSTML2O(hidden=8))['output']['type']
      'OutputConfig'
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config_to_dict expects a dataclass instance, got {type(config).__name__}.")
    return _encode(config, type(config).__name__, fallback)


def _encode(value, where: str, fallback):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [f for f in dataclasses.fields(value) if f.init]
        return {
            "type": type(value).__name__,
            **{f.name: _encode(getattr(value, f.name), f"{where}.{f.name}", fallback) for f in fields},
        }
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{where}[{i}]", fallback) for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value) and "type" not in value:
        return {k: _encode(v, f"{where}.{k}", fallback) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if fallback is None:
        raise TypeError(
            f"{where}: a {type(value).__name__} has no JSON form; configs hold numbers, strings and configs."
        )
    return {"unencodable": fallback(value)}


def config_from_dict(data: dict):
    """Inverse of ``config_to_dict`` for registered classes; an unknown type or field is a clear error.

    Example:
      >>> config_from_dict({'type': 'LSTML2O', 'hidden': 8})
      LSTML2O(...)
    """
    if not isinstance(data, dict) or "type" not in data:
        raise ValueError(f"a saved config is a dict with a 'type' key, got {str(data)[:200]}.")
    return _decode(data, "config")


def _decode(value, where: str):
    if isinstance(value, list):
        return tuple(_decode(v, f"{where}[{i}]") for i, v in enumerate(value))
    if not isinstance(value, dict):
        return value
    if "unencodable" in value:
        raise ValueError(f"{where} was saved as {value['unencodable']!r}, which cannot be rebuilt.")
    if "type" not in value:
        return {k: _decode(v, f"{where}.{k}") for k, v in value.items()}
    name = value["type"]
    cls = _FAMILIES.get(name) or _CONFIGS.get(name)
    if cls is None:
        raise ValueError(
            f"{where}: unknown config type {name!r}; known: {sorted({**_FAMILIES, **_CONFIGS})}. A family defined "
            "outside l2o_jax must be registered with l2o_jax.optimizers.register_family before loading."
        )
    fields = {k: v for k, v in value.items() if k != "type"}
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise ValueError(f"{where}: {name} has no fields {unknown}; the file was written by another version.")
    return cls(**{k: _decode(v, f"{where}.{k}") for k, v in fields.items()})


def override(config, setting: str):
    """``config`` with one field replaced, from ``'dotted.path=value'`` (what ``l2o-jax meta-train --set`` takes).

    The value is read as JSON when it parses (numbers, lists, ``{"type": ...}`` configs), else as a string. A
    string naming a registered config class (any case) where a config stands replaces it by that class, keeping
    the fields the two share: ``estimator=pes`` turns truncated BPTT into PES with the same truncations and
    horizons.

    Example:
      >>> override(MetaTrainConfig(GraphL2O(), family), "learned_optimizer.hidden=64").learned_optimizer.hidden
      64
    """
    path, sep, text = setting.partition("=")
    if not sep or not path:
        raise ValueError(f"an override is 'dotted.path=value', got {setting!r}.")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    return _replace_at(config, path.split("."), value, path)


def _replace_at(config, names: list[str], value, path: str):
    if isinstance(config, dict):  # e.g. a task's keyword arguments: any key may be set
        current = config.get(names[0])
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        fields = {f.name for f in dataclasses.fields(config) if f.init}
        if names[0] not in fields:
            raise ValueError(
                f"cannot set {path!r}: {type(config).__name__} has no field {names[0]!r}; it has {sorted(fields)}."
            )
        current = getattr(config, names[0])
    else:
        raise ValueError(f"cannot set {path!r}: {names[0]!r} would be a field of a {type(config).__name__} value.")
    new = _replace_at(current, names[1:], value, path) if len(names) > 1 else _coerce(current, value, path)
    if isinstance(config, dict):
        return {**config, names[0]: new}
    return dataclasses.replace(config, **{names[0]: new})


def _coerce(current, value, path: str):
    """``value`` in the form of the field it replaces (a config, a tuple, a float)."""
    if isinstance(value, dict) and "type" in value:
        return _decode(value, path)
    if isinstance(value, str) and dataclasses.is_dataclass(current) and not isinstance(current, type):
        classes = {name.lower(): cls for name, cls in {**_FAMILIES, **_CONFIGS}.items()}
        cls = classes.get(value.lower())
        if cls is None:
            raise ValueError(
                f"cannot set {path!r} to {value!r}: no config class of that name; known: "
                f"{sorted({**_FAMILIES, **_CONFIGS})}."
            )
        shared = {f.name for f in dataclasses.fields(cls) if f.init} & {f.name for f in dataclasses.fields(current)}
        return cls(**{name: getattr(current, name) for name in shared})
    if isinstance(value, list):
        return tuple(_decode(v, path) for v in value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def abstract_meta_params(config) -> MetaParams:
    """The meta-parameters ``config.init`` would make, as shapes and dtypes only (nothing is computed).

    Example:
      >>> jax.tree.map(lambda x: x.shape, abstract_meta_params(MLPL2O()).arrays)['log_lr']
      ()
    """
    return jax.eval_shape(lambda: config.init(jax.random.key(0)))


for _nested in (FeatureConfig, OutputConfig, ProbeConfig):
    register_config(_nested)
