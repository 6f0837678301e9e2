"""Ships learned optimizers from a finished long-horizon study (``experiments.horizon``) as ``l2o_jax.pretrained``
entries, each with its record and a run 5x past the study's reported horizon.

    python -m experiments.horizon --workdir runs/horizon_smoke --learned NG-GNN
    python -m experiments.export_pretrained --study docs/results/horizon_smoke.json --workdir runs/horizon_smoke \\
        NG-GNN=ng-gnn-digits

Which meta-run ships is decided by a rule fixed in advance, never by test numbers: the one whose selected
checkpoint has the lowest validation loss under the study's checkpoint rule. The entry's record holds the exact
commands, the meta-training recipe (estimator, horizons, outer steps), the checkpoint chosen, the study's test
numbers of that meta-run at every reported horizon next to the tuned baselines, and a ``long_run`` evaluation
(``--long-steps``, default 5000) on the study's first held-out task. ``docs/pretrained.md`` is rewritten from every
shipped entry.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

import numpy as np

from experiments import report
from experiments.pages.pretrained import pretrained_doc
from l2o_jax import evaluation
from l2o_jax import io
from l2o_jax import pretrained
from l2o_jax.meta.unroll import learned_transform_for
from l2o_jax.study import selected_path
from l2o_jax.tasks import image_task


def chosen_meta_run(selection: list[dict]) -> int:
    """The meta-run to ship: the lowest validation loss of its selected checkpoint (the study's rule)."""
    return min(selection, key=lambda s: s["validation_loss"][str(s["selected_step"])])["meta_seed"]


def long_run(meta_params, task_args: dict, steps: int, seeds: int = 5) -> dict:
    """Test accuracy and loss of ``meta_params`` over a ``steps``-step run: the worst drop below its own best
    accuracy, and whether every value stayed finite.

    Example:
      >>> long_run(pretrained.load('ng-gnn-digits'), {'dataset': 'digits', 'width': 16, 'depth': 2}, 5000)
    """
    task = image_task(**task_args)
    result = evaluation.evaluate(
        learned_transform_for(meta_params, task, total_steps=steps), task, steps, seeds, eval_every=steps // 20
    )
    accuracy = result.eval_accuracy.mean(0)
    return {
        "task": task.name,
        "steps": steps,
        "seeds": seeds,
        "eval_steps": result.eval_steps.tolist(),
        "test_accuracy": accuracy.tolist(),
        "test_loss": result.eval_loss.mean(0).tolist(),
        "finite": bool(np.isfinite(result.eval_loss).all() and np.isfinite(result.train_loss).all()),
        "largest_drop_below_best": float(np.max(np.maximum.accumulate(accuracy) - accuracy)),
    }


def entry_record(study: dict, label: str, meta_seed: int, command: str) -> dict:
    """What an entry says of how it was made: commands, recipe, chosen checkpoint, the study's numbers."""
    protocol = study["protocol"]
    selection = next(s for s in study["selection"][label] if s["meta_seed"] == meta_seed)
    task_label, task = next(iter(study["tasks"].items()))
    comparisons = [
        {
            "step": c["step"],
            "baseline": c["baseline"],
            "learned_accuracy": float(np.mean(c["eval_accuracy"]["learned"][meta_seed])),
            "baseline_accuracy": float(np.mean(c["eval_accuracy"]["baseline"])),
            "learned_loss": float(np.mean(c["eval_loss"]["learned"][meta_seed])),
            "baseline_loss": float(np.mean(c["eval_loss"]["baseline"])),
        }
        for c in task["comparisons"]
        if c["learned"] == label
    ]
    return {
        "optimizer": label,
        "command": study["provenance"]["command"],
        "export_command": command,
        "meta_training": {
            **protocol["meta_training"],
            "meta_seed": meta_seed,
            "checkpoint_chosen": selection["selected_step"],
            "selection_rule": protocol["selection_rule"],
        },
        "evaluation": {
            "task": task_label,
            "task_args": task["task"],
            "comparisons": comparisons,
            "tuned_learning_rates": {
                name: {h: t["learning_rate"] for h, t in by_horizon.items()}
                for name, by_horizon in task["tuned"].items()
            },
        },
    }


def write_doc(path: str = report.PRETRAINED_DOC) -> str:
    """Rewrites ``docs/pretrained.md`` from every shipped entry (``experiments.pages.pretrained``)."""
    with open(path, "w") as f:
        f.write(pretrained_doc())
    return path


def main(argv: list[str] | None = None) -> list[str]:
    """Exports ``OPTIMIZER=name`` pairs from a study; returns the entry names written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", help="OPTIMIZER=entry-name, e.g. NG-GNN=ng-gnn-digits")
    parser.add_argument("--study", required=True, help="the study's result JSON (docs/results/horizon_smoke.json)")
    parser.add_argument("--workdir", required=True, help="the study's --workdir, which holds the meta-runs")
    parser.add_argument("--long-steps", type=int, default=5000, help="steps of the recorded long run")
    parser.add_argument("--directory", default=None, help="where to write (default: inside the package)")
    args = parser.parse_args(argv)
    with open(args.study) as f:
        data = json.load(f)
    given = argv if argv is not None else sys.argv[1:]
    command = shlex.join(["python", "-m", "experiments.export_pretrained", *given])
    written = []
    for pair in args.pairs:
        label, sep, name = pair.partition("=")
        if not sep:
            parser.error(f"{pair!r} is not OPTIMIZER=entry-name")
        if label not in data["selection"]:
            parser.error(f"the study did not meta-train {label!r}; it has {sorted(data['selection'])}")
        seed = chosen_meta_run(data["selection"][label])
        meta_params = io.load_meta_params(selected_path(args.workdir, label, seed))
        record = entry_record(data, label, seed, command)
        record["long_run"] = long_run(meta_params, record["evaluation"]["task_args"], args.long_steps)
        pretrained.save(name, meta_params, record, directory=args.directory)
        written.append(name)
        print(f"wrote {name} (meta-seed {seed}, {meta_params.num_parameters} meta-parameters)")
    if args.directory is None:
        print(f"rewrote {write_doc()}")
    return written


if __name__ == "__main__":
    main()
