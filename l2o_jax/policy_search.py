"""Training learned optimizer policies as reinforcement learning: REINFORCE with a baseline, ES and PES.

An optimizee's run is an episode: the state is the optimizer's history, the action the step Δx, the reward the
negative objective at every step. Two families of model-free policy search train the policy:

* **parameter-space** exploration, ``AntitheticES`` and ``PES`` from ``l2o_jax.meta.estimators``: perturb the
  policy's parameters, run its mean policy, difference the returns (PES keeps optimizees across truncations and
  is unbiased over long horizons);
* **action-space** exploration, :class:`Reinforce`: sample every step from the Gaussian policy and weight the
  score ``∇ log π(Δx_t | history)`` by the objective still to come, minus a leave-one-out baseline over
  rollouts that share the optimizee's initialisation and batches.

Li & Malik (2017) used guided policy search, which ``l2o_jax.gps.GuidedPolicySearch`` implements (registered
here as ``"gps"``): it fits local linear-Gaussian models and regresses the policy onto their controllers. All
four estimators have the ``init`` / ``estimate`` interface of ``l2o_jax.meta.estimators``, so
``l2o_jax.meta.meta_train`` runs any of them, and report the *loss* (the mean objective, i.e. minus the mean
reward) and a descent direction: its gradient, or for GPS the gradient of the policy's KL to the controllers.

Example:
  >>> from l2o_jax.meta import MetaTrainConfig, meta_train
  >>> config = MetaTrainConfig(LiMalikL2O(hidden=32), family, estimator=Reinforce(length=50), meta_lr=1e-2)
  >>> result = meta_train(config, 'runs/li_malik')
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from l2o_jax.gps import GuidedPolicySearch
from l2o_jax.meta.estimators import PES
from l2o_jax.meta.estimators import AntitheticES
from l2o_jax.meta.unroll import fresh_unroll_loss
from l2o_jax.meta.unroll import init_state
from l2o_jax.meta.unroll import rollout
from l2o_jax.optimizers import MetaParams
from l2o_jax.optimizers import check_meta_params
from l2o_jax.optimizers.li_malik import LiMalikL2O
from l2o_jax.optimizers.li_malik import init_li_malik_state
from l2o_jax.optimizers.li_malik import li_malik_step


def sampled_rollout(
    meta_params: MetaParams, task, task_key: jax.Array, action_key: jax.Array, length: int
) -> tuple[jax.Array, jax.Array]:
    """Trains a fresh optimizee for ``length`` steps with steps sampled from the Gaussian policy.

    ``task_key`` fixes the optimizee's initialisation and batches (drawn as in ``l2o_jax.meta.unroll``),
    ``action_key`` the policy's noise.

    Returns:
      ``(log_probs, losses)``, both ``(length,)``: the log-density of each step's action (differentiable in
      ``meta_params.arrays``) and the objective before it.

    Example:
      >>> log_probs, losses = sampled_rollout(meta_params, task, jax.random.key(0), jax.random.key(1), 50)
    """

    def rule(grads, state, params, loss, step_key):
        return li_malik_step(meta_params, state, grads, params, loss, step_key)

    start = init_state(task, lambda params: init_li_malik_state(params, meta_params.config), task_key)
    # Rematerialised: the backward pass then stores one optimizer state per step, not the LSTM's activations.
    _, trace = rollout(task, rule, start, length, step_inputs=jax.random.split(action_key, length), remat=True)
    log_probs, losses = trace.aux, trace.losses
    return log_probs, losses


def costs_to_go(losses: jax.Array) -> jax.Array:
    """``c_t = Σ_{s>t} losses_s / T`` along the last axis: the part of the mean objective that action ``t`` moves.

    Example:
      >>> costs_to_go(jnp.array([4.0, 3.0, 1.0]))  # [4/3, 1/3, 0]
    """
    after = jnp.flip(jnp.cumsum(jnp.flip(losses, -1), -1), -1) - losses
    return after / losses.shape[-1]


def leave_one_out_baseline(values: jax.Array) -> jax.Array:
    """For each rollout (axis 0), the mean of the others' values."""
    n = values.shape[0]
    return (values.sum(0, keepdims=True) - values) / (n - 1)


@dataclasses.dataclass(frozen=True)
class Reinforce:
    """REINFORCE with a leave-one-out baseline over sampled rollouts of a Gaussian learned optimizer policy.

    Each outer step draws ``num_tasks`` optimizees (initialisation and batches); each is trained
    ``rollouts_per_task`` times with independent action noise. With ``c_t`` the objective still to come after
    step ``t`` (``costs_to_go``) and ``b_t`` the other rollouts' mean of it, the estimate of the mean
    objective's gradient is ``mean_rollouts Σ_t (c_t - b_t) ∇ log π(Δx_t | history_t)``: unbiased, since the
    baseline does not depend on the rollout's own actions.

    Attributes:
      length: inner steps per rollout.
      num_tasks: optimizees per outer step.
      rollouts_per_task: sampled rollouts per optimizee (at least 2, for the baseline).

    Example:
      >>> estimator = Reinforce(length=50, num_tasks=2, rollouts_per_task=4)
      >>> state = estimator.init(meta_params, task, key)
      >>> loss, grads, state = estimator.estimate(meta_params, task, state, key)
    """

    length: int = 50
    num_tasks: int = 2
    rollouts_per_task: int = 4

    def __post_init__(self):
        if self.rollouts_per_task < 2:
            raise ValueError(f"Reinforce needs rollouts_per_task >= 2 for its baseline, got {self.rollouts_per_task}.")

    def init(self, meta_params, task, key):
        del task, key
        check_meta_params(meta_params, LiMalikL2O)
        return ()

    def estimate(self, meta_params: MetaParams, task, state, key):
        task_keys = jax.random.split(key, self.num_tasks)

        def log_probs_and_losses(arrays):
            meta = meta_params.replace(arrays=arrays)

            def per_task(task_key):
                action_keys = jax.random.split(jax.random.fold_in(task_key, 1), self.rollouts_per_task)
                return jax.vmap(lambda k: sampled_rollout(meta, task, task_key, k, self.length))(action_keys)

            return jax.vmap(per_task)(task_keys)  # each (tasks, rollouts, length)

        (log_probs, losses), pullback = jax.vjp(log_probs_and_losses, meta_params.arrays)
        costs = costs_to_go(losses)
        advantages = costs - jax.vmap(leave_one_out_baseline)(costs)
        weights = advantages / (self.num_tasks * self.rollouts_per_task)
        (grads,) = pullback((weights, jnp.zeros_like(losses)))
        return losses.mean(), grads, state


#: The policy-search estimators by name; all share the ``init`` / ``estimate`` interface.
POLICY_SEARCH_ESTIMATORS = {"es": AntitheticES, "pes": PES, "reinforce": Reinforce, "gps": GuidedPolicySearch}


def expected_reward(meta_params: MetaParams, task, keys: jax.Array, length: int, *, sample: bool = False) -> jax.Array:
    """Minus the mean objective over ``length``-step runs of fresh optimizees, averaged over ``keys``.

    Args:
      meta_params: the policy.
      task: an ``l2o_jax.tasks.Task``.
      keys: ``(n,)`` task keys; fixed held-out keys make before/after comparisons exact.
      length: inner steps.
      sample: run the Gaussian policy (as REINFORCE trains it) instead of its mean (as it is used).

    Example:
      >>> heldout = jnp.stack([jax.random.key(10_000 + i) for i in range(8)])
      >>> before = expected_reward(meta_params, task, heldout, 50)
    """
    if sample:
        rollout = lambda k: sampled_rollout(meta_params, task, k, jax.random.fold_in(k, 2), length)[1].mean()
    else:
        rollout = lambda k: fresh_unroll_loss(meta_params.arrays, meta_params, task, k, length)
    return -jnp.mean(jax.vmap(rollout)(keys))
