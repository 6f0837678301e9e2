"""The ``l2o-jax`` command: ``quickstart``, ``meta-train``, ``evaluate``, ``pretrained``, ``zoo``, ``data``.

Examples:
  l2o-jax quickstart --workdir runs/quickstart
  l2o-jax meta-train --config paper --workdir runs/paper --outer-steps 1000
  l2o-jax meta-train --config paper --workdir runs/paper_dry --dry-run   # the same pipeline, tiny, seconds
  l2o-jax meta-train --config quickstart --set estimator=pes --set learned_optimizer.hidden=32 --workdir runs/pes
  l2o-jax meta-train --config quickstart --print-config > my_study.json   # edit, then --config my_study.json
  l2o-jax evaluate --meta-params runs/quickstart/best_meta_params --dataset digits --width 64 --steps 300
  l2o-jax evaluate --meta-params ng-gnn-digits --dataset mnist1d --width 32
  l2o-jax pretrained
  l2o-jax zoo --dataset digits --model mlp --members 64 --out zoos/digits_mlp
  l2o-jax data prepare fashion_mnist cifar10 --data-dir ~/tensorflow_datasets
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from l2o_jax import io
from l2o_jax import study


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--outer-steps", type=int, help="meta-training steps")
    parser.add_argument("--meta-lr", type=float, help="outer Adam learning rate")
    parser.add_argument("--seed", type=int, help="the run's random seed")
    parser.add_argument("--seeds", type=int, help="evaluation seeds")
    parser.add_argument("--eval-steps", type=int, help="inner steps of the evaluation runs")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _overrides(args) -> dict:
    return {
        "outer_steps": args.outer_steps,
        "meta_lr": args.meta_lr,
        "seed": args.seed,
        "seeds": args.seeds,
        "eval_steps": args.eval_steps,
    }


def dry_run(config: study.StudyConfig) -> study.StudyConfig:
    """``config``'s datasets, model kinds and stages at a tiny size, for checking the pipeline in seconds on a CPU:
    CNN widths 4 (meta-training, selection) and 8 (evaluation), a 8x1 meta-network, 2 outer steps of 2 x 3-step
    unrolls (or truncations), 2 meta-seeds, 4-step evaluations over 2 seeds, the first baseline tuned over one
    learning rate.

    Example:
      >>> tiny = dry_run(study.preset('paper'))
    """
    meta = config.meta
    meta = dataclasses.replace(
        meta,
        learned_optimizer=dataclasses.replace(meta.learned_optimizer, hidden=8, layers=1),
        task_family=dataclasses.replace(meta.task_family, widths=(4,), batch_size=8),
        estimator=dataclasses.replace(meta.estimator, **_tiny_estimator_fields(meta.estimator)),
    )
    tiny = dict(selection_task={**config.selection_task, "width": 4, "batch_size": 8}, selection_length=4)
    tiny.update(eval_task={**config.eval_task, "width": 8, "batch_size": 8}, baselines=config.baselines[:1])
    return dataclasses.replace(config, meta=meta, **tiny).with_overrides(
        outer_steps=2,
        checkpoint_every=1,
        eval_steps=4,
        eval_every=2,
        seeds=2,
        meta_seeds=2,
        selection_seeds=1,
        tuning_seeds=1,
        learning_rates=(1e-2,),
        weight_decays=(0.0,),
    )


def _tiny_estimator_fields(estimator) -> dict:
    """3-step unrolls (truncations of 6-step runs) over 2 optimizees, for whichever fields the estimator has."""
    tiny = dict(lengths=(3,), truncation_length=3, horizon=6, num_tasks=2, num_pairs=2)
    return {f.name: tiny[f.name] for f in dataclasses.fields(estimator) if f.name in tiny}


def _run(config: study.StudyConfig, args) -> None:
    config = dry_run(config) if getattr(args, "dry_run", False) else config
    config = config.with_overrides(**_overrides(args))
    print(f"l2o-jax: running the {args.config} study", flush=True)
    print(config.to_json(), flush=True)
    io.use_compilation_cache(os.path.join(args.workdir, "jax_cache"))  # a resumed study does not compile again
    study.run_study(config, args.workdir, title=f"The {args.config} study", progress=not args.no_progress)
    with open(f"{args.workdir}/results.md") as f:
        print("\n" + f.read())
    print(
        f"results: {args.workdir}/results.md (figures beside it, every number in summary.json)\n"
        f"optimizer: {args.workdir}/best_meta_params  (l2o_jax.load_meta_params)"
    )


def _evaluate(args) -> None:
    import l2o_jax
    from l2o_jax import evaluation
    from l2o_jax.meta.unroll import learned_transform_for
    from l2o_jax.tasks import image_task

    if os.path.exists(args.meta_params):
        meta = l2o_jax.load_meta_params(args.meta_params)
    else:
        meta = l2o_jax.pretrained.load(args.meta_params)  # an unknown name lists the shipped ones
    task = image_task(
        args.dataset,
        model=args.model,
        width=args.width,
        depth=args.depth,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
    )
    results = [
        evaluation.evaluate(
            learned_transform_for(meta, task, total_steps=args.steps),
            task,
            args.steps,
            args.seeds,
            name=type(meta.config).__name__,
        )
    ]
    if args.baseline:
        tuned = evaluation.tune_baseline(args.baseline, task, args.steps)
        results.append(
            evaluation.evaluate(
                tuned.optimizer(),
                task,
                args.steps,
                args.seeds,
                name=f"{args.baseline} (tuned lr={tuned.learning_rate:g})",
            )
        )
    print(evaluation.results_table(results, results[-1].name if args.baseline else None))
    if args.plot:
        print("plot:", evaluation.plot_curves(results, args.plot, title=task.name))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="l2o-jax", description="Learned optimizers over neural graphs.")
    sub = parser.add_subparsers(dest="command", required=True)
    quick = sub.add_parser("quickstart", help="meta-train NG-GNN on embedded digits and beat tuned Adam (CPU, minutes)")
    quick.add_argument("--workdir", default="runs/quickstart")
    _add_overrides(quick)
    train = sub.add_parser("meta-train", help="run a preset study (meta-train, select, evaluate, report)")
    train.add_argument(
        "--config", default="quickstart", help=f"a preset ({', '.join(sorted(study.PRESETS))}) or a study JSON file"
    )
    train.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a field, e.g. outer_steps=300, estimator=pes, eval_task.width=64 (repeatable)",
    )
    train.add_argument("--print-config", action="store_true", help="print the study as JSON (after --set) and exit")
    train.add_argument("--workdir")
    train.add_argument("--dry-run", action="store_true", help="the preset's pipeline at a tiny size (seconds, CPU)")
    _add_overrides(train)
    ev = sub.add_parser("evaluate", help="evaluate saved meta-parameters on a task against a tuned baseline")
    ev.add_argument("--meta-params", required=True, help="directory written by save_meta_params, or a pretrained name")
    ev.add_argument("--dataset", default="digits")
    ev.add_argument("--data-dir", default=None)
    ev.add_argument("--model", default="cnn", choices=("cnn", "mlp"))
    ev.add_argument("--width", type=int, default=32)
    ev.add_argument("--depth", type=int, default=2)
    ev.add_argument("--batch-size", type=int, default=64)
    ev.add_argument("--steps", type=int, default=300)
    ev.add_argument("--seeds", type=int, default=5)
    ev.add_argument("--baseline", default="adam", help="'adam', 'rmsprop', 'sgd_momentum' or '' for none")
    ev.add_argument("--plot", default=None, help="PNG path for the accuracy curves")
    sub.add_parser("pretrained", help="list the pretrained learned optimizers that ship with the package")
    sub.add_parser(
        "zoo", help="build a model zoo for the amortized (ScaleGMN) optimizer; see 'l2o-jax zoo -h'", add_help=False
    )
    data = sub.add_parser("data", help="prepare the tfds datasets the paper-scale runs read (needs a network once)")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    prepare = data_sub.add_parser("prepare", help="download and prepare tfds datasets as array_record")
    prepare.add_argument("names", nargs="+", metavar="DATASET", help="e.g. fashion_mnist cifar10 mnist cifar100")
    prepare.add_argument("--data-dir", default=None, help="tfds data directory (default: ~/tensorflow_datasets)")
    prepare.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _prepare_data(args) -> int:
    from l2o_jax.tasks import DatasetUnavailableError
    from l2o_jax.tasks import prepare_datasets

    try:
        names = prepare_datasets(args.names, data_dir=args.data_dir, progress=not args.no_progress)
    except (ValueError, DatasetUnavailableError) as error:
        print(f"l2o-jax data prepare: {error}", file=sys.stderr)
        return 1
    print(f"prepared: {', '.join(names) or 'nothing (embedded datasets need no preparation)'}")
    return 0


def _list_pretrained() -> None:
    from l2o_jax import pretrained

    for name in pretrained.available():
        record = pretrained.info(name)
        long_run = record["long_run"]
        print(
            f"{name:24s} {record['config']['type']:18s} {100 * long_run['test_accuracy'][-1]:.2f} % test accuracy on "
            f"{long_run['task']} after {long_run['steps']} steps\n    made by: {record['command']}"
        )


def zoo_parser() -> argparse.ArgumentParser:
    """The options of ``l2o-jax zoo``: every ``amortized.ZooConfig`` field, and ``--out``."""
    from l2o_jax.amortized import ZooConfig

    parser = argparse.ArgumentParser(prog="l2o-jax zoo", description=zoo.__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="directory of the zoo (reused when it holds the same config)")
    for field in dataclasses.fields(ZooConfig):
        flag, default = f"--{field.name.replace('_', '-')}", field.default
        if isinstance(default, tuple):
            parser.add_argument(flag, type=float, nargs=len(default), default=default, metavar="X")
        elif isinstance(default, int):
            parser.add_argument(flag, type=int, default=default)
        else:
            parser.add_argument(flag, default=default)
    return parser


def zoo(argv: list[str]) -> int:
    """Builds a model zoo with a progress bar and saves it, or reuses the one at ``--out`` built with the same config.

    Example:
      >>> zoo(['--dataset', 'digits', '--model', 'cnn', '--members', '2000', '--out', 'zoos/digits-cnn'])
    """
    import numpy as np

    from l2o_jax import io
    from l2o_jax.amortized import ZooConfig

    args = vars(zoo_parser().parse_args(argv))
    out = args.pop("out")
    config = ZooConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})
    built, reused = io.cached_zoo(out, config)
    print(f"{'reused the zoo at' if reused else 'built'} {os.path.abspath(out)}", file=sys.stderr)
    for split in ("train", "validation", "test"):
        accuracy = 100 * np.array([m["test_accuracy"] for m in built.split(split).members])
        print(
            f"{split:>10}: {len(accuracy):5d} members, test accuracy mean {accuracy.mean():.1f} % "
            f"(min {accuracy.min():.1f}, max {accuracy.max():.1f})",
            file=sys.stderr,
        )
    print(os.path.abspath(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``l2o-jax`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["zoo"]:
        return zoo(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "quickstart":
        args.config = "quickstart"
        _run(study.preset("quickstart"), args)
    elif args.command == "meta-train":
        try:
            config = study.load_config(args.config, args.settings)
        except ValueError as error:
            print(f"l2o-jax meta-train: {error}", file=sys.stderr)
            return 2
        if args.print_config:
            print(config.to_json())
            return 0
        if not args.workdir:
            print("l2o-jax meta-train: --workdir is required (where the runs, tables and plots go).", file=sys.stderr)
            return 2
        _run(config, args)
    elif args.command == "evaluate":
        _evaluate(args)
    elif args.command == "pretrained":
        _list_pretrained()
    elif args.command == "data":
        return _prepare_data(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
