"""Training a single-shot metanetwork on a zoo, the SGD baselines, and Kuipers et al.'s comparison table."""

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
from l2o_jax.optimizers import MetaParams
from l2o_jax.tasks import Task

SGD_EPOCHS = (25, 50, 100, 150)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a metanetwork is trained on a zoo (Kuipers et al.: Adam on CE + λ·L1 of the output networks).

    Attributes:
      l1: λ; 0 is plain fine-tuning, λ > 0 also sparsifies.
      steps: meta-training steps.
      members_per_step: zoo members (drawn from the train split) per step.
      batch_size: data examples per step, shared by the step's members.
      learning_rate: Adam's learning rate.
      clip_norm: global-norm clipping of the meta-gradient.
      eval_every: steps between validation evaluations; the best one is returned.
      eval_examples: examples of the data's validation split used for selection.
      seed: randomness of member and batch draws and of the metanetwork's initialisation.
    """

    l1: float = 0.0
    steps: int = 300
    members_per_step: int = 8
    batch_size: int = 128
    learning_rate: float = 1e-3
    clip_norm: float = 1.0
    eval_every: int = 50
    eval_examples: int = 512
    seed: int = 0


def meta_objective(meta_params: MetaParams, task: Task, stack, batch, l1: float = 0.0) -> jax.Array:
    """Seed 002's L(φ): mean over a stack of networks of CE(u_θ', batch) + λ·‖θ'‖₁ with ``θ' = f_φ(θ)``.

    Example:
      >>> meta_objective(meta_params, zoo.task(), zoo.split('validation').params, batch, l1=1e-3)
    """
    one = lambda params: objective(task, finetune(meta_params, params), batch, l1)
    return jnp.mean(jax.lax.map(one, stack, batch_size=16))


def validation_batch(task: Task, examples: int) -> tuple[jax.Array, jax.Array]:
    """The first ``examples`` examples of the data's validation split, normalised: a fixed selection batch."""
    x, y = task.data.split('validation')
    return task.data.normalize(x[:examples]), y[:examples]


def train_metanetwork(
    metanet: ScaleGMN,
    zoo: Zoo,
    config: TrainConfig = TrainConfig(),
    *,
    meta_params: MetaParams | None = None,
    progress: bool = True,
) -> tuple[MetaParams, list[dict]]:
    """Trains a ScaleGMN/GMN on the zoo's train split, selecting on its validation split.

    Args:
      metanet: the metanetwork's config; its activation must match the zoo's.
      zoo: a zoo with train and validation members.
      config: the training hyperparameters.
      meta_params: where to start; default ``metanet.init`` on a train member.
      progress: show a tqdm bar.

    Returns:
      ``(meta_params, history)``: the meta-parameters with the lowest validation objective (members of the
      validation split on the data's validation split) and one ``{'step', 'train', 'validation'}`` dict per
      evaluation.

    Example:
      >>> meta_params, history = train_metanetwork(ScaleGMN(activation='tanh'), zoo, TrainConfig(steps=200))
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
    tx = optax.chain(optax.clip_by_global_norm(config.clip_norm), optax.adam(config.learning_rate))
    opt_state = tx.init(meta_params)
    members = min(config.members_per_step, len(train))

    # The task (its data) and the zoo are arguments, not constants baked into the compiled step.
    @jax.jit
    def train_step(meta_params, opt_state, key, task, train_params):
        member_key, batch_key = jax.random.split(key)
        chosen = jax.random.choice(member_key, len(train), (members,), replace=False)
        stack = jax.tree.map(lambda x: x[chosen], train_params)
        loss, grads = jax.value_and_grad(meta_objective)(
            meta_params, task, stack, task.sample_batch(batch_key), config.l1
        )
        updates, opt_state = tx.update(grads, opt_state, meta_params)
        return optax.apply_updates(meta_params, updates), opt_state, loss

    val_batch = validation_batch(task, config.eval_examples)
    validate = jax.jit(meta_objective)
    evaluate = lambda meta: float(validate(meta, task, validation.params, val_batch, config.l1))
    best, best_loss = meta_params, evaluate(meta_params)
    history = [{'step': 0, 'train': None, 'validation': best_loss}]
    losses = []
    bar = tqdm(range(1, config.steps + 1), desc=metanet.name, disable=not progress)
    for step in bar:
        meta_params, opt_state, loss = train_step(
            meta_params, opt_state, jax.random.fold_in(key, step), task, train.params
        )
        losses.append(loss)
        if step % config.eval_every == 0 or step == config.steps:
            val_loss = evaluate(meta_params)
            history.append({'step': step, 'train': float(np.mean(losses)), 'validation': val_loss})
            losses = []
            if val_loss < best_loss:
                best, best_loss = meta_params, val_loss
            bar.set_postfix(train=f'{history[-1]["train"]:.3f}', val=f'{val_loss:.3f}', best=f'{best_loss:.3f}')
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


@functools.lru_cache(maxsize=16)
def _sgd(learning_rate: float, momentum: float) -> optax.GradientTransformation:
    """One optax.sgd object per setting, so that its compiled training loop is reused."""
    return optax.sgd(learning_rate, momentum=momentum)


def sgd_baseline(
    task: Task,
    stack,
    epochs: Sequence[int] = SGD_EPOCHS,
    *,
    learning_rate: float = 0.05,
    momentum: float = 0.9,
    l1: float = 0.0,
    seed: int = 0,
    progress: bool = True,
) -> list[tuple[int, object, float]]:
    """SGD from the same starting networks on the same objective, snapshotted after each of ``epochs``.

    An epoch is ``ceil(train examples / task.batch_size)`` steps. One trajectory serves every snapshot,
    so SGD-25 is the start of SGD-150; times are cumulative, compilation excluded.

    Returns:
      ``[(epochs, stack, seconds_per_network), ...]`` in increasing order of ``epochs``.

    Example:
      >>> for epochs, trained, seconds in sgd_baseline(zoo.task(), zoo.split('test').params): ...
    """
    tx = _sgd(learning_rate, momentum)
    steps_per_epoch = math.ceil(task.data.split('train')[1].shape[0] / task.batch_size)
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
            (target - done) * steps_per_epoch,
            l1=l1,
            opt_state=opt_state,
        )
        jax.block_until_ready(stack)
        elapsed += time.perf_counter() - start
        done = target
        snapshots.append((target, stack, elapsed / members))
    return snapshots


def _summary(metrics: dict, seconds: float | None) -> dict:
    return {
        'avg_accuracy': 100 * float(np.mean(metrics['accuracy'])),
        'max_accuracy': 100 * float(np.max(metrics['accuracy'])),
        'test_loss': float(np.mean(metrics['loss'])),
        'ce': float(np.mean(metrics['ce'])),
        'sparsity': 100 * float(np.mean(metrics['sparsity'])),
        'time_s': seconds,
    }


def compare_methods(
    zoo: Zoo,
    metanets: Sequence[ScaleGMN],
    config: TrainConfig = TrainConfig(),
    *,
    starts: Sequence[MetaParams | None] | None = None,
    sgd_epochs: Sequence[int] = SGD_EPOCHS,
    sgd_learning_rate: float = 0.05,
    sgd_momentum: float = 0.9,
    progress: bool = True,
) -> tuple[list[dict], list[MetaParams]]:
    """Seed 002's table for one zoo and one λ (``config.l1``): initial networks, metanetworks, SGD.

    Every method starts from the zoo's test members and is scored on the data's test split: average and
    max accuracy (%), mean test loss (CE + λ·L1), sparsity (% of parameters below
    ``objective.SPARSITY_THRESHOLD``), and seconds per network (compilation excluded).

    Args:
      zoo: the zoo; metanetworks train on its train split, select on validation, are scored on test.
      metanets: the metanetworks to train (e.g. ScaleGMN and the symmetry-broken GMN).
      config: their training, with λ.
      starts: optional meta-parameters to start each metanetwork from (e.g. the λ = 0 ones for λ > 0).
      sgd_epochs, sgd_learning_rate, sgd_momentum: the SGD baselines.
      progress: show tqdm bars.

    Returns:
      ``(rows, trained)``: one dict per row (``method``, the metrics above, and for metanetworks
      ``latency_s``, one network per call, and the training ``history``), and the selected meta-parameters
      of each metanetwork.

    Example:
      >>> rows, trained = compare_methods(zoo, [ScaleGMN('tanh'), ScaleGMN('tanh', symmetry='none')])
    """
    test = zoo.split('test')
    task = zoo.task(config.batch_size)
    score = lambda stack: evaluate_stack(task, stack, 'test', l1=config.l1)
    rows, trained = [{'method': 'Initial', **_summary(score(test.params), None)}], []
    for metanet, start in zip(metanets, starts or [None] * len(metanets)):
        meta_params, history = train_metanetwork(metanet, zoo, config, meta_params=start, progress=progress)
        new_stack, seconds, latency = timed_finetune(meta_params, test.params)
        label = metanet.name + (' (sym. broken)' if metanet.group == 'none' else '')
        rows.append({'method': label, **_summary(score(new_stack), seconds), 'latency_s': latency, 'history': history})
        trained.append(meta_params)
    for epochs, stack, seconds in sgd_baseline(
        task,
        test.params,
        sgd_epochs,
        learning_rate=sgd_learning_rate,
        momentum=sgd_momentum,
        l1=config.l1,
        seed=config.seed,
        progress=progress,
    ):
        rows.append({'method': f'SGD ({epochs} epochs)', **_summary(score(stack), seconds)})
    return rows, trained
