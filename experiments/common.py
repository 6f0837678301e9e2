"""What the three experiments of Sbicego et al. share: the two scales, the command line, meta-training (or reusing)
the learned optimizers, and the run directory's report.

A run directory holds ``configs.json``, one meta-training run per learned optimizer (``<name>/``: config,
``metrics.jsonl``, ``checkpoints/``, ``meta_training.png``, ``best_meta_params/``), ``results.json``, the
figures, ``summary.json`` and ``summary.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time

import jax
import numpy as np

from l2o_jax import evaluation
from l2o_jax import study
from l2o_jax.io import load_info
from l2o_jax.io import load_meta_params
from l2o_jax.io import save_meta_params
from l2o_jax.meta import FullUnrollBPTT
from l2o_jax.meta import MetaTrainConfig
from l2o_jax.optimizers import LSTML2O
from l2o_jax.optimizers import MLPL2O
from l2o_jax.optimizers import GraphL2O
from l2o_jax.optimizers import RecurrentGraphL2O
from l2o_jax.optimizers import TransformerL2O
from l2o_jax.tasks import TaskFamily
from l2o_jax.tasks import image_task

#: The learned optimizers of Sbicego et al. by the names its figures use: ``(hidden, layers) -> config``.
LEARNED = {
    "NG-GNN": lambda hidden, layers: GraphL2O(hidden=hidden, layers=layers),
    "NG-T": lambda hidden, layers: TransformerL2O(hidden=hidden, layers=layers, heads=4),
    "LSTM": lambda hidden, layers: LSTML2O(hidden=hidden, num_layers=2),
    "MLP": lambda hidden, layers: MLPL2O(hidden=(hidden, hidden)),
    "RecurrentGNN": lambda hidden, layers: RecurrentGraphL2O(hidden=hidden, layers=layers, lstm_hidden=hidden),
    "GNN-variable": lambda hidden, layers: GraphL2O(hidden=hidden, layers=layers),
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
    """Embedded digits, CPU minutes: Kofinas et al.'s protocol (fresh full unrolls, the step judged at a short
    horizon) at a small size: meta-train on CNN-16 (depth 2) with 50-step unrolls, judge on CNN-32 over 100
    steps; sweep widths 8..64. (The quickstart has moved to the long-horizon recipe; the replication keeps the
    paper's.)"""
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
        selection_length=100,
        eval_steps=100,
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


def slug(name: str) -> str:
    """The run subdirectory of a learned optimizer, e.g. ``'ng-gnn'``."""
    return name.lower()


def build_parser(description: str, optimizers: tuple[str, ...]) -> argparse.ArgumentParser:
    """The command line every experiment shares; unset knobs keep the scale's value.

    Example:
      >>> args = build_parser('replication', ('NG-GNN',)).parse_args(['--scale', 'smoke', '--outer-steps', '5'])
    """
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--scale", choices=sorted(SCALES), default="smoke")
    p.add_argument("--workdir", required=True, help="run directory (created; a rerun resumes meta-training)")
    p.add_argument("--optimizers", nargs="+", choices=sorted(LEARNED), default=list(optimizers))
    p.add_argument("--from-run", default=None, help="reuse <DIR>/<name>/best_meta_params where they exist")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--dry-run", action="store_true", help="the scale's pipeline at a tiny size (seconds, CPU)")
    meta = p.add_argument_group("meta-training")
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


def learned_study(name: str, scale: Scale) -> study.StudyConfig:
    """The protocol with ``name``'s learned optimizer (and, for GNN-variable, its draw of inner lengths)."""
    meta = dataclasses.replace(scale.study.meta, learned_optimizer=LEARNED[name](scale.hidden, scale.layers))
    if name == "GNN-variable":
        lengths = variable_lengths(meta.estimator.lengths[0], scale.variable_points)
        meta = dataclasses.replace(meta, estimator=dataclasses.replace(meta.estimator, lengths=lengths))
    return dataclasses.replace(scale.study, meta=meta)


def train_or_reuse(
    studies: dict, workdir: str, *, from_run: str | None = None, progress: bool = True, log=print
) -> tuple[dict, dict]:
    """Meta-trains and selects each learned optimizer into ``workdir/<name>/`` or, when ``from_run`` holds
    ``<name>/best_meta_params``, loads it from there. Returns ``({name: meta_params}, {name: provenance})``.

    Example:
      >>> trained, info = train_or_reuse({'NG-GNN': learned_study('NG-GNN', smoke_scale())}, 'runs/x')
    """
    trained, provenance = {}, {}
    for name, config in studies.items():
        saved = os.path.join(from_run, slug(name), "best_meta_params") if from_run else ""
        reused = os.path.exists(saved)
        if not reused:
            run_dir = os.path.join(workdir, slug(name))
            started = time.perf_counter()
            step, best, scores = study.train_and_select(config, run_dir, progress=progress, log=log)
            saved = save_meta_params(
                os.path.join(run_dir, "best_meta_params"),
                best,
                metadata={
                    "outer_step": step,
                    "validation_loss": {str(k): v for k, v in scores.items()},
                    "seconds": round(time.perf_counter() - started, 1),
                },
            )
        else:
            log(f"reusing {name} from {saved}")
        trained[name] = load_meta_params(saved)
        provenance[name] = {
            "path": os.path.abspath(saved),
            "reused": reused,
            **load_info(saved)["metadata"],
            "meta_parameters": trained[name].num_parameters,
        }
    return trained, provenance


def save_configs(workdir: str, studies: dict) -> None:
    """Writes every learned optimizer's meta-training config and the shared protocol to ``configs.json``."""
    first = next(iter(studies.values()))
    protocol = {f.name: getattr(first, f.name) for f in dataclasses.fields(first) if f.name != "meta"}
    data = {"protocol": protocol, "meta_training": {n: json.loads(s.meta.to_json()) for n, s in studies.items()}}
    with open(os.path.join(workdir, "configs.json"), "w") as f:
        json.dump(data, f, indent=1, default=str)


def command_line(script: str, argv) -> str:
    """The exact command that reproduces a run."""
    return shlex.join(["python", f"experiments/{script}", *(sys.argv[1:] if argv is None else argv)])


def describe(scale_name: str, config: study.StudyConfig) -> str:
    """One paragraph on how the learned optimizers were trained and judged."""
    meta, family = config.meta, config.meta.task_family
    return (
        f"Scale `{scale_name}`. Meta-training: {family.datasets[0]} {family.models[0].upper()} width "
        f"{family.widths[0]}, depth "
        f"{family.depths[0]}, batch {family.batch_size}; unroll K = {meta.estimator.lengths[0]} inner steps x "
        f"{meta.estimator.num_tasks} optimizees per outer step; {meta.outer_steps} outer steps of Adam "
        f"{meta.meta_lr:g} ({meta.schedule}); checkpoints every {meta.checkpoint_every}, the best picked by "
        f"validation loss after {config.selection_length} steps. Evaluation: {config.eval_steps} steps x "
        f"{config.seeds} seeds on the test split; baselines tuned once per task on the validation split at the same "
        f"horizon (mean validation {config.tuning_select_by} over {config.tuning_seeds} seeds) over lr "
        f"{list(config.learning_rates)} x wd {list(config.weight_decays)}."
    )


def held_out_changes(train_data, eval_data) -> str:
    """One sentence on what the held-out task changes beyond the meta-training data (input shape, classes).

    Example:
      >>> held_out_changes(load_dataset('digits'), load_dataset('digits'))
      'The held-out data keeps the meta-training input 8x8x1 and 10 classes'
    """
    shape = lambda data: "x".join(map(str, data.input_shape))
    changes = []
    if train_data.input_shape != eval_data.input_shape:
        changes.append(f"input {shape(train_data)} -> {shape(eval_data)}")
    if train_data.num_classes != eval_data.num_classes:
        changes.append(f"{train_data.num_classes} -> {eval_data.num_classes} classes")
    if not changes:
        return f"The held-out data keeps the meta-training input {shape(eval_data)} and {eval_data.num_classes} classes"
    return (
        f"The held-out data changes {', '.join(changes)} ({train_data.name} -> {eval_data.name}); graph learned "
        "optimizers treat every input and output neuron alike (no per-position embedding), so they apply "
        "unchanged."
    )


def provenance_table(provenance: dict) -> str:
    """Markdown: where each learned optimizer came from and how its checkpoint was chosen."""
    rows = [
        "| optimizer | meta-parameters | best checkpoint | validation loss | meta-training (s) |",
        "|---|---|---|---|---|",
    ]
    for name, p in provenance.items():
        loss = p.get("validation_loss", {}).get(str(p.get("outer_step")), float("nan"))
        rows.append(
            f"| {name} | {p['meta_parameters']} | {p.get('outer_step')} | {loss:.4f} | "
            f"{p.get('seconds')}{' (reused)' if p['reused'] else ''} |"
        )
    return "\n".join(rows)


def tuning_table(tuned_by_task: dict) -> str:
    """Markdown: the tuned baselines' chosen hyperparameters and validation accuracy on each task."""
    rows = [
        "| task | baseline | learning rate | weight decay | on the grid's edge | validation loss "
        "| validation accuracy (%) |",
        "|---|---|---|---|---|---|---|",
    ]
    for task_name, tuned in tuned_by_task.items():
        for t in tuned:
            best = next(
                s for s in t.scores if (s["learning_rate"], s["weight_decay"]) == (t.learning_rate, t.weight_decay)
            )
            rows.append(
                f"| {task_name} | {t.name} | {t.learning_rate:g} | {t.weight_decay:g} | "
                f"{'yes' if t.on_edge else 'no'} | {best['val_loss']:.4f} | {100 * best['val_accuracy']:.2f} |"
            )
    return "\n".join(rows)


def write_summary(workdir: str, title: str, paragraphs: list[str], summary: dict) -> str:
    """Writes ``summary.md`` (title, then paragraphs) and ``summary.json``; returns the markdown's path."""
    summary = {**summary, "devices": [str(d) for d in jax.devices()]}
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=str)
    path = os.path.join(workdir, "summary.md")
    with open(path, "w") as f:
        f.write("\n\n".join([f"# {title}", *paragraphs]) + "\n")
    return path


def prepare_run(args: argparse.Namespace, scale: Scale) -> tuple[str, dict, dict]:
    """Creates the run directory, writes ``configs.json`` and meta-trains (or reuses, see ``--from-run``) every
    optimizer of ``--optimizers``. Returns ``(workdir, {name: meta_params}, {name: provenance})``."""
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    studies = {name: learned_study(name, scale) for name in args.optimizers}
    save_configs(workdir, studies)
    return workdir, *train_or_reuse(studies, workdir, from_run=args.from_run, progress=not args.no_progress)


def closing_sections(provenance: dict, tuned_by_task: dict, seconds: float) -> list[str]:
    """The end of every summary: where the learned optimizers came from, the tuned baselines, the wall time."""
    return [
        "## Learned optimizers",
        provenance_table(provenance),
        "## Tuned baselines",
        tuning_table(tuned_by_task),
        f"Wall time {seconds:.0f} s on {jax.devices()[0].platform}.",
    ]


def run_comparison(script: str, argv, optimizers: tuple[str, ...], title: str, figure: str) -> dict:
    """Replication and improvements: meta-train ``optimizers``, tune each baseline once on the held-out task,
    evaluate everything there over seeds, and write the figure and tables. Returns ``summary.json``'s data.

    Example:
      >>> run_comparison('replicate.py', ['--workdir', 'runs/r'], ('NG-GNN', 'LSTM'), 'Figure 1', 'figure1.png')
    """
    started = time.perf_counter()
    args = build_parser(title, optimizers).parse_args(argv)
    scale, protocol = configure(args)
    workdir, trained, provenance = prepare_run(args, scale)
    task = image_task(**protocol.eval_task)
    changes = held_out_changes(image_task(**protocol.selection_task).data, task.data)
    print(
        f"tuning {', '.join(protocol.baselines)} once on {task.name}; evaluating {len(trained)} learned "
        f"optimizers and the tuned baselines: {protocol.eval_steps} steps x {protocol.seeds} seeds"
    )
    tuned = study.tune_baselines(protocol, task)
    results = study.evaluate_optimizers(protocol, task, trained, tuned)
    evaluation.save_results(results, os.path.join(workdir, "results.json"))
    caption = f"{task.name}, {protocol.seeds} seeds, {args.scale} scale"
    png = evaluation.plot_curves(results, os.path.join(workdir, figure), title=caption)
    table = evaluation.results_table(results, results[len(trained)].name if tuned else None)
    seconds = time.perf_counter() - started
    paragraphs = [
        f"`{command_line(script, argv)}`",
        describe(args.scale, protocol),
        changes,
        f"## Final test accuracy on {task.name}",
        table,
        f"![{title}]({os.path.basename(png)})",
        *closing_sections(provenance, {task.name: tuned}, seconds),
    ]
    summary = {
        "command": command_line(script, argv),
        "eval_task": task.name,
        "eval_input_shape": list(task.data.input_shape),
        "eval_classes": task.data.num_classes,
        "scale": args.scale,
        "dry_run": args.dry_run,
        "learned": provenance,
        "tuned": [dataclasses.asdict(t) for t in tuned],
        "results": [r.summary() for r in results],
        "seconds": round(seconds, 1),
    }
    path = write_summary(workdir, title, paragraphs, summary)
    print(open(path).read())
    return summary
