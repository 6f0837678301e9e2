"""Spreading the task batch of an outer step over all local devices.

The trainer opens ``task_mesh()`` around its outer steps; estimators call ``shard_tasks`` on their per-task
keys and states, so the vmapped unrolls are partitioned over the mesh's ``tasks`` axis while meta-parameters
stay replicated and XLA reduces the meta-gradient. With one device nothing changes.

The mesh is installed with ``jax.set_mesh``, so it is part of JAX's tracing context: a function traced
inside ``task_mesh()`` is never served from a cache entry traced outside it, and vice versa.

Multi-host: call ``jax.distributed.initialize()`` in every process first; ``jax.devices()`` then lists the
devices of all hosts and the same code shards over them.
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np
from jax.sharding import AxisType
from jax.sharding import Mesh
from jax.sharding import PartitionSpec

TASK_AXIS = "tasks"


@contextlib.contextmanager
def task_mesh(devices=None):
    """Makes ``shard_tasks`` partition over ``devices`` (default: all) inside the ``with`` block.

    Example:
      >>> with task_mesh():
      ...     loss, grads, state = jax.jit(estimator.estimate)(meta_params, task, state, key)
    """
    devices = jax.devices() if devices is None else list(devices)
    mesh = Mesh(np.asarray(devices), (TASK_AXIS,), axis_types=(AxisType.Auto,))
    with jax.set_mesh(mesh):
        yield mesh


def shard_tasks(x):
    """Constrains the leading (task) axis of ``x``'s leaves to be split over the active ``task_mesh``, if any.

    Leaves whose leading axis does not divide evenly over the devices, and scalars, are left unconstrained.

    Example:
      >>> keys = shard_tasks(jax.random.split(key, num_tasks))  # inside a function traced under task_mesh()
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or TASK_AXIS not in mesh.axis_names or mesh.shape[TASK_AXIS] == 1:
        return x
    size = mesh.shape[TASK_AXIS]

    def constrain(leaf):
        if leaf.ndim == 0 or leaf.shape[0] % size:
            return leaf
        return jax.lax.with_sharding_constraint(leaf, PartitionSpec(TASK_AXIS))

    return jax.tree.map(constrain, x)


def replicate(tree):
    """Places ``tree`` whole on every device of the active ``task_mesh`` (unchanged without one).

    Outputs of functions jitted under the mesh carry it in their types; inputs placed the same way keep every
    outer step on one compiled program.

    Example:
      >>> with task_mesh():
      ...     meta_arrays = replicate(meta_arrays)
    """
    if jax.sharding.get_abstract_mesh().empty:
        return tree
    return jax.device_put(tree, PartitionSpec())
