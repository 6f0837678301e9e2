"""A learned backward pass: message passing backwards over the neural graph replaces backprop (Simons,
"Learning the backwards pass using message-passing neural networks").

Example:
  >>> meta_params = LearnedBackward(hidden=16).init(jax.random.key(0))
  >>> loss, grads = learned_value_and_grad(task, meta_params)(params, batch)  # jax.value_and_grad at init
"""

from l2o_jax.backward.forward import network_spec
from l2o_jax.backward.learned import LearnedBackward
from l2o_jax.backward.learned import LearnedGradientTask
from l2o_jax.backward.learned import gradient_optimizer
from l2o_jax.backward.learned import learned_backward_pass
from l2o_jax.backward.learned import learned_gradient_task
from l2o_jax.backward.learned import learned_value_and_grad
from l2o_jax.backward.networks import neuron_features
from l2o_jax.graphs import Tape  # re-exported: the forward pass the backward pass reads
from l2o_jax.graphs import record_forward

__all__ = [
    "LearnedBackward",
    "LearnedGradientTask",
    "Tape",
    "gradient_optimizer",
    "learned_backward_pass",
    "learned_gradient_task",
    "learned_value_and_grad",
    "network_spec",
    "neuron_features",
    "record_forward",
]
