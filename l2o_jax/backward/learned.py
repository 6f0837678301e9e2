"""A learned backward pass: messages sent backwards through the neural graph replace backprop's gradients.

Backprop is one message-passing scheme on the neural graph: the output error ``δ_L = dL/dz_L`` enters at the
output neurons; each layer sends it back along its edges, ``δ_j = σ'(z_j) Σ_k W_jk δ_k``; each edge's
gradient is its receiver's message times its sender's activation, ``ΔW_jk = Σ_batch a_j δ_k``. The learned
backward pass keeps that scheme and lets two small networks, shared by every layer and neuron, adjust it
layer by layer from the outputs to the inputs:

* a node network reads each neuron's forward statistics and incoming message and rescales and shifts the
  message before it is sent on (so every layer below sees the change; the layer's total message size stays
  backprop's, so the changes do not compound with depth) and the neuron's bias gradient;
* an edge network reads each weight, its backprop gradient and its two neurons' features, and rescales and
  shifts the weight's gradient.

Every adjustment is ``g · exp(b·tanh(s/b)) + c · rms(g)`` with ``(s, c)`` from a network whose output layer
starts at zero: at initialisation the learned gradients are exactly ``jax.grad``'s (the *backprop
initialisation*), and meta-training learns how to depart from them.

References:
  Thijs Simons, Learning to optimize: learning the backwards pass using message-passing neural networks.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax
from flax import struct

from l2o_jax.backward.forward import model_of
from l2o_jax.backward.forward import network_spec
from l2o_jax.backward.networks import NUM_EDGE_FEATURES
from l2o_jax.backward.networks import NUM_NEURON_FEATURES
from l2o_jax.backward.networks import EdgeNetwork
from l2o_jax.backward.networks import NodeNetwork
from l2o_jax.backward.networks import edge_features
from l2o_jax.backward.networks import layer_rms
from l2o_jax.backward.networks import neuron_features
from l2o_jax.graphs import ROLE_HIDDEN
from l2o_jax.graphs import ROLE_INPUT
from l2o_jax.graphs import ROLE_OUTPUT
from l2o_jax.graphs import GraphSpec
from l2o_jax.graphs import Tape
from l2o_jax.graphs import apply_layer
from l2o_jax.graphs import record_forward
from l2o_jax.optimizers import MetaParams
from l2o_jax.optimizers import register_family
from l2o_jax.tasks import Task

#: The optimizers that can apply the learned gradients (``LearnedBackward.optimizer``). Adam's ``eps_root`` keeps
#: meta-gradients through it finite where a gradient is exactly zero (a dead ReLU's weights).
OPTIMIZERS = {
    "sgd": lambda lr: optax.sgd(lr),
    "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    "adam": lambda lr: optax.adam(lr, eps_root=1e-16),
}


def gradient_optimizer(name: str, learning_rate: float) -> optax.GradientTransformation:
    """The fixed optax optimizer ``name`` (``'sgd'``, ``'momentum'`` or ``'adam'``) that applies gradients, learned
    or true, in meta-training and in comparisons.

    Example:
      >>> tx = gradient_optimizer('adam', 1e-3)
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}.")
    return OPTIMIZERS[name](learning_rate)


@register_family
@dataclasses.dataclass(frozen=True)
class LearnedBackward:
    """Config of a learned backward pass (a frozen, hashable dataclass, like the learned optimizers').

    Attributes:
      hidden: width of the node and edge networks.
      layers: hidden layers of each network.
      magnitude_bound: ``b``: an adjustment scales a message or gradient by at most ``e^b`` either way.
      optimizer, learning_rate: the fixed optimizer that applies the learned gradients during meta-training
        (``'sgd'``, ``'momentum'`` or ``'adam'``); ``transform`` returns it.

    Example:
      >>> meta_params = LearnedBackward(hidden=16).init(jax.random.key(0))
      >>> loss, grads = learned_value_and_grad(task, meta_params)(params, batch)  # == jax.value_and_grad
    """

    hidden: int = 16
    layers: int = 2
    magnitude_bound: float = 3.0
    optimizer: str = "sgd"
    learning_rate: float = 0.1

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"LearnedBackward.optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}.")
        if self.hidden < 1 or self.layers < 1:
            raise ValueError(f"LearnedBackward needs hidden >= 1 and layers >= 1, got {self.hidden}, {self.layers}.")
        if not self.magnitude_bound > 0 or not self.learning_rate > 0:
            raise ValueError("LearnedBackward.magnitude_bound and learning_rate must be positive.")

    def networks(self) -> tuple[NodeNetwork, EdgeNetwork]:
        """The node and edge meta-networks."""
        return NodeNetwork(self.hidden, self.layers), EdgeNetwork(self.hidden, self.layers)

    def init(self, key: jax.Array) -> MetaParams:
        """The backprop initialisation: meta-parameters whose learned gradients equal ``jax.grad``'s.

        Example:
          >>> meta_params = LearnedBackward().init(jax.random.key(0))
        """
        return MetaParams(arrays=_init_arrays(self.hidden, self.layers, key), config=self)

    def transform(self, meta_params: MetaParams, **options) -> optax.GradientTransformation:
        """The fixed optimizer that applies the learned gradients (what ``l2o_jax.meta`` steps with)."""
        del meta_params, options
        return gradient_optimizer(self.optimizer, self.learning_rate)

    def value_and_grad(self, meta_params: MetaParams, task, *, stop_inner_gradient: bool = True):
        """The inner gradient for ``l2o_jax.meta``: ``learned_value_and_grad``, first order if asked.

        ``stop_inner_gradient`` treats the optimizee's forward pass as constant, so the meta-gradient still
        reaches the meta-parameters through the learned gradients but has no second derivatives of the loss.
        """
        return learned_value_and_grad(task, meta_params, first_order=stop_inner_gradient)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_arrays(hidden: int, layers: int, key: jax.Array) -> dict:
    # Compiled once per size: op-by-op initialisation of the two networks is slower than compiling it.
    node_net, edge_net = NodeNetwork(hidden, layers), EdgeNetwork(hidden, layers)
    node_key, edge_key = jax.random.split(key)
    neurons = jnp.zeros((3, NUM_NEURON_FEATURES))
    edges = jnp.zeros((3, 3, NUM_EDGE_FEATURES))
    return {
        "node": node_net.init(node_key, neurons)["params"],
        "edge": edge_net.init(edge_key, edges, neurons, neurons)["params"],
    }


def adjust(values: jax.Array, log_scale: jax.Array, shift: jax.Array, bound: float) -> jax.Array:
    """``values · exp(b·tanh(log_scale/b)) + shift · rms(values)``, per neuron along the last axis.

    Exactly ``values`` when ``log_scale`` and ``shift`` are zero.
    """
    return values * jnp.exp(bound * jnp.tanh(log_scale / bound)) + shift * layer_rms(values)


def adjust_message(delta: jax.Array, log_scale: jax.Array, shift: jax.Array, bound: float) -> jax.Array:
    """``adjust`` for the messages sent on to the layer below, rescaled to the backprop message's rms over the
    layer: the learned part redistributes a layer's error among its neurons and examples but does not change its
    size, so adjustments do not compound with depth (per-layer step sizes come from the gradient adjustments)."""
    adjusted = adjust(delta, log_scale, shift, bound)
    return adjusted * (layer_rms(delta) / layer_rms(adjusted))


def _roles(spec: GraphSpec) -> tuple[int, ...]:
    return (ROLE_INPUT,) + (ROLE_HIDDEN,) * (len(spec.layers) - 1) + (ROLE_OUTPUT,)


def learned_backward_pass(meta_params: MetaParams, spec: GraphSpec, params, tape: Tape, output_error: jax.Array):
    """Sends ``output_error`` back through the network layer by layer, adjusting messages and gradients.

    Args:
      meta_params: from ``LearnedBackward(...).init(key)`` (or meta-trained).
      spec: the network's graph (``network_spec``).
      params: the optimizee's parameters.
      tape: the forward pass (``record_forward``).
      output_error: ``dL/dz`` at the output neurons, ``(B, num_classes)``.

    Returns:
      Learned gradients with the structure and dtypes of ``params``.

    Example:
      >>> grads = learned_backward_pass(meta_params, spec, params, tape, jax.grad(loss_of_logits)(tape.logits))
    """
    config: LearnedBackward = meta_params.config
    node_net, edge_net = config.networks()
    node = functools.partial(node_net.apply, {"params": meta_params.arrays["node"]})
    edge = functools.partial(edge_net.apply, {"params": meta_params.arrays["edge"]})
    roles, activations = _roles(spec), ("linear",) + tuple(layer.activation for layer in spec.layers)
    features = lambda l, delta: neuron_features(
        tape.pre[l], tape.post[l], tape.slope[l], delta, roles[l], activations[l]
    )
    bound = config.magnitude_bound
    leaves = jax.tree_util.tree_leaves(params)
    grads = list(leaves)
    delta = output_error
    receivers = features(len(spec.layers), delta)
    for l in range(len(spec.layers), 0, -1):
        layer, previous = spec.layers[l - 1], spec.layers[l - 2] if l > 1 else None
        out = node(receivers)
        delta = adjust_message(delta, out[:, 0], out[:, 1], bound)
        kernel, bias = leaves[layer.kernel_leaf], leaves[layer.bias_leaf]
        _, backward = jax.vjp(functools.partial(apply_layer, layer, previous), kernel, bias, tape.post[l - 1])
        kernel_grad, bias_grad, input_grad = backward(delta)
        delta = tape.slope[l - 1] * input_grad
        senders = features(l - 1, delta)
        edge_out = edge(edge_features(kernel, kernel_grad), senders, receivers)
        grads[layer.kernel_leaf] = adjust(kernel_grad, edge_out[..., 0], edge_out[..., 1], bound).astype(kernel.dtype)
        grads[layer.bias_leaf] = adjust(bias_grad, out[:, 2], out[:, 3], bound).astype(bias.dtype)
        receivers = senders
    return jax.tree_util.tree_unflatten(spec.treedef, grads)


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def learned_value_and_grad(task_or_model, meta_params: MetaParams, *, first_order: bool = False):
    """A drop-in for ``jax.value_and_grad(task.loss)`` whose gradients come from the learned backward pass.

    Args:
      task_or_model: an ``l2o_jax.tasks.Task`` or its network (an ``MLPClassifier`` or ``CNNClassifier`` of
        ``l2o_jax.tasks``); the loss is the mean softmax cross-entropy, as ``Task.loss``.
      meta_params: from ``LearnedBackward(...).init(key)`` or meta-training.
      first_order: treat the optimizee's forward pass (parameters, activations, output error) as constants,
        so derivatives of the learned gradients reach only the meta-parameters (meta-training's
        ``stop_inner_gradient``). The loss stays differentiable in the parameters.

    Returns:
      ``fn(params, batch) -> (loss, grads)`` with ``grads`` shaped like ``params``; jit-, vmap- and
      scan-friendly; its output feeds any optax optimizer.

    Raises:
      ValueError: for models other than the ``MLPClassifier``/``CNNClassifier`` of ``l2o_jax.tasks`` and, when
        called, for parameters that do not fit the model (naming the parameter path).

    Example:
      >>> meta_params = LearnedBackward().init(jax.random.key(0))
      >>> loss, grads = jax.jit(learned_value_and_grad(task, meta_params))(params, task.sample_batch(key))
      >>> updates, state = optax.sgd(0.1).update(grads, state)
    """
    model = model_of(task_or_model)
    if not isinstance(meta_params, MetaParams) or not isinstance(meta_params.config, LearnedBackward):
        raise TypeError(
            f"learned_value_and_grad needs meta-parameters from LearnedBackward(...).init(key), got "
            f"{type(getattr(meta_params, 'config', meta_params)).__name__}."
        )

    def value_and_grad(params, batch):
        x, labels = batch
        spec = network_spec(model, params)
        tape = record_forward(spec, params, x)
        loss, to_logits = jax.vjp(lambda logits: _cross_entropy(logits, labels), tape.logits)
        (output_error,) = to_logits(jnp.ones_like(loss))
        if first_order:
            params, tape, output_error = jax.lax.stop_gradient((params, tape, output_error))
        return loss, learned_backward_pass(meta_params, spec, params, tape, output_error)

    return value_and_grad


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _loss_with_learned_gradient(model, meta_params: MetaParams, params, batch):
    return _cross_entropy(model.apply(params, batch[0]), batch[1])


def _loss_forward(model, meta_params, params, batch):
    loss, grads = learned_value_and_grad(model, meta_params)(params, batch)
    return loss, grads


def _loss_backward(model, grads, cotangent):
    del model
    return None, jax.tree.map(lambda g: (cotangent * g).astype(g.dtype), grads), None


_loss_with_learned_gradient.defvjp(_loss_forward, _loss_backward)


@struct.dataclass
class LearnedGradientTask(Task):
    """A ``Task`` whose loss has the learned backward pass as its gradient (see ``learned_gradient_task``)."""

    meta_params: MetaParams = None

    def loss(self, params, batch) -> jax.Array:
        """Mean softmax cross-entropy; ``jax.grad`` of it is the learned backward pass."""
        return _loss_with_learned_gradient(self.model, self.meta_params, params, batch)


def learned_gradient_task(task: Task, meta_params: MetaParams) -> LearnedGradientTask:
    """``task`` with ``jax.grad(task.loss)`` replaced by the learned backward pass, for code that differentiates
    ``task.loss`` itself (``l2o_jax.evaluation.evaluate``, training loops). Not for meta-training: the
    meta-parameters get no gradient through it (``l2o_jax.meta`` calls ``LearnedBackward.value_and_grad``).

    Example:
      >>> result = evaluate(optax.sgd(0.1), learned_gradient_task(task, meta_params), steps=200, seeds=5)
    """
    model_of(task)
    return LearnedGradientTask(
        data=task.data, model=task.model, batch_size=task.batch_size, name=task.name, meta_params=meta_params
    )
