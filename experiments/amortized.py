"""Seed 002's study: single-shot ScaleGMN fine-tuning against the GMN control and iterative baselines, on zoos.

For every architecture (MLP, CNN) and activation (tanh, ReLU) a zoo of thousands of networks is built (or
reloaded) and, over several training seeds, a ScaleGMN-B and its GMN-B control (the same layers with the symmetry
constraints switched off) are trained on its train members until their validation members stop improving. On its
test members they are compared with the initial networks, with SGD and Adam given the single shot's wall-clock,
with the SGD steps that match the single shot's accuracy, and with SGD for 25-150 epochs (learning rates tuned on
validation members over the fine x2 grid). A ScaleGMN trained further on CE + λ·L1 gives the sparsity row.

Usage:
  python -m experiments.amortized --scale smoke --workdir /work/runs/amortized/smoke   # docs/results/amortized_smoke
  python -m experiments.amortized --scale paper --data-dir ~/tensorflow_datasets        # wants an accelerator
  python -m experiments.amortized --scale paper --dry-run                               # tiny, seconds per stage

Every stage is cached in ``--workdir`` (zoos, meta-parameters, one result file per zoo), so a killed run resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time

import jax
import numpy as np

from experiments import report
from l2o_jax import amortized
from l2o_jax import evaluation
from l2o_jax import graphs
from l2o_jax import io
from l2o_jax.tasks import DatasetUnavailableError

VARIANTS = {'scalegmn': 'auto', 'gmn': 'none'}
ACTIVATIONS = ('tanh', 'relu')

#: Configs as data. ``smoke`` takes about 2.5 hours of one CPU core; ``paper`` follows seed 002's CNN Zoo
#: setting (CIFAR10 in grey scale, small tanh/ReLU networks) and wants an accelerator.
SCALES = {
    'smoke': {
        'dataset': 'digits',
        # Zoo training costs members x steps x batch; MLPs are ~40x cheaper per step than CNNs.
        'architectures': {
            'mlp': {'width': 8, 'depth': 3, 'members': 4000, 'max_steps': 150},
            'cnn': {'width': 8, 'depth': 2, 'members': 2000, 'max_steps': 60},
        },
        'zoo': {
            'min_steps': 1,
            'lr_range': (3e-4, 1e-2),
            'init_scale_range': (0.5, 2.0),
            'weight_decay_range': (1e-4, 1e-1),
            'batch_size': 32,
        },
        'metanet': {'hidden': 32, 'layers': 3},
        # Until validation stops improving (3 validations 100 steps apart without a new best), within a budget that
        # keeps the study (4 zoos x 2 variants x 3 seeds + baselines) near 2.5 hours of one core. Short runs on
        # validation members found nothing faster: on CNN-tanh after 300 steps validation CE 1.93 at 3e-3, 1.86 at
        # 1e-2, 2.14 at 3e-2, 2.13 with 32 examples per step (cheaper) and 1.81 with 16 members (twice the cost);
        # but on CNN-ReLU 1e-2 collapses both variants to the uniform prediction (CE ln 10) where 3e-3 keeps improving.
        'train': {
            'steps': 2000,
            'members_per_step': 8,
            'batch_size': 128,
            'learning_rate': 3e-3,
            'warmup_steps': 50,
            'eval_every': 100,
            'patience': 3,
        },
        # A ScaleGMN step on the 64-8-8-10 MLP's 656 edges costs ~2x one on the CNN's 152 edges at half the members.
        # On the MLP-tanh zoo's validation members, 3e-3 with 4 members beat 1e-2 with 8 after 300 steps (CE 1.57
        # against 1.61).
        'train_overrides': {'mlp': {'steps': 1500, 'members_per_step': 4}},
        'seeds': 3,
        'l1': 1e-3,
        'l1_train': {'steps': 100, 'learning_rate': 1e-3, 'warmup_steps': 0, 'eval_every': 25},
        # SGD for whole epochs costs epochs x train examples per network: run on the first test members only.
        'sgd_members': {'mlp': 64, 'cnn': 8},
        'baseline_batch_size': 128,
        'sgd_epochs': amortized.SGD_EPOCHS,
        'tune_members': 4,
        'match_check_every': 5,
    },
    'paper': {
        'dataset': 'cifar10_gray',
        'architectures': {
            'mlp': {'width': 32, 'depth': 3, 'members': 4000, 'max_steps': 3000},
            'cnn': {'width': 16, 'depth': 3, 'members': 4000, 'max_steps': 3000},
        },
        'zoo': {
            'min_steps': 50,
            'lr_range': (1e-4, 3e-3),
            'init_scale_range': (0.5, 2.0),
            'weight_decay_range': (1e-4, 1e-1),
            'batch_size': 128,
        },
        'metanet': {'hidden': 64, 'layers': 4},
        'train': {
            'steps': 20000,
            'members_per_step': 32,
            'batch_size': 256,
            'learning_rate': 1e-3,
            'warmup_steps': 500,
            'eval_every': 500,
            'patience': 5,
            'eval_examples': 2048,
        },
        'seeds': 3,
        'l1': 1e-4,
        'l1_train': {'steps': 5000, 'learning_rate': 3e-4, 'warmup_steps': 0, 'eval_every': 500},
        'sgd_members': {'mlp': 64, 'cnn': 64},
        'sgd_epochs': amortized.SGD_EPOCHS,
        'tune_members': 8,
        'match_check_every': 50,
    },
}


def dry_run_config(config: dict) -> dict:
    """``config``'s dataset, architectures (kinds and depths), λ and stages at a tiny size: zoos of 12 networks of
    width 4 trained for 1-3 steps, 2 metanetwork steps, 2 seeds, SGD for 1 and 2 epochs."""
    return {
        **config,
        'architectures': {
            m: {**a, 'width': 4, 'members': 12, 'max_steps': 3} for m, a in config['architectures'].items()
        },
        'zoo': {**config['zoo'], 'min_steps': 1, 'batch_size': 8},
        'metanet': {'hidden': 8, 'layers': 1},
        'train': {
            **config['train'],
            'steps': 2,
            'members_per_step': 2,
            'batch_size': 8,
            'warmup_steps': 0,
            'eval_every': 1,
            'eval_examples': 16,
        },
        'train_overrides': {},
        'seeds': 2,
        'l1_train': {**config['l1_train'], 'steps': 2, 'eval_every': 1},
        'longer': config.get('longer') and {**config['longer'], 'steps': 3, 'eval_every': 1},
        'sgd_members': {m: 2 for m in config['sgd_members']},
        'sgd_epochs': (1, 2),
        'tune_members': 2,
        'match_check_every': 1,
    }


def zoo_name(config: dict, model: str, activation: str) -> str:
    return f'{config["dataset"]}-{model}-{activation}'


def zoo_config(config: dict, model: str, activation: str, data_dir: str | None) -> amortized.ZooConfig:
    return amortized.ZooConfig(
        dataset=config['dataset'],
        model=model,
        activation=activation,
        data_dir=data_dir,
        **{**config['zoo'], **config['architectures'][model]},
    )


def trained_metanet(
    zoo: amortized.Zoo,
    metanet: amortized.ScaleGMN,
    train: amortized.TrainConfig,
    path: str,
    progress: bool,
    start=None,
) -> tuple[object, list[dict], float]:
    """The metanetwork trained with ``train`` (reloaded from ``path`` when it was trained with the same config),
    its history and its training wall time."""
    record = {'metanet': dataclasses.asdict(metanet), 'train': dataclasses.asdict(train)}
    record = json.loads(json.dumps(record))  # tuples as lists, as they come back from the file
    if os.path.isdir(path):
        metadata = io.load_info(path)['metadata']
        if metadata.get('record') == record:
            return io.load_meta_params(path), metadata['history'], metadata['seconds']
    started = time.perf_counter()
    meta_params, history = amortized.train_metanetwork(metanet, zoo, train, meta_params=start, progress=progress)
    seconds = time.perf_counter() - started
    io.save_meta_params(path, meta_params, metadata={'record': record, 'history': history, 'seconds': seconds})
    return meta_params, history, seconds


def train_config(config: dict, model: str, **fields) -> amortized.TrainConfig:
    """The scale's metanetwork training for one architecture."""
    return amortized.TrainConfig(**{**config['train'], **config.get('train_overrides', {}).get(model, {}), **fields})


def metanet_run(config: dict, zoo: amortized.Zoo, variant: str, seed: int, workdir: str, progress: bool):
    """One variant's training seed on one zoo (cached under ``workdir/meta``): meta-parameters, history, seconds."""
    cfg = zoo.config
    metanet = amortized.ScaleGMN(activation=cfg.activation, symmetry=VARIANTS[variant], **config['metanet'])
    path = os.path.join(workdir, 'meta', zoo_name(config, cfg.model, cfg.activation), f'{variant}-seed{seed}')
    return trained_metanet(zoo, metanet, train_config(config, cfg.model, seed=seed), path, progress)


def stage_key(*inputs) -> str:
    """A short digest of a cached stage's inputs (JSON-ready values or dataclasses): a changed input is a new file."""
    record = [dataclasses.asdict(x) if dataclasses.is_dataclass(x) else x for x in inputs]
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _percent(values) -> list:
    return np.round(100 * np.asarray(values, np.float64), 3).tolist()


def summary(accuracy) -> dict:
    """Mean accuracy (%, from fractions) with its spread (std over members; for ``[seeds, members]`` also the std
    of the seeds' means)."""
    accuracy = 100 * np.asarray(accuracy, np.float64)
    out = {'accuracy': float(accuracy.mean()), 'members_std': float(accuracy.std(axis=-1).mean())}
    if accuracy.ndim == 2:
        out['seeds_std'] = float(accuracy.mean(axis=1).std())
        out['per_seed'] = accuracy.mean(axis=1).round(2).tolist()
    return out


def comparison(a, b) -> dict:
    """``a - b`` (%, paired by member) with its 95 % bootstrap interval over seeds and members."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a = a[None] if a.ndim == 1 else a
    difference = a - (b if b.ndim == 1 else b[: len(a)])
    return dataclasses.asdict(evaluation.compare(difference, np.zeros(difference.shape[1])))


def variant_entry(config: dict, zoo: amortized.Zoo, variant: str, workdir: str, progress: bool) -> tuple[dict, object]:
    """One variant over the scale's training seeds on a zoo: its entry (test accuracy per seed and member, cost,
    training) and the first seed's meta-parameters."""
    test = zoo.split('test')
    task = zoo.task(train_config(config, zoo.config.model).batch_size)
    initial = amortized.evaluate_stack(task, test.params, 'test')['accuracy'].mean()
    runs, first = [], None
    for seed in range(config['seeds']):
        meta_params, history, seconds = metanet_run(config, zoo, variant, seed, workdir, progress)
        if first is None:
            first = meta_params
        new_stack, per_network, latency = amortized.timed_finetune(meta_params, test.params)
        best = min(history, key=lambda h: h['validation'])
        runs.append(
            {
                'accuracy': amortized.evaluate_stack(task, new_stack, 'test')['accuracy'],
                'steps_trained': history[-1]['step'],
                'best_step': best['step'],
                'train_seconds': round(seconds, 1),
                'seconds_per_network': per_network,
                'latency_s': latency,
                'history': history,
            }
        )
        print(
            f'   {first.config.name} seed {seed}: {100 * runs[-1]["accuracy"].mean():.1f} % '
            f'(initial {100 * initial:.1f} %), {history[-1]["step"]} steps',
            file=sys.stderr,
        )
    stacked = np.stack([r.pop('accuracy') for r in runs])
    entry = {
        'name': first.config.name,
        'meta_parameters': int(first.num_parameters),
        **summary(stacked),
        'per_seed_member': [_percent(row) for row in stacked],
        'runs': runs,
    }
    return entry, first


def metanet_comparisons(result: dict) -> dict:
    """ScaleGMN against GMN, and each against the initial networks, from a zoo's result."""
    scalegmn, gmn = (np.asarray(result['metanets'][v]['per_seed_member']) / 100 for v in ('scalegmn', 'gmn'))
    initial = np.asarray(result['initial']['per_member']) / 100
    return {
        'scalegmn_vs_gmn': comparison(scalegmn, gmn),
        'scalegmn_vs_initial': comparison(scalegmn, initial),
        'gmn_vs_initial': comparison(gmn, initial),
    }


def reparametrised_entry(config: dict, zoo: amortized.Zoo, workdir: str, progress: bool) -> dict:
    """Each variant's test accuracy when every test member first moves to a random point of its symmetry orbit
    (``graphs.random_hidden_scaling``: sign flips for tanh, rescalings by up to e either way for ReLU): the same
    functions, other parameters. ScaleGMN-B gives the same networks by construction; how far GMN-B moves says
    whether it learned the symmetry from the zoo's data."""
    test = zoo.split('test')
    task = zoo.task(train_config(config, zoo.config.model).batch_size)
    group = amortized.ACTIVATION_SYMMETRY[zoo.config.activation]
    keys = jax.random.split(jax.random.key(2024), len(test))
    moved = jax.vmap(lambda p, k: graphs.random_hidden_scaling(p, zoo.spec, k, group))(test.params, keys)
    initial = amortized.evaluate_stack(task, test.params, 'test')['accuracy']
    initial_moved = amortized.evaluate_stack(task, moved, 'test')['accuracy']
    # Float rounding may flip a near-tied prediction; a transform that changed the functions moves far more.
    if not np.allclose(initial, initial_moved, atol=1e-2):
        raise RuntimeError(f'the {group} transform changed the test members\' accuracy on {zoo.config}')
    entry = {'group': group, 'log_range': 1.0 if group == 'scale' else None}
    per_variant = {}
    for variant in VARIANTS:
        original, shifted = [], []
        for seed in range(config['seeds']):
            meta_params, _, _ = metanet_run(config, zoo, variant, seed, workdir, progress)
            finetuned = jax.vmap(amortized.finetune, in_axes=(None, 0))
            original.append(amortized.evaluate_stack(task, finetuned(meta_params, test.params), 'test')['accuracy'])
            shifted.append(amortized.evaluate_stack(task, finetuned(meta_params, moved), 'test')['accuracy'])
        per_variant[variant] = np.stack(shifted)
        entry[variant] = {**summary(per_variant[variant]), 'vs_original': comparison(shifted, np.stack(original))}
    entry['scalegmn_vs_gmn'] = comparison(per_variant['scalegmn'], per_variant['gmn'])
    return entry


def zoo_reparametrised(
    config: dict, model: str, activation: str, workdir: str, data_dir: str | None, progress: bool
) -> dict:
    """``reparametrised_entry`` for one zoo, cached in ``workdir/results``."""
    name = zoo_name(config, model, activation)
    zoo_cfg = zoo_config(config, model, activation, data_dir)
    key = stage_key(zoo_cfg, config['metanet'], train_config(config, model), config['seeds'])
    zoo, _ = io.cached_zoo(os.path.join(workdir, 'zoos', name), zoo_cfg, progress=progress)
    path = os.path.join(workdir, 'results', f'{name}-reparametrised-{key}.json')
    return io.cached_json(path, lambda: reparametrised_entry(config, zoo, workdir, progress))


def study_zoo(config: dict, model: str, activation: str, workdir: str, data_dir: str | None, progress: bool) -> dict:
    """One zoo's results, cached in ``workdir/results/<zoo>.json``."""
    name = zoo_name(config, model, activation)
    cache = os.path.join(workdir, 'results', f'{name}.json')
    zoo_cfg = zoo_config(config, model, activation, data_dir)
    if os.path.exists(cache):
        with open(cache) as f:
            cached = json.load(f)
        if cached['zoo']['config'] == json.loads(json.dumps(dataclasses.asdict(zoo_cfg))):
            return cached
    started = time.perf_counter()
    zoo, reused = io.cached_zoo(os.path.join(workdir, 'zoos', name), zoo_cfg, progress=progress)
    zoo_seconds = time.perf_counter() - started
    print(f'== {name}: {len(zoo)} members ({"reused" if reused else f"built in {zoo_seconds:.0f} s"})', file=sys.stderr)
    test, validation = zoo.split('test'), zoo.split('validation')
    train = train_config(config, model)
    # The baselines' batch is their own: a metanetwork recipe with another batch leaves them (and their cache) as is.
    task = zoo.task(config.get('baseline_batch_size', train.batch_size))
    baselines = os.path.join(workdir, 'baselines', name)
    accuracy = lambda stack, l1=0.0: amortized.evaluate_stack(task, stack, 'test', l1=l1)
    initial = accuracy(test.params)
    result = {
        'zoo': {
            'config': dataclasses.asdict(zoo_cfg),
            'members': len(zoo),
            'splits': {s: len(zoo.split(s)) for s in ('train', 'validation', 'test')},
            'build_seconds': None if reused else round(zoo_seconds, 1),
        },
        'initial': {**summary(initial['accuracy']), 'per_member': _percent(initial['accuracy'])},
        'metanets': {},
    }

    trained = {}
    for variant in VARIANTS:
        result['metanets'][variant], trained[variant] = variant_entry(config, zoo, variant, workdir, progress)
    result['comparisons'] = metanet_comparisons(result)

    # The single shot's cost: one vmapped ScaleGMN call over the test members, per network (seed 0's timing).
    shot_seconds = result['metanets']['scalegmn']['runs'][0]['seconds_per_network']
    tune_stack = validation.select(range(min(config['tune_members'], len(validation)))).params
    for name_ in ('sgd', 'adam'):
        step_seconds = amortized.seconds_per_step(task, test.params, amortized.baseline_optimizer(name_, 0.01))
        steps = int(shot_seconds // step_seconds)
        learning_rate = amortized.tune_learning_rate(name_, task, tune_stack, steps)[0] if steps else None
        new_stack, steps = (
            amortized.same_time_baseline(
                task, test.params, amortized.baseline_optimizer(name_, learning_rate), shot_seconds
            )
            if steps
            else (test.params, 0)
        )
        same = accuracy(new_stack)['accuracy']
        result[f'{name_}_same_time'] = {
            **summary(same),
            'steps': steps,
            'seconds_per_step': step_seconds,
            'learning_rate': learning_rate,
            'per_member': _percent(same),
        }
    scalegmn = np.asarray(result['metanets']['scalegmn']['per_seed_member']) / 100
    result['comparisons']['scalegmn_vs_sgd_same_time'] = comparison(
        scalegmn, np.asarray(result['sgd_same_time']['per_member']) / 100
    )

    # SGD for whole epochs on the first test members, at the learning rate tuned for the shortest budget.
    subset = list(range(min(config['sgd_members'][model], len(test))))
    sgd_stack = test.select(subset).params
    epochs = tuple(config['sgd_epochs'])
    spe = amortized.steps_per_epoch(task)
    stage = stage_key(zoo_cfg, task.batch_size, epochs, len(subset), config['tune_members'])

    def sgd_epochs() -> dict:
        learning_rate, table = amortized.tune_learning_rate('sgd', task, tune_stack, min(epochs) * spe)
        snapshots = amortized.sgd_baseline(task, sgd_stack, epochs, learning_rate=learning_rate, progress=progress)
        rows = [
            {'epochs': count, **summary(accuracy(stack)['accuracy']), 'seconds_per_network': seconds}
            for count, stack, seconds in snapshots
        ]
        return {'learning_rate': learning_rate, 'tuning': table, 'rows': rows}

    sgd = io.cached_json(os.path.join(baselines, f'sgd-epochs-{stage}.json'), sgd_epochs)
    learning_rate, table, sgd_rows = sgd['learning_rate'], sgd['tuning'], sgd['rows']
    target = float(scalegmn[:, subset].mean())
    matched = amortized.steps_to_match(
        task,
        sgd_stack,
        amortized.baseline_optimizer('sgd', learning_rate),
        target,
        max_steps=min(epochs) * spe,
        check_every=config['match_check_every'],
    )
    result['sgd_epochs'] = {
        'members': len(subset),
        'learning_rate': learning_rate,
        'tuning': table,
        'steps_per_epoch': spe,
        'rows': sgd_rows,
        'initial': summary(initial['accuracy'][subset]),
        'scalegmn': summary(scalegmn[:, subset]),
    }
    result['steps_to_match'] = {'target': 100 * target, 'steps': matched, 'max_steps': min(epochs) * spe}
    result['steps_to_match']['seconds_per_network'] = (
        None if matched is None else matched * result['sgd_same_time']['seconds_per_step']
    )

    # λ > 0: ScaleGMN (seed 0) trained further on CE + λ·L1, against SGD on the same objective.
    l1 = config['l1']
    sparse_train = dataclasses.replace(train, l1=l1, patience=None, **config['l1_train'])
    sparse, _, _ = trained_metanet(
        zoo,
        trained['scalegmn'].config,
        sparse_train,
        os.path.join(workdir, 'meta', name, 'scalegmn-l1-seed0'),
        progress,
        start=trained['scalegmn'],
    )
    row = lambda metrics: {
        'accuracy': 100 * float(metrics['accuracy'].mean()),
        'loss': float(metrics['loss'].mean()),
        'sparsity': 100 * float(metrics['sparsity'].mean()),
    }
    sparse_stack = jax.vmap(amortized.finetune, in_axes=(None, 0))(sparse, test.params)

    def sgd_l1() -> dict:
        snapshots = amortized.sgd_baseline(
            task, sgd_stack, (max(epochs),), learning_rate=learning_rate, l1=l1, progress=progress
        )
        return row(accuracy(snapshots[0][1], l1))

    result['sparse'] = {
        'l1': l1,
        'threshold': amortized.SPARSITY_THRESHOLD,
        'initial': row(accuracy(test.params, l1)),
        'scalegmn': row(accuracy(sparse_stack, l1)),
        'sgd': {
            'epochs': max(epochs),
            'members': len(subset),
            **io.cached_json(os.path.join(baselines, f'sgd-l1-{l1:g}-{stage}.json'), sgd_l1),
        },
    }
    result['seconds'] = round(time.perf_counter() - started, 1)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    with open(cache, 'w') as f:
        json.dump(result, f)
    return result


def longer_training(config: dict, workdir: str, data_dir: str | None, progress: bool) -> dict:
    """``config['longer']``: each variant (seed 0) trained ``steps`` steps without early stopping on one zoo."""
    longer = config['longer']
    model, activation = longer['zoo'].split('-')[-2:]
    zoo, _ = io.cached_zoo(
        os.path.join(workdir, 'zoos', longer['zoo']), zoo_config(config, model, activation, data_dir), progress=progress
    )
    train = train_config(config, model, steps=longer['steps'], eval_every=longer['eval_every'], patience=None)
    test = zoo.split('test')
    result = {'zoo': longer['zoo'], 'steps': longer['steps'], 'per_member': {}}
    for variant in longer['variants']:
        metanet = amortized.ScaleGMN(activation=activation, symmetry=VARIANTS[variant], **config['metanet'])
        path = os.path.join(workdir, 'meta', longer['zoo'], f'{variant}-{longer["steps"]}-steps-seed0')
        meta_params, history, seconds = trained_metanet(zoo, metanet, train, path, progress)
        new_stack = jax.vmap(amortized.finetune, in_axes=(None, 0))(meta_params, test.params)
        accuracy = amortized.evaluate_stack(zoo.task(train.batch_size), new_stack, 'test')['accuracy']
        best = min(history, key=lambda h: h['validation'])
        result[variant] = {
            'name': metanet.name,
            'best_step': best['step'],
            'train_seconds': round(seconds, 1),
            **summary(accuracy),
            'history': history,
        }
        result['per_member'][variant] = accuracy
    initial = amortized.evaluate_stack(zoo.task(train.batch_size), test.params, 'test')['accuracy']
    per_member = result.pop('per_member')
    result['comparisons'] = {f'{v}_vs_initial': comparison(per_member[v], initial) for v in per_member}
    if {'scalegmn', 'gmn'} <= set(per_member):
        result['comparisons']['scalegmn_vs_gmn'] = comparison(per_member['scalegmn'], per_member['gmn'])
    return result


def compute_seconds(zoos: dict, workdir: str) -> float:
    """What the study cost over every invocation that resumed it: the metanetworks' training (recorded with their
    checkpoints) and the cached baseline and re-parametrisation stages (``io.stage_seconds``)."""
    training = sum(r['train_seconds'] for z in zoos.values() for v in VARIANTS for r in z[v]['runs'])
    return round(training + io.stage_seconds(workdir), 1)


def run(config: dict, models, activations, workdir: str, data_dir: str | None, progress: bool) -> dict:
    """Every zoo's results, by zoo name, with the metanetworks' entries (``scalegmn``, ``gmn``) at the top level."""
    zoos = {}
    for model in models:
        for activation in activations:
            result = dict(study_zoo(config, model, activation, workdir, data_dir, progress))
            metanets = result.pop('metanets')
            result['reparametrised'] = zoo_reparametrised(config, model, activation, workdir, data_dir, progress)
            zoos[zoo_name(config, model, activation)] = {**result, **metanets}
    return zoos


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--scale', choices=sorted(SCALES), default='smoke')
    parser.add_argument('--out', help='result directory (default: docs/results; runs/dry_run with --dry-run)')
    parser.add_argument('--workdir', help='zoos, meta-parameters and per-zoo results (default: runs/amortized/<name>)')
    parser.add_argument('--models', nargs='+', choices=('mlp', 'cnn'), default=('mlp', 'cnn'))
    parser.add_argument('--activations', nargs='+', choices=ACTIVATIONS, default=ACTIVATIONS)
    parser.add_argument('--data-dir', default=None, help='tfds data directory (paper scale)')
    parser.add_argument('--download', action='store_true', help='let tfds download the dataset (paper scale)')
    parser.add_argument('--dry-run', action='store_true', help="the scale's pipeline at a tiny size (seconds, CPU)")
    parser.add_argument('--no-progress', action='store_true', help='hide progress bars')
    args = parser.parse_args(argv)
    config = dry_run_config(SCALES[args.scale]) if args.dry_run else SCALES[args.scale]
    name = f'{args.scale}_dry_run' if args.dry_run else args.scale
    out = args.out or ('runs/dry_run' if args.dry_run else report.RESULTS)
    workdir = args.workdir or os.path.join('runs', 'amortized', name)
    io.use_compilation_cache(os.path.join(workdir, 'jax_cache'))
    started = time.perf_counter()
    try:
        amortized.load_zoo_dataset(config['dataset'], data_dir=args.data_dir, download=args.download)
        zoos = run(config, args.models, args.activations, workdir, args.data_dir, not args.no_progress)
    except DatasetUnavailableError as error:
        print(f'experiments/amortized.py --scale {args.scale}: {error}', file=sys.stderr)
        return 2
    data = {
        'kind': 'amortized',
        'title': f'Single-shot fine-tuning with ScaleGMN (seed 002), {name.replace("_", " ")} scale',
        'scale': args.scale,
        'dry_run': args.dry_run,
        'config': config,
        'paper': {'cnn_tanh': {'initial': 37.9, 'scalegmn': 50.3, 'gmn': 51.5, 'sgd_150': 44.5, 'sparsity': 87.6}},
        'zoos': zoos,
        # Stages cached by earlier invocations are not in the provenance's wall time; each zoo's are here.
        'stage_seconds': {name: z['seconds'] for name, z in zoos.items()},
        'longer_training': (
            longer_training(config, workdir, args.data_dir, not args.no_progress)
            if config.get('longer') and config['longer']['zoo'] in zoos
            else None
        ),
        'provenance': report.provenance(started, stage_seconds=compute_seconds(zoos, workdir)),
    }
    page = report.save(data, os.path.join(out, f'amortized_{name}.json'))
    print(page)
    return 0


if __name__ == '__main__':
    sys.exit(main())
