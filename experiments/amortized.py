"""Seed 002's table: single-shot ScaleGMN / GMN fine-tuning against SGD, on model zoos.

For every architecture (MLP, CNN) and activation (tanh, ReLU) a zoo is built (or reloaded from the run
directory), and for λ = 0 and λ > 0 a ScaleGMN-B and a symmetry-broken GMN-B are trained on its train split,
selected on its validation split and compared with SGD for 25/50/100/150 epochs on its test split. The
λ > 0 metanetworks start from the λ = 0 ones.

Usage:
  python experiments/amortized.py --scale smoke --out runs/amortized_smoke
  python experiments/amortized.py --scale paper --out runs/amortized_paper --data-dir ~/tensorflow_datasets
  python experiments/amortized.py --scale paper --dry-run --out runs/amortized_dry   # tiny, seconds per block

Writes ``results.json`` and ``results.md`` (and the zoos under ``zoos/``) into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

from l2o_jax import amortized
from l2o_jax.tasks import DatasetUnavailableError

#: Configs as data. ``smoke`` runs in minutes on two CPU cores; ``paper`` follows seed 002's CNN Zoo setting
#: (CIFAR10 in grey scale, small tanh/ReLU CNNs) and wants an accelerator.
SCALES = {
    'smoke': {
        'dataset': 'digits',
        # MLP zoos are cheap to train, so they get more members; CNN zoos (and their SGD baselines) cost more.
        'architectures': {
            'mlp': {'width': 8, 'depth': 3, 'members': 384},
            'cnn': {'width': 8, 'depth': 2, 'members': 128},
        },
        'zoo': {'min_steps': 5, 'max_steps': 150, 'lr_range': (3e-4, 3e-3), 'batch_size': 64},
        'l1': (0.0, 1e-3),
        'metanet': {'hidden': 16, 'layers': 2},
        'train': {'steps': 800, 'members_per_step': 4, 'batch_size': 128, 'learning_rate': 3e-3, 'eval_every': 100},
        'l1_steps': 200,
        'sgd': {'learning_rate': 0.05, 'momentum': 0.9},
    },
    'paper': {
        'dataset': 'cifar10_gray',
        'architectures': {'mlp': {'width': 32, 'depth': 3}, 'cnn': {'width': 16, 'depth': 3}},
        'zoo': {'members': 2000, 'min_steps': 50, 'max_steps': 3000, 'lr_range': (1e-4, 3e-3), 'batch_size': 128},
        'l1': (0.0, 1e-4),
        'metanet': {'hidden': 64, 'layers': 4},
        'train': {
            'steps': 20000,
            'members_per_step': 32,
            'batch_size': 256,
            'learning_rate': 1e-3,
            'eval_every': 1000,
            'eval_examples': 2048,
        },
        'l1_steps': 5000,
        'sgd': {'learning_rate': 0.01, 'momentum': 0.9},
    },
}
ACTIVATIONS = ('tanh', 'relu')


def dry_run_config(config: dict) -> dict:
    """``config``'s dataset, architectures (kinds and depths), λs and stages at a tiny size: zoos of 12 networks of
    width 4 trained for 1-3 steps, 2 metanetwork steps, SGD for 1 and 2 epochs."""
    return {
        **config,
        'architectures': {m: {**a, 'width': 4, 'members': 12} for m, a in config['architectures'].items()},
        'zoo': {**config['zoo'], 'min_steps': 1, 'max_steps': 3, 'batch_size': 8},
        'metanet': {'hidden': 8, 'layers': 1},
        'train': {**config['train'], 'steps': 2, 'members_per_step': 2, 'batch_size': 8, 'eval_every': 1},
        'l1_steps': 2,
        'sgd': {**config['sgd'], 'epochs': (1, 2)},
    }


def zoo_for(config: dict, model: str, activation: str, out: str, data_dir: str | None) -> amortized.Zoo:
    """The run's zoo for one architecture, built once and reloaded on later runs with the same config."""
    path = os.path.join(out, 'zoos', f'{config["dataset"]}-{model}-{activation}')
    zoo_config = amortized.ZooConfig(
        dataset=config['dataset'],
        model=model,
        activation=activation,
        data_dir=data_dir,
        **{**config['zoo'], **config['architectures'][model]},
    )
    if os.path.exists(os.path.join(path, 'zoo.json')):
        zoo = amortized.load_zoo(path)
        if zoo.config == zoo_config:
            return zoo
        print(f'{path} was built with another config; rebuilding it.', file=sys.stderr)
    zoo = amortized.build_zoo(zoo_config)
    amortized.save_zoo(path, zoo)
    return zoo


def run(config: dict, models, activations, out: str, data_dir: str | None) -> list[dict]:
    """Every (architecture, activation, λ) block of the table, as dicts with their rows.

    λ = 0 metanetworks train from scratch; λ > 0 ones start from them (``l1_steps`` more steps).
    """
    blocks = []
    for model in models:
        for activation in activations:
            zoo = zoo_for(config, model, activation, out, data_dir)
            metanets = [
                amortized.ScaleGMN(activation=activation, **config['metanet']),
                amortized.ScaleGMN(activation=activation, symmetry='none', **config['metanet']),
            ]
            starts = None
            for l1 in config['l1']:
                print(f'== {model} {activation} λ={l1}', file=sys.stderr)
                train = dict(config['train'], steps=config['l1_steps']) if starts else config['train']
                rows, trained = amortized.compare_methods(
                    zoo,
                    metanets,
                    amortized.TrainConfig(l1=l1, **train),
                    starts=starts,
                    sgd_learning_rate=config['sgd']['learning_rate'],
                    sgd_momentum=config['sgd']['momentum'],
                    sgd_epochs=config['sgd'].get('epochs', amortized.SGD_EPOCHS),
                )
                starts = starts or trained
                blocks.append(
                    {
                        'model': model,
                        'activation': activation,
                        'l1': l1,
                        'rows': rows,
                        'zoo': {
                            'config': dataclasses.asdict(zoo.config),
                            'members': len(zoo),
                            'test_members': len(zoo.split('test')),
                        },
                    }
                )
    return blocks


def _cell(value, digits=1):
    return '-' if value is None else f'{value:.{digits}f}' if value >= 1e-3 or value == 0 else f'{value:.1e}'


def markdown(blocks: list[dict], command: str, seconds: float) -> str:
    """The table of seed 002: per architecture and activation, the λ = 0 and λ > 0 columns side by side."""
    lines = [
        f'Command: `{command}` ({seconds / 60:.1f} min in total).',
        '',
        f'Accuracy on the data\'s test split, averaged over the zoo\'s test members; test loss = CE + λ·L1; '
        f'sparsity = % of parameters with |θ| < {amortized.SPARSITY_THRESHOLD}; time = seconds per network '
        '(vmapped over the test members, compilation excluded; SGD: cumulative).',
        '',
    ]
    pairs = {}
    for block in blocks:
        pairs.setdefault((block['model'], block['activation']), []).append(block)
    for (model, activation), (plain, *sparse) in pairs.items():
        sparse = sparse[0] if sparse else None
        title = f'### {model.upper()} ({activation}), {plain["zoo"]["test_members"]} test networks'
        head = '| Method | Avg Acc (%) | Max Acc (%) | Test loss (CE) | Time (s) |'
        rule = '|---|---|---|---|---|'
        if sparse:
            head += f' Avg Acc (%) λ={sparse["l1"]:g} | Test loss (CE+L1) | Sparsity (%) | Time (s) |'
            rule += '---|---|---|---|'
        lines += [title, '', head, rule]
        for i, row in enumerate(plain['rows']):
            cells = [
                row['method'],
                _cell(row['avg_accuracy']),
                _cell(row['max_accuracy']),
                _cell(row['test_loss'], 3),
                _cell(row['time_s'], 4),
            ]
            if sparse:
                other = sparse['rows'][i]
                cells += [
                    _cell(other['avg_accuracy']),
                    _cell(other['test_loss'], 3),
                    _cell(other['sparsity']),
                    _cell(other['time_s'], 4),
                ]
            lines.append('| ' + ' | '.join(cells) + ' |')
        latency = [f'{r["method"]} {1e3 * r["latency_s"]:.1f} ms' for r in plain['rows'] if 'latency_s' in r]
        lines += ['', 'Single-network `finetune` call (λ = 0): ' + ', '.join(latency) + '.', '']
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--scale', choices=sorted(SCALES), default='smoke')
    parser.add_argument('--out', required=True, help='run directory for zoos and tables')
    parser.add_argument('--models', nargs='+', choices=('mlp', 'cnn'), default=('mlp', 'cnn'))
    parser.add_argument('--activations', nargs='+', choices=ACTIVATIONS, default=ACTIVATIONS)
    parser.add_argument('--data-dir', default=None, help='tfds data directory (paper scale)')
    parser.add_argument('--download', action='store_true', help='let tfds download the dataset (paper scale)')
    parser.add_argument('--dry-run', action='store_true', help="the scale's pipeline at a tiny size (seconds, CPU)")
    args = parser.parse_args(argv)
    config = dry_run_config(SCALES[args.scale]) if args.dry_run else SCALES[args.scale]
    os.makedirs(args.out, exist_ok=True)
    command = 'python experiments/amortized.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
    start = time.perf_counter()
    try:
        amortized.load_zoo_dataset(config['dataset'], data_dir=args.data_dir, download=args.download)
        blocks = run(config, args.models, args.activations, args.out, args.data_dir)
    except DatasetUnavailableError as error:
        print(f'experiments/amortized.py --scale {args.scale}: {error}', file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    with open(os.path.join(args.out, 'results.json'), 'w') as f:
        json.dump(
            {
                'scale': args.scale,
                'dry_run': args.dry_run,
                'config': config,
                'command': command,
                'seconds': seconds,
                'blocks': blocks,
            },
            f,
            indent=1,
        )
    table = markdown(blocks, command, seconds)
    with open(os.path.join(args.out, 'results.md'), 'w') as f:
        f.write(table + '\n')
    print(table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
