"""Spreading the task batch of an outer step over all local devices.

The trainer opens ``task_mesh()`` around its jitted outer step; estimators call ``shard_tasks`` on the
per-task keys, so the vmapped unrolls are partitioned over the mesh's ``tasks`` axis while meta-parameters
stay replicated and XLA reduces the meta-gradient. With one device nothing changes.

Multi-host: call ``jax.distributed.initialize()`` in every process first; ``jax.devices()`` then lists the
devices of all hosts and the same code shards over them.
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

_ACTIVE: list[Mesh] = []


@contextlib.contextmanager
def task_mesh(devices=None):
    """Makes ``shard_tasks`` partition over ``devices`` (default: all) inside the ``with`` block.

    Example:
      >>> with task_mesh():
      ...     loss, grads, state = jitted_estimate(meta_params, task, state, key)
    """
    devices = jax.devices() if devices is None else devices
    mesh = Mesh(np.asarray(devices), ("tasks",))
    _ACTIVE.append(mesh)
    try:
        yield mesh
    finally:
        _ACTIVE.pop()


def shard_tasks(x):
    """Constrains the leading (task) axis of ``x``'s leaves to be split over the active mesh, if any.

    A batch that does not divide evenly over the devices is left unconstrained.
    """
    if not _ACTIVE or _ACTIVE[-1].size == 1:
        return x
    mesh = _ACTIVE[-1]

    def constrain(leaf):
        if leaf.ndim == 0 or leaf.shape[0] % mesh.size:
            return leaf
        return jax.lax.with_sharding_constraint(leaf, NamedSharding(mesh, PartitionSpec("tasks")))

    return jax.tree.map(constrain, x)
