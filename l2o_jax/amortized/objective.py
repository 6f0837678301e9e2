"""The single-shot objective (CE + λ·L1), its metrics, and SGD/Adam runs vmapped over a stack of networks.

Everything here takes a *stack* of networks of one architecture: every leaf has a leading member axis.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2o_jax.meta import InnerState
from l2o_jax.meta import optax_rule
from l2o_jax.meta import rollout
from l2o_jax.tasks import Task

#: Parameters with magnitude below this count as zero in ``sparsity``.
SPARSITY_THRESHOLD = 1e-2


def l1_norm(params) -> jax.Array:
    """Sum of absolute values of every parameter (weights and biases) of one network.

    Example:
      >>> l1_norm({'w': jnp.array([1.0, -2.0])})
      Array(3., dtype=float32)
    """
    return sum(jnp.abs(leaf).sum() for leaf in jax.tree.leaves(params))


def objective(task: Task, params, batch, l1: float = 0.0) -> jax.Array:
    """Seed 002's objective of one network: mean cross-entropy on ``batch`` plus ``l1 * ‖params‖₁``.

    Example:
      >>> objective(task, params, task.sample_batch(key), l1=1e-3)
    """
    return task.loss(params, batch) + l1 * l1_norm(params)


def sparsity(params, threshold: float = SPARSITY_THRESHOLD) -> jax.Array:
    """Fraction of parameters of one network with ``|θ| < threshold``.

    Example:
      >>> sparsity({'w': jnp.array([0.0, 0.5])})
      Array(0.5, dtype=float32)
    """
    leaves = jax.tree.leaves(params)
    small = sum(jnp.sum(jnp.abs(leaf) < threshold) for leaf in leaves)
    return small / sum(leaf.size for leaf in leaves)


def evaluate_stack(task: Task, stack, split: str = 'test', l1: float = 0.0, max_examples: int = 2048) -> dict:
    """Accuracy, CE, CE + λ·L1 and sparsity of every network of a stack on a data split.

    Returns:
      A dict of numpy arrays of shape ``(members,)``: ``accuracy``, ``ce``, ``loss`` (CE + ``l1``·L1) and
      ``sparsity``.

    Example:
      >>> evaluate_stack(task, zoo.params, 'test')['accuracy'].mean()
    """
    return evaluate_splits(task, stack, (split,), l1, max_examples)[split]


def evaluate_splits(
    task: Task, stack, splits=('train', 'validation', 'test'), l1: float = 0.0, max_examples: int = 2048
) -> dict:
    """``evaluate_stack`` on several data splits in one compiled call: ``{split: metrics}``.

    Example:
      >>> evaluate_splits(task, zoo.params)['validation']['accuracy']
    """
    return jax.tree.map(np.asarray, _evaluate_splits(task, stack, tuple(splits), l1, max_examples))


@functools.partial(jax.jit, static_argnames=('splits', 'max_examples'))
def _evaluate_splits(task, stack, splits, l1, max_examples):
    def one(params):
        metrics = {}
        for split in splits:
            result = task.evaluate(params, split, max_examples)
            metrics[split] = {
                'accuracy': result['accuracy'],
                'ce': result['loss'],
                'loss': result['loss'] + l1 * l1_norm(params),
                'sparsity': sparsity(params),
            }
        return metrics

    return jax.lax.map(one, stack)


def run_optimizer(
    task: Task,
    stack,
    tx: optax.GradientTransformation,
    key: jax.Array,
    num_steps: int,
    *,
    l1: float = 0.0,
    opt_state=None,
    active_steps=None,
):
    """Trains every network of a stack for ``num_steps`` steps of ``tx`` on ``objective``, vmapped over members.

    Each step is one step of ``l2o_jax.meta.rollout``; each member draws its own training batches. ``tx`` may hold
    per-member hyperparameters: pass an ``opt_state`` initialised under ``jax.vmap`` (e.g.
    ``optax.inject_hyperparams``). ``num_steps`` is a traced loop bound, so runs of any length share one
    compilation (per ``tx`` object and shapes).

    Args:
      task: the architecture and data.
      stack: parameters with a leading member axis.
      tx: the optimizer.
      key: randomness of the batches.
      num_steps: steps to run.
      l1: λ of the objective.
      opt_state: the stacked optimizer state to continue from; default ``jax.vmap(tx.init)(stack)``.
      active_steps: optional int array ``(members,)``: member ``i`` stops updating after that many steps.

    Returns:
      ``(stack, opt_state)`` after training.

    Example:
      >>> trained, _ = run_optimizer(task, stack, optax.sgd(0.05), key, 100)
    """
    opt_state = jax.vmap(tx.init)(stack) if opt_state is None else opt_state
    members = jax.tree.leaves(stack)[0].shape[0]
    active_steps = jnp.full((members,), num_steps) if active_steps is None else jnp.asarray(active_steps)
    return _run_optimizer(task, stack, tx, key, num_steps, l1, opt_state, active_steps)


@functools.partial(jax.jit, static_argnames=('tx',))
def _run_optimizer(task, stack, tx, key, num_steps, l1, opt_state, active_steps):
    rule = optax_rule(tx)
    value_and_grad = jax.value_and_grad(lambda params, batch: objective(task, params, batch, l1))

    def member_step(state, active):
        new, _ = rollout(task, rule, state, 1, value_and_grad=value_and_grad)
        return jax.tree.map(lambda new, old: jnp.where(active, new, old), new, state)

    def step(index, states):
        return jax.vmap(member_step)(states, index < active_steps)

    # One rollout step per iteration of a loop with a traced bound (rollout's scan needs a static length): runs of
    # every length share one compilation, and each member keeps its state once past its own number of steps.
    members = active_steps.shape[0]
    start = InnerState(stack, opt_state, jnp.zeros((members,), jnp.int32), jax.random.split(key, members))
    final = jax.lax.fori_loop(0, num_steps, step, start)
    return final.params, final.opt_state
