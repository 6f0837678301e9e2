"""What the three experiments of Sbicego et al. share: the two scales, the command line, and running them as
configurations of the one study pipeline (``l2o_jax.study.run_study``).

A run directory holds the study's cached stages (one meta-training run per learned optimizer and meta-seed,
tuning and curves), ``study.json``, ``summary.json``, ``results.md`` and the figures; the result JSON and page go
to ``docs/results/`` (smoke scale) or ``<workdir>/results`` (``--out`` to choose).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import time

import numpy as np
import report

from l2o_jax import evaluation
from l2o_jax import io
from l2o_jax import study
from l2o_jax.meta import FullUnrollBPTT
from l2o_jax.meta import MetaTrainConfig
from l2o_jax.optimizers import LSTML2O
from l2o_jax.optimizers import MLPL2O
from l2o_jax.optimizers import GraphL2O
from l2o_jax.optimizers import OutputConfig
from l2o_jax.optimizers import RecurrentGraphL2O
from l2o_jax.optimizers import TransformerL2O
from l2o_jax.tasks import TaskFamily
from l2o_jax.tasks import image_task

#: The step is the meta-network's output (``OutputConfig(base='none')``), as in Kofinas et al.
DIRECT_OUTPUT = OutputConfig(base="none")

#: The learned optimizers of Sbicego et al. by the names its figures use: ``(hidden, layers) -> config``.
LEARNED = {
    "NG-GNN": lambda hidden, layers: GraphL2O(hidden=hidden, layers=layers),
    "NG-T": lambda hidden, layers: TransformerL2O(hidden=hidden, layers=layers, heads=4),
    "LSTM": lambda hidden, layers: LSTML2O(hidden=hidden, num_layers=2),
    "MLP": lambda hidden, layers: MLPL2O(hidden=(hidden, hidden)),
    "RecurrentGNN": lambda hidden, layers: RecurrentGraphL2O(hidden=hidden, layers=layers, lstm_hidden=hidden),
    "GNN-variable": lambda hidden, layers: GraphL2O(hidden=hidden, layers=layers),
    # Kofinas et al.'s parameterisation: the network's output is the whole step, no Adam direction under it.
    "NG-GNN (base none)": lambda hidden, layers: GraphL2O(hidden=hidden, layers=layers, output=DIRECT_OUTPUT),
    "LSTM (base none)": lambda hidden, layers: LSTML2O(hidden=hidden, num_layers=2, output=DIRECT_OUTPUT),
}


@dataclasses.dataclass(frozen=True)
class Scale:
    """The sizes of one scale of the study.

    Attributes:
      study: the protocol: meta-training task family and run, checkpoint selection, held-out evaluation task,
        tuned baselines (an ``l2o_jax.study`` preset).
      hidden, layers: width and depth of every meta-network.
      widths, depths: the generalization sweeps, at the meta-training depth and width respectively.
      variable_points: how many inner lengths GNN-variable draws from, spread over 0.75..2.5x the base
        length (Sbicego et al.: 75, 100, ..., 250 around K = 100).
    """

    study: study.StudyConfig
    hidden: int
    layers: int
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    variable_points: int


def smoke_scale() -> Scale:
    """Embedded digits, CPU minutes: Kofinas et al.'s protocol (fresh full unrolls) at a small size: meta-train on
    CNN-16 (depth 2) with 50-step unrolls, judge on CNN-32 at 100 steps and at 500 (10x the unroll, where a
    short-horizon optimizer may fall apart), checkpoints picked at 500; sweep widths 8..64. (The quickstart has
    moved to the long-horizon recipe; the replication keeps the paper's.)"""
    family = TaskFamily(datasets=("digits",), models=("cnn",), widths=(16,), depths=(2,), batch_size=64)
    meta = MetaTrainConfig(
        GraphL2O(hidden=16, layers=2),
        family,
        FullUnrollBPTT(lengths=(50,), num_tasks=4),
        outer_steps=150,
        meta_lr=3e-3,
        checkpoint_every=25,
    )
    protocol = study.StudyConfig(
        meta=meta,
        selection_task=dict(dataset="digits", width=16, depth=2, batch_size=64),
        eval_task=dict(dataset="digits", width=32, depth=2, batch_size=64),
        selection_length=500,
        eval_steps=500,
        compare_at=(100,),
        seeds=5,
        baselines=("adam", "rmsprop"),
    )
    return Scale(protocol, hidden=16, layers=2, widths=(8, 16, 32, 64), depths=(1, 2, 3, 4), variable_points=4)


def paper_scale() -> Scale:
    """Seed 000 (GPU): FashionMNIST CNN-32 (depth 3) for meta-training, CIFAR10 CNN-64 for evaluation."""
    return Scale(
        study.paper_preset(),
        hidden=32,
        layers=4,
        widths=(16, 32, 64, 128, 256),
        depths=(2, 3, 4, 5, 6),
        variable_points=8,
    )


SCALES = {"smoke": smoke_scale, "paper": paper_scale}

#: ``--dry-run``: the scale's datasets, model kinds and stages, every size shrunk so the whole pipeline runs in
#: seconds on a CPU (command-line values still win). ``widths``/``depths``/``variable_points`` shrink the scale.
DRY_RUN = dict(
    meta_seeds=2,
    outer_steps=2,
    checkpoint_every=1,
    inner_steps=3,
    num_tasks=2,
    hidden=8,
    layers=1,
    train_width=4,
    eval_width=8,
    batch_size=8,
    eval_steps=4,
    eval_every=2,
    seeds=2,
    learning_rates=[1e-2],
    weight_decays=[0.0],
)
DRY_RUN_SIZES = dict(widths=(4, 8), depths=(2, 3), variable_points=2)


def variable_lengths(base: int, points: int) -> tuple[int, ...]:
    """Inner lengths spread over 0.75..2.5x ``base``: GNN-variable's draw.

    Example:
      >>> variable_lengths(100, 8)
      (75, 100, 125, 150, 175, 200, 225, 250)
    """
    return tuple(sorted({int(round(f * base)) for f in np.linspace(0.75, 2.5, points)}))


def build_parser(description: str, optimizers: tuple[str, ...]) -> argparse.ArgumentParser:
    """The command line every experiment shares; unset knobs keep the scale's value.

    Example:
      >>> args = build_parser('replication', ('NG-GNN',)).parse_args(['--scale', 'smoke', '--outer-steps', '5'])
    """
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--scale", choices=sorted(SCALES), default="smoke")
    p.add_argument("--workdir", required=True, help="cached stages (a rerun resumes; another script reuses the runs)")
    p.add_argument("--optimizers", nargs="+", choices=sorted(LEARNED), default=list(optimizers))
    p.add_argument("--out", default=None, help="result JSON, page and figures (default: docs/results at smoke scale)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--dry-run", action="store_true", help="the scale's pipeline at a tiny size (seconds, CPU)")
    meta = p.add_argument_group("meta-training")
    meta.add_argument("--meta-seeds", type=int, help="independent meta-training runs per learned optimizer")
    meta.add_argument("--outer-steps", type=int)
    meta.add_argument("--meta-lr", type=float)
    meta.add_argument("--checkpoint-every", type=int)
    meta.add_argument("--inner-steps", type=int, help="unroll length K (GNN-variable draws 0.75..2.5 K)")
    meta.add_argument("--num-tasks", type=int, help="optimizees per outer step")
    meta.add_argument("--hidden", type=int, help="width of every meta-network")
    meta.add_argument("--layers", type=int, help="message-passing / attention layers")
    meta.add_argument("--model", choices=("cnn", "mlp"), help="optimizee family of every task (default: cnn)")
    meta.add_argument("--train-width", type=int)
    meta.add_argument("--train-depth", type=int)
    meta.add_argument("--batch-size", type=int)
    meta.add_argument("--data-dir", default=None, help="tfds data directory (paper scale)")
    ev = p.add_argument_group("evaluation")
    ev.add_argument("--eval-dataset", help="dataset of the held-out task (e.g. digits, mnist1d, cifar10)")
    ev.add_argument("--eval-width", type=int)
    ev.add_argument("--eval-depth", type=int)
    ev.add_argument("--eval-steps", type=int)
    ev.add_argument("--eval-every", type=int)
    ev.add_argument("--seeds", type=int)
    ev.add_argument("--baselines", nargs="+", choices=sorted(evaluation.BASELINES))
    ev.add_argument("--learning-rates", nargs="+", type=float, help="baseline grid (default: x2 steps, 1e-4..0.1)")
    ev.add_argument("--weight-decays", nargs="+", type=float)
    return p


def _pick(value, default):
    return default if value is None else value


def _tuple(values):
    return None if values is None else tuple(values)


def _with(task: dict, **changes) -> dict:
    """``image_task`` arguments with the changes that are set."""
    return {**task, **{k: v for k, v in changes.items() if v is not None}}


def configure(args: argparse.Namespace) -> tuple[Scale, study.StudyConfig]:
    """The scale and its protocol with the command line's overrides applied.

    Example:
      >>> scale, protocol = configure(build_parser('x', ('NG-GNN',)).parse_args(['--workdir', 'w', '--seeds', '2']))
    """
    scale = SCALES[args.scale]()
    if args.dry_run:
        for name, value in DRY_RUN.items():
            setattr(args, name, _pick(getattr(args, name), value))
        scale = dataclasses.replace(scale, **DRY_RUN_SIZES)
    base = scale.study
    old = base.meta.task_family
    family = dataclasses.replace(
        old,
        models=(_pick(args.model, old.models[0]),),
        widths=(_pick(args.train_width, old.widths[0]),),
        depths=(_pick(args.train_depth, old.depths[0]),),
        batch_size=_pick(args.batch_size, old.batch_size),
        data_dir=_pick(args.data_dir, old.data_dir),
    )
    inner = _pick(args.inner_steps, base.meta.estimator.lengths[0])
    estimator = dataclasses.replace(
        base.meta.estimator, lengths=(inner,), num_tasks=_pick(args.num_tasks, base.meta.estimator.num_tasks)
    )
    selection = dict(
        dataset=family.datasets[0],
        model=family.models[0],
        width=family.widths[0],
        depth=family.depths[0],
        batch_size=family.batch_size,
    )
    eval_task = _with(
        base.eval_task,
        dataset=args.eval_dataset,
        model=args.model,
        width=args.eval_width,
        depth=args.eval_depth,
        batch_size=args.batch_size,
    )
    protocol = dataclasses.replace(
        base,
        meta=dataclasses.replace(base.meta, task_family=family, estimator=estimator),
        selection_task=_with(selection, data_dir=args.data_dir),
        selection_length=_pick(args.eval_steps, base.eval_steps),  # select at the horizon judged at
        eval_task=_with(eval_task, data_dir=args.data_dir),
    ).with_overrides(
        meta_seeds=args.meta_seeds,
        outer_steps=args.outer_steps,
        meta_lr=args.meta_lr,
        checkpoint_every=args.checkpoint_every,
        eval_steps=args.eval_steps,
        eval_every=args.eval_every,
        seeds=args.seeds,
        baselines=_tuple(args.baselines),
        learning_rates=_tuple(args.learning_rates),
        weight_decays=_tuple(args.weight_decays),
    )
    hidden, layers = _pick(args.hidden, scale.hidden), _pick(args.layers, scale.layers)
    return dataclasses.replace(scale, study=protocol, hidden=hidden, layers=layers), protocol


def learned_configs(names, scale: Scale) -> dict:
    """``{name: learned optimizer}`` for ``StudyConfig.learned``; GNN-variable is a whole meta-training run (the GNN
    with its draw of inner lengths).

    Example:
      >>> learned_configs(['NG-GNN', 'GNN-variable'], smoke_scale())['GNN-variable'].estimator.lengths
      (38, 75, 112, 125)
    """
    learned = {}
    for name in names:
        config = LEARNED[name](scale.hidden, scale.layers)
        if name == "GNN-variable":
            meta = scale.study.meta
            lengths = variable_lengths(meta.estimator.lengths[0], scale.variable_points)
            estimator = dataclasses.replace(meta.estimator, lengths=lengths)
            config = dataclasses.replace(meta, learned_optimizer=config, estimator=estimator)
        learned[name] = config
    return learned


def command_line(script: str, argv) -> str:
    """The exact command that reproduces a run."""
    return shlex.join(["python", f"experiments/{script}", *(sys.argv[1:] if argv is None else argv)])


def held_out_changes(train_data, eval_data) -> str:
    """What the held-out task changes beyond the meta-training data (input shape, classes), for the page.

    Example:
      >>> held_out_changes(load_dataset('digits'), load_dataset('digits'))
      'same input 8x8x1 and 10 classes as the meta-training data'
    """
    shape = lambda data: "x".join(map(str, data.input_shape))
    changes = []
    if train_data.input_shape != eval_data.input_shape:
        changes.append(f"input {shape(train_data)} -> {shape(eval_data)}")
    if train_data.num_classes != eval_data.num_classes:
        changes.append(f"{train_data.num_classes} -> {eval_data.num_classes} classes")
    if not changes:
        return f"same input {shape(eval_data)} and {eval_data.num_classes} classes as the meta-training data"
    return f"{', '.join(changes)} ({train_data.name} -> {eval_data.name})"


def task_label(task: dict) -> str:
    """``'digits CNN-32, depth 2'``: a held-out task's label on pages and in the workdir."""
    return f"{task['dataset']} {task.get('model', 'cnn').upper()}-{task['width']}, depth {task.get('depth', 2)}"


def held_out_task(label: str, protocol: study.StudyConfig, task: dict, steps: int) -> study.HeldOutTask:
    """A held-out task of ``protocol`` with what it changes said."""
    changes = held_out_changes(image_task(**protocol.selection_task).data, image_task(**task).data)
    return study.HeldOutTask(label, task, steps, changes)


def run_experiment(
    script: str,
    argv,
    optimizers: tuple[str, ...],
    title: str,
    name: str,
    *,
    kind: str = "horizon",
    add_arguments=None,
    held_out=None,
    finish=None,
) -> dict:
    """Replication, improvements and generalization: the scale's protocol with the chosen learned optimizers, run
    by ``run_study``; the page ``<out>/<name>_<scale>.json``/``.md`` (of ``kind``) is rewritten after every
    held-out task. Returns the study's data.

    Args:
      add_arguments: adds a script's own options to the shared parser.
      held_out: ``(protocol, scale, args) -> HeldOutTask tuple``; default: the protocol's evaluation task.
      finish: ``(data, out, prefix) -> None``, run before the last write (e.g. a figure made from the whole data,
        written to ``out`` under a name starting with ``prefix``).

    Example:
      >>> data = run_experiment('replicate.py', ['--workdir', 'runs/r'], ('NG-GNN', 'LSTM'), 'Figure 1', 'replication')
    """
    started = time.perf_counter()
    parser = build_parser(title, optimizers)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    scale, protocol = configure(args)
    io.use_compilation_cache(os.path.join(args.workdir, "jax_cache"))
    protocol = dataclasses.replace(protocol, learned=learned_configs(args.optimizers, scale))
    main_task = held_out_task(task_label(protocol.eval_task), protocol, protocol.eval_task, protocol.eval_steps)
    tasks = held_out(protocol, scale, args) if held_out else (main_task,)
    protocol = dataclasses.replace(protocol, held_out=tasks)
    scale_name = f"{args.scale}_dry_run" if args.dry_run else args.scale
    out = args.out or (report.RESULTS if args.scale == "smoke" and not args.dry_run else f"{args.workdir}/results")
    stem, prefix = os.path.join(out, f"{name}_{scale_name}"), f"{name}_{scale_name}_"

    def publish(data):
        cost = study.study_stage_seconds(protocol, args.workdir)
        where = report.provenance(started, command=command_line(script, argv), stage_seconds=cost)
        data.update(kind=kind, dry_run=args.dry_run, provenance=where)
        report.save(data, stem + ".json")

    data = study.run_study(
        protocol,
        args.workdir,
        title=f"{title} ({scale_name} scale)",
        figures=out,
        figure_prefix=prefix,
        progress=not args.no_progress,
        on_task=publish,
    )
    if finish is not None:
        finish(data, out, prefix)
        publish(data)
    return data
