"""Inner training runs of an optimizee, as ``jax.lax.scan`` s: ``rollout`` is the one inner loop of the package.

Everything here is a pure function of (meta-parameters, task, key): batches are drawn inside the scan, the
learned optimizer's transform is built inside the traced function so meta-gradients reach the meta-parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from typing import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from l2o_jax.optimizers import MetaParams

META_LOSSES = ("mean", "log_mean", "final", "validation", "log_validation", "log_mean_validation")


@dataclasses.dataclass(frozen=True)
class UnrollConfig:
    """How one inner run is scored.

    Attributes:
      meta_loss: ``'mean'`` training loss over the unroll (default), ``'log_mean'`` its log, ``'final'`` the
        last step's training loss, ``'validation'`` the loss on a validation batch after the last step,
        ``'log_validation'`` its log (long-horizon meta-training: a training-loss objective rewards ever larger
        logits, which past a few hundred steps inflates the test loss while the training loss still falls).
      stop_inner_gradient: treat the optimizee's gradients as constants in the meta-gradient (the usual
        first-order approximation; avoids second derivatives of the optimizee's loss).
      remat: rematerialise each inner step in the backward pass (``jax.checkpoint``): memory stops growing
        with the unroll length, at the cost of one more forward pass.
    """

    meta_loss: str = "mean"
    stop_inner_gradient: bool = True
    remat: bool = False

    def __post_init__(self):
        if self.meta_loss not in META_LOSSES:
            raise ValueError(f"meta_loss must be one of {META_LOSSES}, got {self.meta_loss!r}.")


class InnerState(NamedTuple):
    """A partially trained optimizee: what persists across truncations."""

    params: Any
    opt_state: Any
    step: jax.Array
    key: jax.Array


def learned_transform_for(meta_params: MetaParams, task, total_steps=None) -> optax.GradientTransformationExtraArgs:
    """The learned optimizer configured for the task's architecture: its activations and, for a model that is no
    plain chain of layers (a ResNet, a transformer), its computation, from which graph families read residual
    edges, normalisation parameters and attention. A task without ``is_chain`` (e.g. a test problem) counts as a
    chain. ``total_steps``: the run's length, for optimizers that need it (``config.needs_total_steps``).

    Example:
      >>> tx = learned_transform_for(meta_params, image_task('digits', model='resnet', width=8))
    """
    options = {"activations": task.activations, "total_steps": total_steps}
    if not getattr(task, "is_chain", True) and meta_params.config.reads_computation:
        options.update(apply_fn=task.apply, example_input=task.example_input())
    return meta_params.config.transform(meta_params, **options)


def init_inner_state(meta_params: MetaParams, task, key: jax.Array, total_steps=None) -> InnerState:
    """A freshly initialised optimizee and optimizer state, for a run of ``total_steps`` (may be traced; only
    optimizers that know the run's length use it).

    Example:
      >>> state = init_inner_state(meta_params, task, jax.random.key(0), total_steps=1000)
    """
    return init_state(task, learned_transform_for(meta_params, task, total_steps).init, key)


def _inner_value_and_grad(meta_params: MetaParams, task, config: UnrollConfig):
    """``jax.value_and_grad(task.loss)``, or the meta-parameters' own inner gradient when their config provides
    one (a learned backward pass, ``l2o_jax.backward``), which then decides what ``stop_inner_gradient`` stops."""
    provided = getattr(meta_params.config, "value_and_grad", None)
    if provided is not None:
        return provided(meta_params, task, stop_inner_gradient=config.stop_inner_gradient)
    value_and_grad = jax.value_and_grad(task.loss)

    def stopped(params, batch):
        loss, grads = value_and_grad(params, batch)
        return loss, jax.lax.stop_gradient(grads)

    return stopped if config.stop_inner_gradient else value_and_grad


#: ``(grads, opt_state, params, loss, step_input) -> (updates, opt_state, aux)``: how one inner step turns a
#: gradient into an update. ``step_input`` is the step's slice of ``rollout``'s ``step_inputs`` (e.g. a key for
#: a sampling policy); ``aux`` is anything the caller wants recorded per step.
UpdateRule = Callable[[Any, Any, Any, jax.Array, Any], tuple[Any, Any, Any]]


def optax_rule(tx: optax.GradientTransformation) -> UpdateRule:
    """The update rule of an optax transform (learned ones get ``value=loss``); records nothing.

    Example:
      >>> final, trace = rollout(task, optax_rule(optax.adam(1e-3)), init_state(task, optax.adam(1e-3).init, key), 100)
    """
    tx = optax.with_extra_args_support(tx)

    def rule(grads, opt_state, params, loss, _):
        updates, opt_state = tx.update(grads, opt_state, params, value=loss)
        return updates, opt_state, None

    return rule


class Trace(NamedTuple):
    """What ``rollout`` records.

    Attributes:
      losses: ``(length,)`` training loss before each step.
      aux: the update rule's per-step records, stacked (``None`` when it records nothing).
      observed: ``observe(state)`` after each step, stacked (``None`` without ``observe``).
      eval_loss, eval_accuracy: ``(length // evaluate_every + 1,)`` on the evaluation split, before training
        and every ``evaluate_every`` steps (``None`` without ``evaluate_every``).
    """

    losses: jax.Array
    aux: Any = None
    observed: Any = None
    eval_loss: jax.Array | None = None
    eval_accuracy: jax.Array | None = None


def init_state(task, init_opt_state: Callable[[Any], Any], key: jax.Array) -> InnerState:
    """A freshly initialised optimizee of ``task`` and its optimizer state ``init_opt_state(params)`` (e.g. an optax
    transform's ``init``); ``key`` fixes the initialisation and, through ``InnerState.key``, every batch the run
    draws.

    Example:
      >>> state = init_state(task, optax.adam(1e-3).init, jax.random.key(0))
    """
    init_key, run_key = jax.random.split(key)
    params = task.init(init_key)
    return InnerState(params=params, opt_state=init_opt_state(params), step=jnp.zeros([], jnp.int32), key=run_key)


def rollout(
    task,
    rule: UpdateRule,
    state: InnerState,
    length: int,
    *,
    step_inputs=None,
    value_and_grad: Callable | None = None,
    observe: Callable[[InnerState], Any] | None = None,
    evaluate_every: int | None = None,
    split: str = "test",
    max_eval_examples: int = 2048,
    remat: bool = False,
) -> tuple[InnerState, Trace]:
    """Trains an optimizee ``length`` steps: the one inner-training loop of the package (a ``jax.lax.scan``).

    Each step draws a training batch from the state's key, takes ``value_and_grad`` (default
    ``jax.value_and_grad(task.loss)``) and applies ``rule``'s update. Meta-training, evaluation, tuning, the
    policy-search trainers all call it.

    Args:
      task: an ``l2o_jax.tasks.Task``.
      rule: the update rule, e.g. ``optax_rule(tx)``.
      state: where to start (``init_state``).
      length: number of steps (static).
      step_inputs: optional pytree with a leading ``length`` axis, one slice per step, passed to ``rule``.
      value_and_grad: ``(params, batch) -> (loss, grads)``.
      observe: optional ``state -> record`` after each step (e.g. a validation loss).
      evaluate_every: when given, scores ``split`` before training and every that many steps (``length`` must be a
        multiple of it).
      split, max_eval_examples: what the evaluation scores.
      remat: rematerialise each step in the backward pass (memory flat in ``length``).

    Returns:
      ``(final_state, Trace)``.

    Example:
      >>> tx = optax.adam(1e-3)
      >>> final, trace = rollout(task, optax_rule(tx), init_state(task, tx.init, key), 200, evaluate_every=20)
      >>> trace.eval_accuracy[-1]
    """
    value_and_grad = value_and_grad or jax.value_and_grad(task.loss)

    def step(state: InnerState, step_input):
        key, batch_key = jax.random.split(state.key)
        loss, grads = value_and_grad(state.params, task.sample_batch(batch_key))
        updates, opt_state, aux = rule(grads, state.opt_state, state.params, loss, step_input)
        state = InnerState(optax.apply_updates(state.params, updates), opt_state, state.step + 1, key)
        return state, (loss, aux, None if observe is None else observe(state))

    step = jax.checkpoint(step) if remat else step
    if evaluate_every is None:
        final, (losses, aux, observed) = jax.lax.scan(step, state, step_inputs, length=length)
        return final, Trace(losses, aux, observed)
    if length % evaluate_every:
        raise ValueError(f"length ({length}) must be a multiple of evaluate_every ({evaluate_every}).")

    def evaluate(params):
        return task.evaluate(params, split, max_examples=max_eval_examples)

    def chunk(state, chunk_inputs):
        state, records = jax.lax.scan(step, state, chunk_inputs, length=evaluate_every)
        metrics = evaluate(state.params)
        return state, (records, metrics["loss"], metrics["accuracy"])

    chunks = length // evaluate_every
    chunk_inputs = jax.tree.map(lambda x: x.reshape(chunks, evaluate_every, *x.shape[1:]), step_inputs)
    final, (records, eval_loss, eval_acc) = jax.lax.scan(chunk, state, chunk_inputs, length=chunks)
    losses, aux, observed = jax.tree.map(lambda x: x.reshape(length, *x.shape[2:]), records)
    first = evaluate(state.params)
    return final, Trace(
        losses,
        aux,
        observed,
        jnp.concatenate([first["loss"][None], eval_loss]),
        jnp.concatenate([first["accuracy"][None], eval_acc]),
    )


def unroll(
    meta_params: MetaParams, task, state: InnerState, length: int, config: UnrollConfig = UnrollConfig()
) -> tuple[jax.Array, tuple[InnerState, jax.Array]]:
    """Trains the optimizee for ``length`` steps from ``state`` under the learned optimizer and scores the run.

    Args:
      meta_params: the learned optimizer.
      task: an ``l2o_jax.tasks.Task``.
      state: where to start (``init_inner_state`` for a fresh optimizee).
      length: number of inner steps (static).
      config: the meta-loss and memory options.

    Returns:
      ``(meta_loss, (final_state, losses))`` with ``losses`` the training loss at each step.

    Example:
      >>> loss, (state, losses) = unroll(meta_params, task, init_inner_state(meta_params, task, key), 100)
    """
    observe = None
    if config.meta_loss == "log_mean_validation":
        observe = lambda s: task.loss(s.params, task.sample_batch(jax.random.fold_in(s.key, 1), "validation"))
    final, trace = rollout(
        task,
        optax_rule(learned_transform_for(meta_params, task)),
        state,
        length,
        value_and_grad=_inner_value_and_grad(meta_params, task, config),
        observe=observe,
        remat=config.remat,
    )
    return _score(trace.losses, trace.observed, final, task, config), (final, trace.losses)


def _score(losses, validation, final: InnerState, task, config: UnrollConfig) -> jax.Array:
    if config.meta_loss == "log_mean_validation":
        return jnp.log(validation.mean())
    if config.meta_loss == "mean":
        return losses.mean()
    if config.meta_loss == "log_mean":
        return jnp.log(losses.mean())
    if config.meta_loss == "final":
        return losses[-1]
    batch = task.sample_batch(jax.random.fold_in(final.key, 1), "validation")
    loss = task.loss(final.params, batch)
    return jnp.log(loss) if config.meta_loss == "log_validation" else loss


def fresh_unroll_loss(
    meta_arrays, meta_params: MetaParams, task, key: jax.Array, length: int, config: UnrollConfig = UnrollConfig()
) -> jax.Array:
    """Meta-loss of training a fresh optimizee for ``length`` steps; differentiable in ``meta_arrays``.

    Example:
      >>> grads = jax.grad(fresh_unroll_loss)(meta_params.arrays, meta_params, task, key, 100)
    """
    meta = meta_params.replace(arrays=meta_arrays)
    return unroll(meta, task, init_inner_state(meta, task, key, total_steps=length), length, config)[0]
