"""Which optimizees the learned backward pass supports, and their neural graphs checked against the model.

The forward pass itself (``record_forward``) runs on the graph and lives in ``l2o_jax.graphs``.
"""

from __future__ import annotations

import flax.linen as nn

from l2o_jax.graphs import GraphSpec
from l2o_jax.graphs import graph_spec
from l2o_jax.tasks import CNNClassifier
from l2o_jax.tasks import MLPClassifier
from l2o_jax.tasks import Task
from l2o_jax.tasks import layer_activations


def model_of(task_or_model) -> nn.Module:
    """The optimizee network of a ``Task``, or the network itself: the ``MLPClassifier`` or ``CNNClassifier`` of
    ``l2o_jax.tasks``."""
    model = task_or_model.model if isinstance(task_or_model, Task) else task_or_model
    if not isinstance(model, (MLPClassifier, CNNClassifier)):
        raise ValueError(
            "the learned backward pass supports the MLPClassifier and CNNClassifier of l2o_jax.tasks (or a Task "
            f"built on them), got {type(model).__name__}."
        )
    return model


def network_spec(model: nn.Module, params) -> GraphSpec:
    """The neural graph of ``params``, checked against what ``model`` computes.

    Raises:
      ValueError: naming the parameter path, for leaves that are not Dense/Conv kernels and biases, layers of
        the wrong kind or number, or layers without a bias.

    Example:
      >>> spec = network_spec(task.model, task.init(jax.random.key(0)))
    """
    shapes_only = graph_spec(params, strict=True)
    kinds = ("dense",) * len(model.hidden) if isinstance(model, MLPClassifier) else ("conv",) * model.depth
    kinds += ("dense",)
    for i, layer in enumerate(shapes_only.layers):
        if i >= len(kinds):
            raise ValueError(f"{layer.name}: {_describe(model)} has {len(kinds)} layers; this one is extra.")
        if layer.kind != kinds[i]:
            raise ValueError(
                f"{layer.name}/kernel: {_describe(model)} expects a {kinds[i]} layer here, the parameters hold a "
                f"{layer.kind} kernel of shape {shapes_only.leaf_shapes[layer.kernel_leaf]}."
            )
        if layer.bias_leaf is None:
            raise ValueError(f"{layer.name}: the layer has no bias; {_describe(model)} layers all have one.")
    if len(shapes_only.layers) < len(kinds):
        raise ValueError(
            f"{shapes_only.layers[-1].name}: {_describe(model)} has {len(kinds)} layers, the parameters only "
            f"{len(shapes_only.layers)}."
        )
    return graph_spec(params, activations=layer_activations(model), strict=True)


def _describe(model: nn.Module) -> str:
    if isinstance(model, MLPClassifier):
        return f"MLPClassifier(hidden={model.hidden})"
    return f"CNNClassifier(width={model.width}, depth={model.depth})"
