"""Turns learned optimizers meta-trained by an experiment script into shipped ``l2o_jax.pretrained`` entries.

    python experiments/replicate.py --scale smoke --workdir runs/pretrained_smoke \\
        --optimizers NG-GNN LSTM RecurrentGNN
    python experiments/export_pretrained.py runs/pretrained_smoke NG-GNN=ng-gnn-digits LSTM=lstm-digits \\
        RecurrentGNN=recurrent-gnn-digits

Each entry records the command that trained it, the data and protocol (from the run's ``configs.json``), the
checkpoint chosen, and the held-out evaluation of the run's ``summary.json`` next to the tuned baselines of that
same run. ``docs/pretrained.md`` is rewritten from every shipped entry.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from common import slug

from l2o_jax import pretrained
from l2o_jax.io import load_info
from l2o_jax.io import load_meta_params

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "pretrained.md")


def _read_json(path: str) -> dict:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: is {os.path.dirname(path)} a finished experiment run?")
    with open(path) as f:
        return json.load(f)


def _command_from_markdown(run_dir: str) -> str:
    """The command of a run written before ``summary.json`` recorded it: ``summary.md``'s first code span."""
    with open(os.path.join(run_dir, "summary.md")) as f:
        for line in f:
            if line.startswith("`python "):
                return line.strip().strip("`")
    raise ValueError(f"{run_dir}/summary.md does not say which command made the run.")


def entry_record(run_dir: str, optimizer: str) -> dict:
    """What an entry says of how it was made, read from the run directory ``run_dir``.

    Example:
      >>> entry_record('runs/pretrained_smoke', 'NG-GNN')['evaluation']['final_accuracy']
    """
    summary = _read_json(os.path.join(run_dir, "summary.json"))
    configs = _read_json(os.path.join(run_dir, "configs.json"))
    if optimizer not in configs["meta_training"]:
        raise ValueError(f"{run_dir} did not meta-train {optimizer!r}; it has {sorted(configs['meta_training'])}.")
    meta = configs["meta_training"][optimizer]
    metadata = load_info(os.path.join(run_dir, slug(optimizer), "best_meta_params"))["metadata"]
    results = {r["name"]: r for r in summary["results"]}
    return {
        "optimizer": optimizer,
        "command": summary.get("command") or _command_from_markdown(run_dir),
        "meta_training": {
            "task_family": meta["task_family"],
            "estimator": meta["estimator"],
            "outer_steps": meta["outer_steps"],
            "meta_lr": meta["meta_lr"],
            "checkpoint_chosen": metadata.get("outer_step"),
        },
        "evaluation": {
            "task": summary["eval_task"],
            "protocol": {k: configs["protocol"][k] for k in ("eval_steps", "seeds", "eval_task")},
            "learned": results[optimizer],
            "tuned_baselines": [r for name, r in results.items() if "(tuned" in name],
        },
    }


def _row(name: str, entry: dict) -> str:
    ev, meta = entry["evaluation"], entry["meta_training"]
    learned = ev["learned"]
    baselines = "; ".join(
        f"{b['name']}: {100 * b['final_accuracy']:.2f} ± {100 * b['final_accuracy_std']:.2f}"
        for b in ev["tuned_baselines"]
    )
    return (
        f"| `{name}` | {entry['config']['type']} | {meta['outer_steps']} (best: {meta['checkpoint_chosen']}) | "
        f"{ev['task']}, {learned['steps']} steps x {learned['seeds']} seeds | "
        f"{100 * learned['final_accuracy']:.2f} ± {100 * learned['final_accuracy_std']:.2f} | {baselines} |"
    )


def write_doc(path: str = DOC) -> str:
    """Rewrites ``docs/pretrained.md`` from every shipped entry."""
    names = pretrained.available()
    lines = [
        "# Pretrained learned optimizers",
        "",
        "Shipped inside the package (`l2o_jax/pretrained/`); use one by name:",
        "",
        "```python",
        "tx = optax.chain(optax.clip_by_global_norm(1.0), l2o_jax.graph_l2o('ng-gnn-digits'))",
        "```",
        "",
        "Accuracy is the held-out test accuracy (%) after the stated steps, mean ± std over seeds, next to the",
        "baselines tuned on that task's validation split in the same run. `l2o_jax.pretrained.info(name)` has the",
        "full record (task family, estimator, evaluation curves' summary). Every entry so far was meta-trained at",
        "CPU scale on the embedded `digits` data; paper-protocol (FashionMNIST, GPU) entries come from",
        "`experiments/replicate.py --scale paper` runs exported the same way.",
        "",
        "| name | family | outer steps | evaluated on | accuracy (%) | tuned baselines, same run (%) |",
        "|---|---|---|---|---|---|",
        *(_row(n, pretrained.info(n)) for n in names),
        "",
        "## How each was made",
        "",
        *(f"- `{n}`: `{pretrained.info(n)['command']}`" for n in names),
        "",
        "then `python experiments/export_pretrained.py <workdir> NAME=entry ...`.",
        "",
    ]
    notes = _kept_notes(path)
    with open(path, "w") as f:
        f.write("\n".join(lines) + notes)
    return path


def _kept_notes(path: str) -> str:
    """The hand-written ``## Notes`` section of the existing page (measurements beyond the records), if any."""
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        text = f.read()
    start = text.find("\n## Notes")
    return text[start:] if start >= 0 else ""


def main(argv: list[str] | None = None) -> list[str]:
    """Exports ``OPTIMIZER=name`` pairs from a run directory; returns the entry names written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="an experiments/replicate.py or improvements.py run directory")
    parser.add_argument("pairs", nargs="+", help="OPTIMIZER=entry-name, e.g. NG-GNN=ng-gnn-digits")
    parser.add_argument("--directory", default=None, help="where to write (default: inside the package)")
    args = parser.parse_args(argv)
    written = []
    for pair in args.pairs:
        optimizer, sep, name = pair.partition("=")
        if not sep:
            parser.error(f"{pair!r} is not OPTIMIZER=entry-name")
        meta_params = load_meta_params(os.path.join(args.run_dir, slug(optimizer), "best_meta_params"))
        pretrained.save(name, meta_params, entry_record(args.run_dir, optimizer), directory=args.directory)
        written.append(name)
        print(f"wrote {name} ({meta_params.num_parameters} meta-parameters)")
    if args.directory is None:
        print(f"rewrote {write_doc()}")
    return written


if __name__ == "__main__":
    main(sys.argv[1:])
