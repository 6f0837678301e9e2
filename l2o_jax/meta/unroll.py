"""Inner training runs of an optimizee under a learned optimizer, as ``jax.lax.scan`` s.

Everything here is a pure function of (meta-parameters, task, key): batches are drawn inside the scan, the
learned optimizer's transform is built inside the traced function so meta-gradients reach the meta-parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Any
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


def learned_transform_for(meta_params: MetaParams, task) -> optax.GradientTransformationExtraArgs:
    """The learned optimizer configured for the task's architecture (activations for graph families)."""
    return meta_params.config.transform(meta_params, activations=task.activations)


def init_inner_state(meta_params: MetaParams, task, key: jax.Array) -> InnerState:
    """A freshly initialised optimizee and optimizer state.

    Example:
      >>> state = init_inner_state(meta_params, task, jax.random.key(0))
    """
    init_key, run_key = jax.random.split(key)
    params = task.init(init_key)
    opt_state = learned_transform_for(meta_params, task).init(params)
    return InnerState(params=params, opt_state=opt_state, step=jnp.zeros([], jnp.int32), key=run_key)


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


def _inner_step(meta_params: MetaParams, task, config: UnrollConfig):
    tx = learned_transform_for(meta_params, task)
    value_and_grad = _inner_value_and_grad(meta_params, task, config)

    def step(state: InnerState, _):
        key, batch_key = jax.random.split(state.key)
        loss, grads = value_and_grad(state.params, task.sample_batch(batch_key))
        updates, opt_state = tx.update(grads, state.opt_state, state.params, value=loss)
        params = optax.apply_updates(state.params, updates)
        validation = jnp.zeros([], loss.dtype)
        if config.meta_loss == "log_mean_validation":
            validation = task.loss(params, task.sample_batch(jax.random.fold_in(batch_key, 1), "validation"))
        return InnerState(params, opt_state, state.step + 1, key), (loss, validation)

    return jax.checkpoint(step) if config.remat else step


def unroll(
    meta_params: MetaParams, task, state: InnerState, length: int, config: UnrollConfig = UnrollConfig()
) -> tuple[jax.Array, tuple[InnerState, jax.Array]]:
    """Trains the optimizee for ``length`` steps from ``state`` and scores the run.

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
    final, (losses, validation) = jax.lax.scan(_inner_step(meta_params, task, config), state, None, length=length)
    return _score(losses, validation, final, task, config), (final, losses)


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
    return unroll(meta, task, init_inner_state(meta, task, key), length, config)[0]
