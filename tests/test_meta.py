"""Meta-training: it learns, estimators agree with BPTT, PES is unbiased, resume, sharding, NaN guard, selection."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct
from problems import TINY_FAMILY

from l2o_jax import meta
from l2o_jax.features import FeatureConfig
from l2o_jax.meta import PES
from l2o_jax.meta import AntitheticES
from l2o_jax.meta import FullUnrollBPTT
from l2o_jax.meta import MetaTrainConfig
from l2o_jax.meta import MetaTrainingDiverged
from l2o_jax.meta import TruncatedBPTT
from l2o_jax.meta import UnrollConfig
from l2o_jax.meta import checkpoint_steps
from l2o_jax.meta import fresh_unroll_loss
from l2o_jax.meta import load_checkpoint
from l2o_jax.meta import meta_train
from l2o_jax.meta import read_metrics
from l2o_jax.meta import select_best_checkpoint
from l2o_jax.optimizers import MLPL2O
from l2o_jax.optimizers import MetaParams
from l2o_jax.tasks import image_task

# -- a smooth toy: SGD with a learned step size on a quadratic -------------------------------------------------


@struct.dataclass
class Quadratic:
    """``0.5 Σ c_i x_i²`` from ``x ~ 1 + spread·N(0, 1)``; ``offset`` NaN makes every loss NaN."""

    curvature: jax.Array
    offset: jax.Array = 0.0
    spread: float = struct.field(pytree_node=False, default=0.0)
    name: str = struct.field(pytree_node=False, default="quadratic")
    activations = ()

    def init(self, key):
        return {"x": 1.0 + self.spread * jax.random.normal(key, self.curvature.shape)}

    def sample_batch(self, key, split="train"):
        del key, split
        return ()

    def loss(self, params, batch):
        del batch
        return 0.5 * jnp.sum(self.curvature * params["x"] ** 2) + self.offset


def quadratic(dims=4, **kwargs):
    return Quadratic(curvature=jnp.geomspace(0.5, 4.0, dims), name=f"quadratic-{dims}", **kwargs)


@dataclasses.dataclass(frozen=True)
class LearnedStepSGD:
    """The smallest learned optimizer: SGD whose step size ``exp(log_lr)`` is the meta-parameter."""

    init_lr: float = 0.1

    def init(self, key):
        del key
        return MetaParams(arrays={"log_lr": jnp.log(jnp.float32(self.init_lr))}, config=self)

    def transform(self, meta_params, **options):
        del options
        return optax.sgd(jnp.exp(meta_params.arrays["log_lr"]))


@dataclasses.dataclass(frozen=True)
class QuadraticFamily:
    """Quadratics of 3 or 5 dimensions: two architectures, so estimator states are kept per task name."""

    def sample(self, key):
        return quadratic(3 + 2 * int(jax.random.bernoulli(key)), spread=0.2)


class PoisonedFamily:
    """A quadratic whose loss is NaN at the outer steps (0-based) in ``bad``."""

    def __init__(self, bad):
        self.bad, self.calls = set(bad), 0

    def sample(self, key):
        del key
        bad = self.calls in self.bad
        self.calls += 1
        task = quadratic(offset=jnp.float32(jnp.nan if bad else 0.0))
        return task.replace(name=task.name + "-nan") if bad else task


EXACT = UnrollConfig(stop_inner_gradient=False)  # the toy's meta-gradients through the inner gradients too


def _log_lr(tree):
    return float(tree["log_lr"])


# -- a tiny real run, shared by the learning, resume, sharding and model-selection tests -----------------------

LEARNED = MLPL2O(hidden=(8,), features=FeatureConfig(betas=(0.5, 0.9), step_timescales=(1, 10)))  # compiles fast
UNROLL = 10
TINY = MetaTrainConfig(
    LEARNED,
    TINY_FAMILY,
    FullUnrollBPTT(lengths=(UNROLL,), num_tasks=8),
    outer_steps=30,
    meta_lr=3e-2,
    checkpoint_every=10,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return meta_train(TINY, tmp_path_factory.mktemp("tiny"), progress=False)


@jax.jit
def _evaluation_loss(meta_params, task):
    """Mean meta-loss of fresh 10-step runs of ``task`` from fixed keys."""
    keys = jax.random.split(jax.random.key(100), 8)
    return jax.vmap(lambda k: fresh_unroll_loss(meta_params.arrays, meta_params, task, k, UNROLL))(keys).mean()


def test_meta_training_lowers_the_meta_loss_on_fixed_tasks(tiny_run, tiny_task, tmp_path):
    untrained = meta_train(TINY, tmp_path, progress=False, stop_after=0).meta_params
    before = float(_evaluation_loss(jax.device_get(untrained), tiny_task))
    after = float(_evaluation_loss(jax.device_get(tiny_run.meta_params), tiny_task))  # host arrays: one compile
    assert after < before - 0.05, (before, after)
    losses = [r["meta_loss"] for r in tiny_run.metrics]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_select_best_checkpoint_scores_every_checkpoint(tiny_run, tiny_task):
    best, meta_params, scores = select_best_checkpoint(tiny_run.workdir, LEARNED, [tiny_task], length=UNROLL, seeds=1)
    assert sorted(scores) == checkpoint_steps(tiny_run.workdir) == [0, 10, 20, 30]
    assert scores[best] == min(scores.values())
    np.testing.assert_array_equal(
        meta_params.arrays["log_lr"],
        load_checkpoint(tiny_run.workdir, best).arrays["log_lr"],  # the path is enough
    )
    assert [r["step"] for r in read_metrics(os.path.join(tiny_run.workdir, "metrics.jsonl"))] == list(range(1, 31))
    assert os.path.getsize(os.path.join(tiny_run.workdir, "meta_training.png")) > 0
    with open(os.path.join(tiny_run.workdir, "config.json")) as f:
        assert json.load(f)["meta_lr"] == TINY.meta_lr


# -- estimators on the toy ---------------------------------------------------------------------------------------


def _estimate(estimator, task, key=0, meta_params=None):
    meta_params = LearnedStepSGD().init(None) if meta_params is None else meta_params
    init_key, key = jax.random.split(jax.random.key(key))
    state = jax.jit(estimator.init)(meta_params, task, init_key)
    return jax.jit(estimator.estimate)(meta_params, task, state, key)


def test_es_and_pes_agree_with_bptt_on_a_smooth_problem():
    task, length = quadratic(spread=0.2), 10
    bptt = _log_lr(_estimate(FullUnrollBPTT(lengths=(length,), num_tasks=64, unroll=EXACT), task)[1])
    es = _log_lr(_estimate(AntitheticES(length=length, num_pairs=512, sigma=0.05), task)[1])
    pes = _log_lr(_estimate(PES(truncation_length=length, horizon=length, num_pairs=512, sigma=0.05), task)[1])
    assert bptt < 0  # a longer step lowers the loss here
    for estimate in (es, pes):
        assert 0.5 < estimate / bptt < 2.0, (estimate, bptt)


def test_pes_is_unbiased_across_truncations_where_truncated_bptt_is_not():
    # Deterministic inner runs (fixed start), so BPTT over the whole horizon is the exact meta-gradient and
    # PES's only randomness is its perturbations.
    task, truncation, horizon, particles, repeats = quadratic(), 5, 20, 4096, 16
    meta_params = LearnedStepSGD().init(None)
    exact = _log_lr(_estimate(FullUnrollBPTT(lengths=(horizon,), num_tasks=1, unroll=EXACT), task)[1])

    def horizon_averages(estimator, runs):
        """Per run: the mean of the estimates over the truncations of one horizon, from fresh optimizees."""
        init, estimate = jax.jit(estimator.init), jax.jit(estimator.estimate)

        def average(key):
            keys = jax.random.split(key, horizon // truncation + 1)
            state, total = init(meta_params, task, keys[0]), 0.0
            for k in keys[1:]:
                _, grads, state = estimate(meta_params, task, state, k)
                total += _log_lr(grads)
            return total / (horizon // truncation)

        return np.array([average(jax.random.key(run)) for run in range(runs)])

    truncated = TruncatedBPTT(truncation_length=truncation, horizon=horizon, num_tasks=1, unroll=EXACT)
    pes = PES(truncation_length=truncation, horizon=horizon, num_pairs=particles, sigma=0.05)
    truncated_mean = horizon_averages(truncated, 1)[0]  # the inner runs are deterministic: one run is the mean
    pes_runs = horizon_averages(pes, repeats)
    pes_mean, pes_error = pes_runs.mean(), pes_runs.std(ddof=1) / np.sqrt(repeats)
    print(f"exact {exact:.4f} truncated BPTT {truncated_mean:.4f} PES {pes_mean:.4f} ± {pes_error:.4f}")
    assert abs(truncated_mean - exact) > 0.2 * abs(exact), (truncated_mean, exact)  # short-horizon bias
    assert abs(pes_mean - exact) < 4 * pes_error, (pes_mean, pes_error, exact)
    assert 4 * pes_error < 0.2 * abs(exact)  # precise enough to tell PES from truncated BPTT


# -- resume ------------------------------------------------------------------------------------------------------


def _assert_same_arrays(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_resume_after_a_kill_is_bit_identical_and_ignores_half_written_checkpoints(tiny_run, tmp_path):
    meta_train(TINY, tmp_path, progress=False, stop_after=15)  # "killed" 5 steps after the checkpoint at 10
    checkpoints = tmp_path / "checkpoints"
    # orbax writes <step>.orbax-checkpoint-tmp and renames it when complete; fake one left by a kill mid-save.
    shutil.copytree(checkpoints / "10", checkpoints / "20.orbax-checkpoint-tmp")
    assert checkpoint_steps(tmp_path) == [0, 10]
    resumed = meta_train(TINY, tmp_path, progress=False)
    _assert_same_arrays(resumed.meta_params.arrays, tiny_run.meta_params.arrays)
    assert not (checkpoints / "20.orbax-checkpoint-tmp").exists()
    assert [r["step"] for r in resumed.metrics] == list(range(1, 31))


def test_resume_restores_persistent_estimator_states(tmp_path):
    # Outer steps 0-11 draw architectures 5 3 5 3 | 5 5 5 3 | 5 5 3 3: a run killed after step 4 and resumed
    # from checkpoint 4 writes architecture 3's state back untouched into checkpoint 6, which the next resume
    # restores at step 7.
    config = MetaTrainConfig(
        LearnedStepSGD(),
        QuadraticFamily(),
        PES(truncation_length=3, horizon=9, num_pairs=4),
        outer_steps=12,
        meta_lr=1e-2,
        checkpoint_every=2,
    )
    uninterrupted = meta_train(config, tmp_path / "a", progress=False)
    for stop_after in (5, 7, None):
        resumed = meta_train(config, tmp_path / "b", progress=False, stop_after=stop_after)
    _assert_same_arrays(resumed.meta_params.arrays, uninterrupted.meta_params.arrays)
    assert [r["meta_loss"] for r in resumed.metrics] == [r["meta_loss"] for r in uninterrupted.metrics]


# -- sharding ----------------------------------------------------------------------------------------------------

EIGHT_DEVICES = textwrap.dedent(r"""
    import re, sys, jax, numpy as np
    sys.path.insert(0, sys.argv[2])
    from test_meta import TINY, dataclasses
    from l2o_jax.meta import meta_train, shard_tasks, task_mesh
    from l2o_jax.meta.trainer import _estimate
    assert len(jax.devices()) == 8, jax.devices()
    config = dataclasses.replace(TINY, outer_steps=3, checkpoint_every=3)
    result = meta_train(config, sys.argv[1], progress=False)
    meta = result.meta_params
    with task_mesh():
        keys = jax.jit(lambda k: shard_tasks(jax.random.split(k, 8)))(jax.random.key(0))
        program = _estimate.lower(config.estimator, meta, config.task_family.sample(jax.random.key(0)), (),
                                  jax.random.key(0), 10).as_text()
    assert len(keys.sharding.device_set) == 8, keys.sharding
    # The outer step's program splits its per-task keys, hence the vmapped unrolls, over the 8-device mesh.
    assert 'sdy.mesh @mesh = <["tasks"=8]>' in program
    assert re.search(r'sharding_constraint %\w+ <@mesh, \[\{"tasks"\}, \{\}\]> : tensor<8x2xui32>', program)
    assert len(meta.arrays["log_lr"].sharding.device_set) == 8
    np.savez(sys.argv[1] + "/arrays.npz", *jax.tree.leaves(meta.arrays))
""")


def test_eight_devices_give_the_one_device_result(tiny_run, tmp_path):
    del tiny_run  # its compiled outer step serves the one-device run here
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8")
    subprocess.run(
        [sys.executable, "-c", EIGHT_DEVICES, str(tmp_path), os.path.dirname(__file__)],
        env=env,
        check=True,
        timeout=300,
    )
    sharded = np.load(tmp_path / "arrays.npz")
    single = meta_train(
        dataclasses.replace(TINY, outer_steps=3, checkpoint_every=3), tmp_path / "one", progress=False
    ).meta_params
    for i, leaf in enumerate(jax.tree.leaves(single.arrays)):
        np.testing.assert_allclose(sharded[f"arr_{i}"], leaf, rtol=1e-5, atol=1e-7)
    # A checkpoint written on 8 devices loads on one.
    loaded = load_checkpoint(tmp_path, 3, LEARNED)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), loaded.arrays, single.arrays)


# -- NaN guard ---------------------------------------------------------------------------------------------------


def test_non_finite_steps_are_skipped_counted_and_stop_the_run(tmp_path):
    config = MetaTrainConfig(
        LearnedStepSGD(),
        PoisonedFamily(bad={2, 5, 6, 7, 8, 9}),
        FullUnrollBPTT(lengths=(5,), num_tasks=2),
        outer_steps=20,
        meta_lr=1e-2,
        checkpoint_every=1,
        max_consecutive_nonfinite=3,
    )
    with pytest.raises(MetaTrainingDiverged, match="last good checkpoint is step 7 in"):
        meta_train(config, tmp_path, progress=False)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["finite"] for r in records] == [True, True, False, True, True, False, False, False]
    assert [r["skipped"] for r in records] == [0, 0, 1, 1, 1, 2, 3, 4]
    assert checkpoint_steps(tmp_path) == list(range(0, 8))
    log_lr = {s: _log_lr(load_checkpoint(tmp_path, s, LearnedStepSGD()).arrays) for s in range(1, 8)}
    assert log_lr[3] == log_lr[2] and log_lr[6] == log_lr[7] == log_lr[5]  # skipped steps change nothing
    assert log_lr[1] != log_lr[2] != log_lr[4] != log_lr[5]  # the others do


def test_rollout_is_one_loop_for_training_evaluation_and_recording():
    """Evaluating every N steps does not change the run; step inputs reach the rule; observe sees each step."""
    task = image_task("digits", model="mlp", width=8, depth=1, batch_size=16)
    tx = optax.sgd(0.1)
    start = meta.init_state(task, tx.init, jax.random.key(0))
    plain, trace = meta.rollout(task, meta.optax_rule(tx), start, 6)
    evaluated, scored = meta.rollout(task, meta.optax_rule(tx), start, 6, evaluate_every=3, max_eval_examples=64)
    chex.assert_trees_all_close(plain.params, evaluated.params)
    chex.assert_trees_all_close(trace.losses, scored.losses)
    chex.assert_shape(scored.eval_loss, (3,))
    assert scored.eval_loss[-1] < scored.eval_loss[0]

    def rule(grads, state, params, loss, scale):
        return jax.tree.map(lambda g: -scale * g, grads), state, scale * loss

    scales = jnp.array([0.0, 0.0, 1.0])
    final, recorded = meta.rollout(
        task, rule, start, 3, step_inputs=scales, observe=lambda s: s.step, evaluate_every=1, max_eval_examples=64
    )
    chex.assert_trees_all_close(recorded.aux, scales * recorded.losses)
    chex.assert_trees_all_equal(recorded.observed, jnp.arange(1, 4))
    assert recorded.eval_loss[0] == recorded.eval_loss[2] != recorded.eval_loss[3]
    with pytest.raises(ValueError, match="multiple of evaluate_every"):
        meta.rollout(task, rule, start, 3, step_inputs=scales, evaluate_every=2)
