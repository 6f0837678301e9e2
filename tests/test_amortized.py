"""Single-shot fine-tuning (Kuipers et al.): ScaleGMN symmetries, the GMN control, zoos, training, baselines."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2o_jax import amortized
from l2o_jax import cli
from l2o_jax import io
from l2o_jax.graphs import permute_hidden_neurons
from l2o_jax.graphs import random_hidden_scaling
from l2o_jax.tasks import MLPClassifier
from l2o_jax.tasks import image_task

ARCHITECTURES = [('mlp', 'tanh'), ('mlp', 'relu'), ('cnn', 'tanh'), ('cnn', 'relu')]


@functools.lru_cache(maxsize=None)
def _setup(model, activation, symmetry):
    """A task, a random network with non-zero biases, and random (not zero) meta-parameters; cached so that
    tests of one setting share the compiled metanetwork."""
    task = image_task('digits', model=model, width=5, depth=3, activation=activation, batch_size=16)
    leaves, treedef = jax.tree.flatten(task.init(jax.random.key(0)))
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(treedef, [0.5 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])
    # A large read-out scale makes θ' - θ big enough for symmetry errors to show.
    metanet = amortized.ScaleGMN(activation=activation, symmetry=symmetry, hidden=8, layers=2, output_init_scale=0.3)
    return task, params, metanet.init(jax.random.key(7), params)


def _rel_error(a, b):
    errors = jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y)) / (jnp.max(jnp.abs(y)) + 1e-6)), a, b)
    return max(jax.tree.leaves(errors))


def _function_preserving_scaling(spec, activation, key):
    """Sign flips (tanh) or positive rescalings (ReLU) of every hidden neuron, as a params -> params map."""
    return lambda params: random_hidden_scaling(params, spec, key, amortized.ACTIVATION_SYMMETRY[activation])


@pytest.mark.parametrize('model,activation', ARCHITECTURES)
def test_scalegmn_is_scale_equivariant_and_gmn_is_not(model, activation):
    task, params, scalegmn = _setup(model, activation, 'auto')
    x, _ = task.sample_batch(jax.random.key(2))
    transform = _function_preserving_scaling(scalegmn.config.spec(params), activation, jax.random.key(3))
    moved = transform(params)
    np.testing.assert_allclose(task.apply(moved, x), task.apply(params, x), atol=1e-4, rtol=1e-4)

    out = amortized.finetune(scalegmn, params)
    assert _rel_error(out, params) > 1e-2  # the metanetwork really changes the network
    assert _rel_error(amortized.finetune(scalegmn, moved), transform(out)) < 1e-4
    np.testing.assert_allclose(
        task.apply(amortized.finetune(scalegmn, moved), x), task.apply(out, x), atol=1e-4, rtol=1e-4
    )

    _, _, gmn = _setup(model, activation, 'none')
    assert _rel_error(amortized.finetune(gmn, moved), transform(amortized.finetune(gmn, params))) > 1e-2


@pytest.mark.parametrize('model,activation', ARCHITECTURES[1:3])
@pytest.mark.parametrize('symmetry', ['auto', 'none'])
def test_both_variants_are_permutation_equivariant(model, activation, symmetry):
    task, params, meta_params = _setup(model, activation, symmetry)
    spec = meta_params.config.spec(params)
    rng = np.random.default_rng(0)
    perms = {layer: rng.permutation(spec.widths[layer]) for layer in range(1, len(spec.layers))}

    def permute(p):
        for layer, perm in perms.items():
            p = permute_hidden_neurons(p, spec, layer, perm)
        return p

    x, _ = task.sample_batch(jax.random.key(2))
    np.testing.assert_allclose(task.apply(permute(params), x), task.apply(params, x), atol=1e-5, rtol=1e-5)
    out = amortized.finetune(meta_params, params)
    assert _rel_error(amortized.finetune(meta_params, permute(params)), permute(out)) < 1e-5


@pytest.mark.parametrize('activation', ['tanh', 'relu'])
def test_gmn_control_has_scalegmns_layers_plus_biases_only(activation):
    """The ablation changes one thing: every ScaleGMN parameter exists in the GMN with the same shape; the GMN
    only adds the biases that the symmetry forbids."""
    _, params, _ = _setup('cnn', activation, 'auto')
    shapes = lambda meta: {
        jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(meta.arrays)
    }
    configs = [amortized.ScaleGMN(activation=activation, symmetry=s, hidden=8, layers=2) for s in ('auto', 'none')]
    scalegmn, gmn = (shapes(c.init(jax.random.key(0), params)) for c in configs)
    assert configs[1].architecture == configs[0].group
    assert scalegmn.items() <= gmn.items()
    extra = set(gmn) - set(scalegmn)
    assert extra and all(name.endswith("['bias']") for name in extra)


def test_finetune_keeps_structure_and_names_bad_inputs():
    _, params, meta_params = _setup('mlp', 'relu', 'auto')
    out = amortized.finetune(meta_params, params)
    assert jax.tree.structure(out) == jax.tree.structure(params)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), out) == jax.tree.map(lambda a: (a.shape, a.dtype), params)
    wider_mlp = MLPClassifier(hidden=(9, 9), num_classes=10, activation='relu')
    wider = wider_mlp.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    assert jax.tree.map(jnp.shape, amortized.finetune(meta_params, wider)) == jax.tree.map(jnp.shape, wider)
    other_inputs = MLPClassifier(hidden=(5, 5), num_classes=10).init(jax.random.key(0), jnp.zeros((1, 7)))
    with pytest.raises(ValueError, match='inputs'):
        amortized.finetune(meta_params, other_inputs)
    with pytest.raises(TypeError, match='ScaleGMN'):
        amortized.finetune({'net': meta_params.arrays}, params)
    with pytest.raises(ValueError, match='symmetry'):
        amortized.ScaleGMN(activation='gelu')


ZOO = dict(
    dataset='digits',
    model='mlp',
    activation='tanh',
    width=6,
    depth=3,
    min_steps=20,
    max_steps=60,
    lr_range=(3e-3, 3e-2),
    init_scale_range=(0.5, 2.0),
    weight_decay_range=(1e-4, 1e-2),
    batch_size=32,
)


@pytest.fixture(scope='module')
def tiny_zoo():
    return amortized.build_zoo(members=16, split_fractions=(0.5, 0.25, 0.25), progress=False, **ZOO)


def test_zoo_splits_metadata_and_round_trip(tiny_zoo, tmp_path):
    zoo = tiny_zoo
    splits = [m['split'] for m in zoo.members]
    assert {s: splits.count(s) for s in amortized.zoo.ZOO_SPLITS} == {'train': 8, 'validation': 4, 'test': 4}
    for name in ('steps', 'learning_rate', 'weight_decay', 'init_scale'):
        assert len({m[name] for m in zoo.members}) > 1, name
    assert all(0.0 <= m['test_accuracy'] <= 1.0 and m['train_loss'] > 0 for m in zoo.members)
    test = zoo.split('test')
    assert len(test) == 4 and jax.tree.leaves(test.params)[0].shape[0] == 4
    path = io.save_zoo(tmp_path / 'zoo', zoo)
    assert (tmp_path / 'zoo' / 'members.csv').read_text().splitlines()[0].startswith('index,split')
    loaded = io.load_zoo(path)
    assert loaded.config == zoo.config and loaded.members == zoo.members
    assert _rel_error(loaded.params, zoo.params) == 0.0
    assert io.cached_zoo(path, zoo.config)[1]  # the same config: reused, not rebuilt
    with pytest.raises(FileNotFoundError, match='zoo'):
        io.load_zoo(tmp_path / 'missing')
    with pytest.raises(ValueError, match='split'):
        zoo.split('dev')
    with pytest.raises(ValueError, match='weight_decay_range'):
        amortized.ZooConfig(weight_decay_range=(0.0, 1e-3))


def test_training_lowers_the_objective_on_held_out_members(tiny_zoo):
    zoo = tiny_zoo
    metanet = amortized.ScaleGMN(activation='tanh', hidden=8, layers=1)
    config = amortized.TrainConfig(steps=20, members_per_step=4, batch_size=64, learning_rate=1e-2, eval_every=10)
    task = zoo.task(config.batch_size)
    test = zoo.split('test')
    batch = amortized.train.validation_batch(task, 256)
    start = metanet.init(jax.random.key(0), zoo.split('train').member(0))
    before = amortized.meta_objective(start, task, test.params, batch)
    meta_params, history = amortized.train_metanetwork(metanet, zoo, config, meta_params=start, progress=False)
    after = amortized.meta_objective(meta_params, task, test.params, batch)
    assert [h['step'] for h in history] == [0, 10, 20]
    assert float(after) < float(before) - 1e-2
    # Early stopping: with a zero learning rate the validation objective never improves.
    frozen = dataclasses.replace(config, learning_rate=0.0, steps=1000, eval_every=5, patience=2)
    _, history = amortized.train_metanetwork(metanet, zoo, frozen, meta_params=start, progress=False)
    assert [h['step'] for h in history] == [0, 5, 10]
    with pytest.raises(ValueError, match='relu'):
        amortized.train_metanetwork(amortized.ScaleGMN(activation='relu'), zoo, config, progress=False)
    with pytest.raises(ValueError, match='patience'):
        amortized.TrainConfig(patience=0)


def test_iterative_baselines_tuning_same_time_and_steps_to_match(tiny_zoo):
    test = tiny_zoo.split('test')
    task = tiny_zoo.task(64)
    before = amortized.evaluate_stack(task, test.params, 'test', l1=1e-3)
    snapshots = amortized.sgd_baseline(task, test.params, (1, 2), learning_rate=0.05, l1=1e-3, progress=False)
    assert [epochs for epochs, _, _ in snapshots] == [1, 2]
    assert snapshots[0][2] <= snapshots[1][2]
    after = amortized.evaluate_stack(task, snapshots[1][1], 'test', l1=1e-3)
    assert after['loss'].mean() < before['loss'].mean()

    best, table = amortized.tune_learning_rate(
        'sgd', task, tiny_zoo.split('validation').params, 20, learning_rates=(1e-5, 0.05, 1e3)
    )
    assert best == 0.05 and table[1e-5] > table[0.05] and table[1e3] > table[0.05]

    sgd = amortized.baseline_optimizer('sgd', 0.05)
    unchanged, steps = amortized.same_time_baseline(task, test.params, sgd, 0.0)
    assert steps == 0 and _rel_error(unchanged, test.params) == 0.0
    target = float(after['accuracy'].mean())
    matched = amortized.steps_to_match(task, test.params, sgd, target, max_steps=200, check_every=10)
    assert matched is not None and 0 < matched <= 200 and matched % 10 == 0
    assert amortized.steps_to_match(task, test.params, sgd, 1.01, max_steps=20, check_every=10) is None


def test_zoo_cli_writes_a_loadable_zoo_and_reuses_it(tmp_path, capsys):
    out = tmp_path / 'cli_zoo'
    flags = [
        '--dataset',
        'digits',
        '--model',
        'mlp',
        '--activation',
        'tanh',
        '--width',
        '6',
        '--depth',
        '3',
        '--min-steps',
        '1',
        '--max-steps',
        '3',
        '--batch-size',
        '32',
        '--members',
        '16',
        '--out',
        str(out),
    ]
    assert cli.main(['zoo', *flags]) == 0
    zoo = io.load_zoo(out)
    assert len(zoo) == 16 and zoo.spec.widths == (64, 6, 6, 10)
    assert max(m['steps'] for m in zoo.members) <= 3
    captured = capsys.readouterr()
    assert str(out) in captured.out and 'built' in captured.err
    assert cli.main(['zoo', *flags]) == 0
    assert 'reused' in capsys.readouterr().err


def test_run_optimizer_stops_each_member_after_its_own_steps():
    """A member given ``active_steps=k`` ends where the same member trained for exactly ``k`` steps ends (the same
    batches); one step fewer or more would differ."""
    task = image_task('digits', model='mlp', width=4, depth=2, batch_size=8)
    stack = jax.vmap(task.init)(jax.random.split(jax.random.key(0), 3))
    tx = amortized.baseline_optimizer('adam', 0.05)
    run = lambda steps, **kw: amortized.run_optimizer(task, stack, tx, jax.random.key(1), steps, l1=1e-3, **kw)[0]
    active = [2, 4, 1]
    stopped = run(5, active_steps=np.array(active))
    for member, steps in enumerate(active):
        member_of = lambda stack: jax.tree.map(lambda x: x[member], stack)
        assert _rel_error(member_of(stopped), member_of(run(steps))) == 0.0
        for other in (steps - 1, steps + 1):
            assert _rel_error(member_of(stopped), member_of(run(other))) > 1e-4
