"""Training a single-shot metanetwork on a zoo until validation stops improving, and the iterative baselines it
is compared with: SGD for whole epochs, SGD and Adam given the single shot's wall-clock, and the SGD steps
needed to match it."""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from l2o_jax.amortized.objective import evaluate_stack
from l2o_jax.amortized.objective import objective
from l2o_jax.amortized.objective import run_optimizer
from l2o_jax.amortized.scalegmn import ScaleGMN
from l2o_jax.amortized.scalegmn import finetune
from l2o_jax.amortized.zoo import Zoo
from l2o_jax.evaluation import FINE_LEARNING_RATES
from l2o_jax.optimizers import MetaParams
from l2o_jax.tasks import Task

SGD_EPOCHS = (25, 50, 100, 150)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a metanetwork is trained on a zoo (Kuipers et al.: Adam on CE + λ·L1 of the output networks).

    Attributes:
      l1: λ; 0 is plain fine-tuning, λ > 0 also sparsifies.
      steps: the most meta-training steps.
      members_per_step: zoo members (drawn from the train split) per step.
      batch_size: data examples per step, shared by the step's members.
      learning_rate: Adam's peak learning rate.
      warmup_steps: linear warm-up from 0 to ``learning_rate``, then cosine decay to ``learning_rate / 100`` at
        ``steps``.
      clip_norm: global-norm clipping of the meta-gradient.
      eval_every: steps between validation evaluations; the best one is returned.
      patience: stop after this many evaluations without a new best validation objective (``None``: never).
      eval_examples: examples of the data's validation split used for selection.
      seed: randomness of member and batch draws and of the metanetwork's initialisation.
    """

    l1: float = 0.0
    steps: int = 300
    members_per_step: int = 8
    batch_size: int = 128
    learning_rate: float = 1e-3
    warmup_steps: int = 0
    clip_norm: float = 1.0
    eval_every: int = 50
    patience: int | None = None
    eval_examples: int = 512
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.eval_every < 1 or not 0 <= self.warmup_steps < max(self.steps, 1):
            raise ValueError(
                f'TrainConfig needs steps >= 1, eval_every >= 1 and 0 <= warmup_steps < steps; got steps='
                f'{self.steps}, eval_every={self.eval_every}, warmup_steps={self.warmup_steps}.'
            )
        if self.patience is not None and self.patience < 1:
            raise ValueError(f'TrainConfig.patience must be None or >= 1, got {self.patience}.')


def meta_objective(
    meta_params: MetaParams, task: Task, stack, batch, l1: float = 0.0, *, members_at_once: int = 16
) -> jax.Array:
    """Seed 002's L(φ): mean over a stack of networks of CE(u_θ', batch) + λ·‖θ'‖₁ with ``θ' = f_φ(θ)``.

    ``members_at_once`` networks are vmapped together, the groups run in a loop; it changes the speed and the
    memory, not the value.

    Example:
      >>> meta_objective(meta_params, zoo.task(), zoo.split('validation').params, batch, l1=1e-3)
    """
    one = lambda params: objective(task, finetune(meta_params, params), batch, l1)
    return jnp.mean(jax.lax.map(one, stack, batch_size=members_at_once))


def validation_batch(task: Task, examples: int) -> tuple[jax.Array, jax.Array]:
    """The first ``examples`` examples of the data's validation split, normalised: a fixed selection batch."""
    x, y = task.data.split('validation')
    return task.data.normalize(x[:examples]), y[:examples]


@functools.lru_cache(maxsize=32)
def _meta_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """One optimizer object per training config (seed aside), so runs that differ in seed share a compilation."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, config.warmup_steps, config.steps, config.learning_rate / 100
    )
    return optax.chain(optax.clip_by_global_norm(config.clip_norm), optax.adam(schedule))


@functools.partial(jax.jit, static_argnames=('tx', 'members'))
def _train_step(meta_params, opt_state, key, task, train_params, l1, *, tx, members):
    # The task (its data) and the zoo are arguments, not constants baked into the compiled step.
    member_key, batch_key = jax.random.split(key)
    population = jax.tree.leaves(train_params)[0].shape[0]
    chosen = jax.random.choice(member_key, population, (members,), replace=False)
    stack = jax.tree.map(lambda x: x[chosen], train_params)
    loss, grads = jax.value_and_grad(meta_objective)(meta_params, task, stack, task.sample_batch(batch_key), l1)
    updates, opt_state = tx.update(grads, opt_state, meta_params)
    return optax.apply_updates(meta_params, updates), opt_state, loss


# The whole validation split, without gradients: one member at a time stays in cache (on a CPU, a 300-member CNN zoo
# at 512 examples scored 1.4-2.7x faster than 16 at once), while the training step's few members are fastest vmapped.
_validation_objective = jax.jit(functools.partial(meta_objective, members_at_once=1))


def train_metanetwork(
    metanet: ScaleGMN,
    zoo: Zoo,
    config: TrainConfig = TrainConfig(),
    *,
    meta_params: MetaParams | None = None,
    progress: bool = True,
) -> tuple[MetaParams, list[dict]]:
    """Trains a ScaleGMN/GMN on the zoo's train split until its validation split stops improving.

    Every ``eval_every`` steps the meta-parameters are scored on the zoo's validation members (CE + λ·L1 of
    their outputs on a fixed batch of the data's validation split); training stops after ``patience``
    evaluations without a new best, or at ``steps``.

    Args:
      metanet: the metanetwork's config; its activation must match the zoo's.
      zoo: a zoo with train and validation members.
      config: the training hyperparameters.
      meta_params: where to start; default ``metanet.init`` on a train member.
      progress: show a tqdm bar.

    Returns:
      ``(meta_params, history)``: the meta-parameters with the lowest validation objective and one
      ``{'step', 'train', 'validation'}`` dict per evaluation (the last one is where training stopped).

    Example:
      >>> config = TrainConfig(steps=5000, patience=5, warmup_steps=100)
      >>> meta_params, history = train_metanetwork(ScaleGMN(activation='tanh'), zoo, config)
      >>> new_params = finetune(meta_params, zoo.split('test').member(0))
    """
    train, validation = zoo.split('train'), zoo.split('validation')
    task = zoo.task(config.batch_size)
    init_key, key = jax.random.split(jax.random.key(config.seed))
    meta_params = metanet.init(init_key, train.member(0)) if meta_params is None else meta_params
    for name, activation in (('metanetwork', metanet.activation), ('start', meta_params.config.activation)):
        if activation != zoo.config.activation:
            raise ValueError(
                f'train_metanetwork: the {name} is for {activation!r} networks but the zoo holds '
                f'{zoo.config.activation!r} networks.'
            )
    tx = _meta_optimizer(dataclasses.replace(config, seed=0))
    # Committed like the step's outputs: uncommitted inputs (fresh from init) would compile every program twice.
    meta_params, opt_state = jax.device_put((meta_params, tx.init(meta_params)), jax.local_devices()[0])
    members = min(config.members_per_step, len(train))
    val_batch = validation_batch(task, config.eval_examples)
    evaluate = lambda meta: float(_validation_objective(meta, task, validation.params, val_batch, config.l1))
    best, best_loss, since_best = meta_params, evaluate(meta_params), 0
    history = [{'step': 0, 'train': None, 'validation': best_loss}]
    losses = []
    bar = tqdm(range(1, config.steps + 1), desc=metanet.name, disable=not progress)
    for step in bar:
        meta_params, opt_state, loss = _train_step(
            meta_params, opt_state, jax.random.fold_in(key, step), task, train.params, config.l1, tx=tx, members=members
        )
        losses.append(loss)
        if step % config.eval_every and step != config.steps:
            continue
        val_loss = evaluate(meta_params)
        history.append({'step': step, 'train': float(np.mean(losses)), 'validation': val_loss})
        losses = []
        if val_loss < best_loss or not np.isfinite(best_loss):
            best, best_loss, since_best = meta_params, val_loss, 0
        else:
            since_best += 1
        bar.set_postfix(train=f'{history[-1]["train"]:.3f}', val=f'{val_loss:.3f}', best=f'{best_loss:.3f}')
        if config.patience is not None and since_best >= config.patience:
            break
    bar.close()
    return best, history


def timed_finetune(meta_params: MetaParams, stack, repeats: int = 3) -> tuple[object, float, float]:
    """Fine-tunes a stack of networks and measures the cost, compilation excluded.

    Returns:
      ``(new_stack, seconds_per_network, latency)``: the vmapped call's best wall time divided by the
      members, and the median wall time of single-network ``finetune`` calls.

    Example:
      >>> new_stack, per_network, latency = timed_finetune(meta_params, zoo.split('test').params)
    """
    batched = jax.jit(jax.vmap(finetune, in_axes=(None, 0)))
    new_stack = jax.block_until_ready(batched(meta_params, stack))
    members = jax.tree.leaves(stack)[0].shape[0]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(batched(meta_params, stack))
        times.append(time.perf_counter() - start)
    singles = []
    for i in range(members):
        params = jax.tree.map(lambda x: x[i], stack)
        jax.block_until_ready(finetune(meta_params, params))  # compiled once; later calls hit the cache
        start = time.perf_counter()
        jax.block_until_ready(finetune(meta_params, params))
        singles.append(time.perf_counter() - start)
    return new_stack, min(times) / members, float(np.median(singles))


#: The iterative baselines, as optax factories taking ``learning_rate`` (SGD with Kuipers et al.'s momentum).
BASELINE_OPTIMIZERS = {
    'sgd': lambda learning_rate: optax.sgd(learning_rate, momentum=0.9),
    'adam': lambda learning_rate: optax.adam(learning_rate),
}


@functools.lru_cache(maxsize=16)
def baseline_optimizer(name: str, learning_rate: float | None = None) -> optax.GradientTransformation:
    """``BASELINE_OPTIMIZERS[name]`` at ``learning_rate``, or with an injected (per-network) learning rate when
    ``None``; one object per setting, so that its compiled training loop is reused.

    Example:
      >>> tx = baseline_optimizer('sgd', 0.05)
    """
    if name not in BASELINE_OPTIMIZERS:
        raise ValueError(f'unknown baseline optimizer {name!r}; expected one of {sorted(BASELINE_OPTIMIZERS)}.')
    if learning_rate is None:
        return optax.inject_hyperparams(BASELINE_OPTIMIZERS[name])(learning_rate=1.0)
    return BASELINE_OPTIMIZERS[name](learning_rate)


def steps_per_epoch(task: Task) -> int:
    """Steps of ``task.batch_size`` examples in one pass over the data's train split."""
    return math.ceil(task.data.split('train')[1].shape[0] / task.batch_size)


def tune_learning_rate(
    name: str,
    task: Task,
    stack,
    steps: int,
    *,
    learning_rates: Sequence[float] = FINE_LEARNING_RATES,
    l1: float = 0.0,
    seed: int = 0,
) -> tuple[float, dict[float, float]]:
    """The learning rate of a baseline with the lowest mean CE + λ·L1 on the data's validation split after
    ``steps`` steps from the networks of ``stack`` (e.g. a zoo's validation members); the whole grid in one
    vmapped run.

    Returns:
      ``(best learning rate, {learning rate: mean validation objective})``; a diverged run counts as ``inf``.

    Example:
      >>> lr, table = tune_learning_rate('sgd', task, zoo.split('validation').select(range(8)).params, 200)
    """
    tx = baseline_optimizer(name)
    members = jax.tree.leaves(stack)[0].shape[0]
    grid = jnp.repeat(jnp.asarray(learning_rates, jnp.float32), members)
    tiled = jax.tree.map(lambda x: jnp.tile(x, (len(learning_rates),) + (1,) * (x.ndim - 1)), stack)
    opt_state = jax.vmap(tx.init)(tiled)
    opt_state.hyperparams['learning_rate'] = grid
    trained, _ = run_optimizer(task, tiled, tx, jax.random.key(seed), steps, l1=l1, opt_state=opt_state)
    loss = evaluate_stack(task, trained, 'validation', l1=l1)['loss'].reshape(len(learning_rates), members)
    loss = np.where(np.isfinite(loss), loss, np.inf).mean(axis=1)
    table = {float(lr): float(v) for lr, v in zip(learning_rates, loss)}
    return float(learning_rates[int(np.argmin(loss))]), table


def seconds_per_step(task: Task, stack, tx: optax.GradientTransformation, *, l1: float = 0.0, steps: int = 20) -> float:
    """Wall seconds per network of one step of ``tx`` vmapped over ``stack`` (best of 3, compilation excluded).

    Example:
      >>> seconds_per_step(task, zoo.split('test').params, baseline_optimizer('sgd', 0.05))
    """
    key = jax.random.key(0)
    members = jax.tree.leaves(stack)[0].shape[0]
    jax.block_until_ready(run_optimizer(task, stack, tx, key, steps, l1=l1))  # compile
    times = []
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(run_optimizer(task, stack, tx, key, steps, l1=l1))
        times.append(time.perf_counter() - start)
    return min(times) / steps / members


def same_time_baseline(
    task: Task,
    stack,
    tx: optax.GradientTransformation,
    seconds_per_network: float,
    *,
    l1: float = 0.0,
    seed: int = 0,
) -> tuple[object, int]:
    """``tx`` run for as many steps as fit in ``seconds_per_network`` (e.g. the single shot's cost), vmapped.

    Returns:
      ``(trained stack, steps)``; ``steps`` is 0 (the stack unchanged) when one step costs more.

    Example:
      >>> new_stack, steps = same_time_baseline(task, test.params, baseline_optimizer('sgd', 0.1), 2e-4)
    """
    steps = int(seconds_per_network // seconds_per_step(task, stack, tx, l1=l1))
    trained, _ = run_optimizer(task, stack, tx, jax.random.key(seed), steps, l1=l1)
    return trained, steps


def steps_to_match(
    task: Task,
    stack,
    tx: optax.GradientTransformation,
    target_accuracy: float,
    *,
    max_steps: int,
    check_every: int = 1,
    l1: float = 0.0,
    seed: int = 0,
) -> int | None:
    """The fewest steps of ``tx`` (a multiple of ``check_every``) after which the stack's mean test accuracy
    reaches ``target_accuracy`` (a fraction), or ``None`` if ``max_steps`` do not.

    Example:
      >>> steps_to_match(task, test.params, baseline_optimizer('sgd', 0.1), 0.42, max_steps=1000, check_every=5)
    """
    key = jax.random.key(seed)
    opt_state = jax.vmap(tx.init)(stack)
    if evaluate_stack(task, stack, 'test', l1=l1)['accuracy'].mean() >= target_accuracy:
        return 0
    for done in range(check_every, max_steps + 1, check_every):
        stack, opt_state = run_optimizer(
            task, stack, tx, jax.random.fold_in(key, done), check_every, l1=l1, opt_state=opt_state
        )
        if evaluate_stack(task, stack, 'test', l1=l1)['accuracy'].mean() >= target_accuracy:
            return done
    return None


def sgd_baseline(
    task: Task,
    stack,
    epochs: Sequence[int] = SGD_EPOCHS,
    *,
    learning_rate: float = 0.05,
    l1: float = 0.0,
    seed: int = 0,
    progress: bool = True,
) -> list[tuple[int, object, float]]:
    """SGD (momentum 0.9) from the same starting networks on the same objective, snapshotted after each of
    ``epochs``.

    An epoch is ``steps_per_epoch(task)`` steps. One trajectory serves every snapshot, so SGD-25 is the start
    of SGD-150; times are cumulative, compilation excluded.

    Returns:
      ``[(epochs, stack, seconds_per_network), ...]`` in increasing order of ``epochs``.

    Example:
      >>> for epochs, trained, seconds in sgd_baseline(zoo.task(), zoo.split('test').params): ...
    """
    tx = baseline_optimizer('sgd', learning_rate)
    members = jax.tree.leaves(stack)[0].shape[0]
    key = jax.random.key(seed)
    opt_state = jax.vmap(tx.init)(stack)
    jax.block_until_ready(run_optimizer(task, stack, tx, key, 0, l1=l1, opt_state=opt_state))  # compile
    snapshots, done, elapsed = [], 0, 0.0
    for target in tqdm(sorted(epochs), desc='SGD', disable=not progress):
        start = time.perf_counter()
        stack, opt_state = run_optimizer(
            task,
            stack,
            tx,
            jax.random.fold_in(key, target),
            (target - done) * steps_per_epoch(task),
            l1=l1,
            opt_state=opt_state,
        )
        jax.block_until_ready(stack)
        elapsed += time.perf_counter() - start
        done = target
        snapshots.append((target, stack, elapsed / members))
    return snapshots
