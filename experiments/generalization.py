"""Seed 000, experiment 3: the meta-trained NG-GNN, NG-T and LSTM on CNNs of growing width (at the meta-training
depth) and depth (at the meta-training width). Each size gets its own tuned Adam; the advantage is a learned
optimizer's final test accuracy minus tuned Adam's, per seed (same initialisations and batches), mean ± std
(Figure 3: ``figure3_width.png`` and ``figure3_depth.png``, the meta-training size dashed).

    python experiments/generalization.py --scale smoke --workdir runs/generalization_smoke \\
        --from-run runs/replicate_smoke                  # reuse replicate.py's optimizers; else meta-train them
    python experiments/generalization.py --scale paper --workdir runs/generalization_paper \\
        --from-run runs/replicate_paper
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from common import build_parser
from common import closing_sections
from common import command_line
from common import configure
from common import describe
from common import held_out_changes
from common import prepare_run
from common import write_summary

from l2o_jax import evaluation
from l2o_jax import study
from l2o_jax.tasks import image_task

OPTIMIZERS = ("NG-GNN", "NG-T", "LSTM")


def evaluate_sizes(protocol: study.StudyConfig, trained: dict, sizes) -> dict:
    """``{(width, depth): (tuned, results)}``: each size's tuned baselines, then every optimizer's curves."""
    out = {}
    for i, (width, depth) in enumerate(sizes):
        task = image_task(**{**protocol.eval_task, "width": width, "depth": depth})
        print(
            f"[{i + 1}/{len(sizes)}] {task.name}: tuning {', '.join(protocol.baselines)}, evaluating "
            f"{len(trained)} learned optimizers",
            flush=True,
        )
        tuned = study.tune_baselines(protocol, task)
        out[(width, depth)] = tuned, study.evaluate_optimizers(protocol, task, trained, tuned)
    return out


def advantages(results: list, names) -> dict[str, tuple[float, float]]:
    """Per learned optimizer, final test accuracy minus the first baseline's, per seed, in percentage points:
    ``{name: (mean, std)}``."""
    reference = results[len(names)].eval_accuracy[:, -1]
    diffs = {name: 100 * (r.eval_accuracy[:, -1] - reference) for name, r in zip(names, results)}
    return {name: (float(d.mean()), float(d.std())) for name, d in diffs.items()}


def advantage_table(by_size: dict, names, axis: str, sizes) -> str:
    """Markdown: for each size along ``axis``, tuned Adam's accuracy and each optimizer's advantage."""
    head = f"| {axis} | tuned Adam accuracy (%) | " + " | ".join(f"{n} advantage (pp)" for n in names) + " |"
    rows = [head, "|---" * (len(names) + 2) + "|"]
    for size in sizes:
        _, results = by_size[size]
        adam = results[len(names)].final_accuracy
        adv = advantages(results, names)
        cells = " | ".join(f"{adv[n][0]:+.2f} ± {adv[n][1]:.2f}" for n in names)
        rows.append(
            f"| {size[0] if axis == 'width' else size[1]} | {100 * adam[0]:.2f} ± {100 * adam[1]:.2f} | {cells} |"
        )
    return "\n".join(rows)


def plot_axis(by_size: dict, names, sizes, axis: str, reference: int, path: str, scale: str) -> str:
    """Figure 3's panel for one axis: advantage over tuned Adam (mean ± std) vs width or depth."""
    xs = [s[0] if axis == "width" else s[1] for s in sizes]
    per_size = [advantages(by_size[s][1], names) for s in sizes]
    curves = {n: ([a[n][0] for a in per_size], [a[n][1] for a in per_size]) for n in names}
    return evaluation.plot_advantage(
        xs,
        curves,
        path,
        xlabel=f"CNN {axis}",
        reference=reference,
        title=f"advantage over tuned Adam vs {axis} ({scale} scale)",
    )


def main(argv: list[str] | None = None) -> dict:
    """Runs the generalization study; ``argv`` as on the command line (``None``: ``sys.argv[1:]``)."""
    started = time.perf_counter()
    parser = build_parser("Figure 3: generalization to wider and deeper CNNs", OPTIMIZERS)
    parser.add_argument("--widths", nargs="+", type=int, help="width sweep (at the meta-training depth)")
    parser.add_argument("--depths", nargs="+", type=int, help="depth sweep (at the meta-training width)")
    args = parser.parse_args(argv)
    args.baselines = args.baselines or ["adam"]
    scale, protocol = configure(args)
    workdir, trained, provenance = prepare_run(args, scale)
    family = protocol.meta.task_family
    train_width, train_depth = family.widths[0], family.depths[0]
    widths = [(w, train_depth) for w in args.widths or scale.widths]
    depths = [(train_width, d) for d in args.depths or scale.depths]
    by_size = evaluate_sizes(protocol, trained, list(dict.fromkeys(widths + depths)))
    names = list(trained)
    figures = [
        plot_axis(by_size, names, sizes, axis, ref, os.path.join(workdir, f"figure3_{axis}.png"), args.scale)
        for sizes, axis, ref in ((widths, "width", train_width), (depths, "depth", train_depth))
    ]
    evaluation.save_results(
        [r for _, results in by_size.values() for r in results], os.path.join(workdir, "results.json")
    )
    dataset = protocol.eval_task["dataset"]
    paragraphs = [
        f"`{command_line('generalization.py', argv)}`",
        describe(args.scale, protocol),
        held_out_changes(image_task(**protocol.selection_task).data, image_task(**protocol.eval_task).data),
        f"## Width (depth {train_depth}; meta-trained at width {train_width})",
        advantage_table(by_size, names, "width", widths),
        f"![width]({os.path.basename(figures[0])})",
        f"## Depth (width {train_width}; meta-trained at depth {train_depth})",
        advantage_table(by_size, names, "depth", depths),
        f"![depth]({os.path.basename(figures[1])})",
        *closing_sections(
            provenance,
            {f"{dataset} w{w} d{d}": tuned for (w, d), (tuned, _) in by_size.items()},
            time.perf_counter() - started,
        ),
    ]
    summary = {
        "scale": args.scale,
        "learned": provenance,
        "seconds": round(time.perf_counter() - started, 1),
        "sizes": [
            {
                "width": w,
                "depth": d,
                "tuned": [dataclasses.asdict(t) for t in tuned],
                "advantage_pp": advantages(results, names),
                "results": [r.summary() for r in results],
            }
            for (w, d), (tuned, results) in by_size.items()
        ],
    }
    path = write_summary(workdir, "Figure 3: generalization to wider and deeper CNNs", paragraphs, summary)
    print(open(path).read())
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
