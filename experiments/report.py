"""Every page under ``docs/results/`` from the JSON file beside it, and README's results table.

    python -m experiments.report            # rewrites docs/results/*.md and README's results block
    python -m experiments.report --check    # exits 1, naming the files, if any of them is stale

An experiment writes one JSON file per page: ``{"kind": ..., "title": ..., "provenance": provenance(...), ...}``.
The page is ``RENDERERS[kind](data)`` between the title and the provenance, so a page says nothing its data does
not hold. Adding a kind is one function::

    @renderer("horizon_smoke")
    def _horizon(data: dict) -> str:
        return "\\n\\n".join([describe(data), curves_table(data["results"], marks=(100, 1000))])

Hand-written reading of a run goes in the JSON's ``notes`` (markdown paragraphs), shown under a heading that
says so. ``docs/results/retired/`` holds pages that predate this protocol; they are not rendered.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from typing import Callable

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "results")
README = os.path.join(ROOT, "README.md")
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

#: Page renderers by the JSON's ``kind``: ``data -> markdown`` (the page's body, without title or provenance).
RENDERERS: dict[str, Callable[[dict], str]] = {}


def renderer(kind: str):
    """Registers the decorated ``data -> markdown`` function as the renderer of JSON files of ``kind``."""

    def register(function):
        RENDERERS[kind] = function
        return function

    return register


def provenance(started: float | None = None, *, command: str | None = None) -> dict:
    """What a result's JSON records about how it was made: the exact command, the code version, the machine and
    the wall time since ``started`` (a ``time.perf_counter()`` value).

    Example:
      >>> started = time.perf_counter()
      >>> ...  # the experiment
      >>> data = {"kind": "li_malik", "title": ..., "provenance": provenance(started), ...}
    """
    import jax

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    argv = getattr(sys, "orig_argv", sys.argv)
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "command": command or shlex.join(["python", *argv[1:]]),
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_changes": None if status is None else bool(status),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()],
        },
        "seconds": None if started is None else round(time.perf_counter() - started, 1),
        "finished": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def save(data: dict, path: str) -> str:
    """Writes a result's JSON and its page (the same path with ``.md``); returns the page's path.

    Example:
      >>> save({"kind": "li_malik", "title": "...", "provenance": provenance(started), ...}, "docs/results/x.json")
    """
    if data.get("kind") not in RENDERERS:
        raise ValueError(f"unknown result kind {data.get('kind')!r}; known: {sorted(RENDERERS)}.")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    page = os.path.splitext(path)[0] + ".md"
    with open(page, "w") as f:
        f.write(render(data))
    return page


def render(data: dict) -> str:
    """The markdown page of one result."""
    kind = data.get("kind")
    if kind not in RENDERERS:
        raise ValueError(f"unknown result kind {kind!r}; known: {sorted(RENDERERS)}.")
    parts = [f"# {data['title']}", RENDERERS[kind](data).strip()]
    if data.get("notes"):
        parts += ["_Written by hand after the run (the sections above are generated from the data):_", *data["notes"]]
    parts.append(provenance_section(data.get("provenance") or {}))
    return "\n\n".join(p.strip() for p in parts) + "\n"


def provenance_section(p: dict) -> str:
    """Markdown: how the result was made, with what was not recorded said so."""
    missing = "not recorded"
    machine = p.get("machine")
    if machine:
        machine = (
            f"{machine['platform']}, {machine['cpu_count']} CPUs, Python {machine['python']}, jax {machine['jax']}, "
            f"devices {', '.join(machine['devices'])}"
        )
    commit = p.get("commit")
    if commit:
        commit = f"`{commit[:12]}`" + (" with uncommitted changes" if p.get("uncommitted_changes") else "")
    seconds = p.get("seconds")
    lines = [
        "## Provenance",
        "",
        f"- Command: `{p['command']}`" if p.get("command") else f"- Command: {missing}",
        f"- Code: {commit or missing}",
        f"- Machine: {machine or missing}",
        f"- Wall time: {f'{seconds:.0f} s' if seconds is not None else missing}",
    ]
    if p.get("finished"):
        lines.append(f"- Finished: {p['finished']}")
    if p.get("note"):
        lines.append(f"- Note: {p['note']}")
    return "\n".join(lines)


def load_results(directory: str = RESULTS) -> dict[str, dict]:
    """Every result JSON directly under ``directory`` (not ``retired/``), by file name."""
    results = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict) or data.get("kind") not in RENDERERS:
            kind = data.get("kind") if isinstance(data, dict) else None
            raise ValueError(f"{path}: not a result file (kind {kind!r}; known kinds: {sorted(RENDERERS)}).")
        results[os.path.basename(path)] = data
    return results


def readme_table(results: dict[str, dict]) -> str:
    """Markdown: one row per result page, for README's results block."""
    rows = [
        "Every page below is written from the JSON file beside it by `python -m experiments.report`.",
        "",
        "| result | page | command | wall time |",
        "|---|---|---|---|",
    ]
    for name, data in results.items():
        page = os.path.splitext(name)[0] + ".md"
        p = data.get("provenance") or {}
        seconds = f"{p['seconds']:.0f} s" if p.get("seconds") is not None else "not recorded"
        command = f"`{p['command']}`" if p.get("command") else "not recorded"
        rows.append(f"| {data['title']} | [{page}](docs/results/{page}) | {command} | {seconds} |")
    return "\n".join(rows)


def with_readme_table(readme: str, table: str) -> str:
    """``readme`` with the text between the results markers replaced by ``table``."""
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or readme.index(BEGIN) > readme.index(END):
        raise ValueError(f"README.md needs exactly one {BEGIN} ... {END} block for the results table.")
    head, rest = readme.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def outputs(directory: str = RESULTS, readme: str = README) -> dict[str, str]:
    """Every file the report writes, by path, with its text: computed in memory, nothing is touched."""
    results = load_results(directory)
    files = {os.path.join(directory, os.path.splitext(n)[0] + ".md"): render(d) for n, d in results.items()}
    with open(readme) as f:
        files[readme] = with_readme_table(f.read(), readme_table(results))
    return files


# --- helpers for renderers -------------------------------------------------------------------------------------


def slug(label: str) -> str:
    """A file-name form of a label: ``'digits CNN-8, depth 4'`` -> ``'digits-cnn-8-depth-4'``."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def mean_std(values, digits: int = 4, scale: float = 1.0) -> str:
    """``'0.1234 ± 0.0056'``: mean ± std over the leading axis (seeds)."""
    values = scale * np.asarray(values, np.float64)
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


def at_step(curve: dict, key: str, step: int) -> np.ndarray:
    """A curve's per-seed values of ``key`` (``'eval_loss'`` or ``'eval_accuracy'``) at ``step``."""
    return np.asarray(curve[key])[:, list(curve["eval_steps"]).index(step)]


def objective_table(curves: list[dict], marks: tuple[int, ...], key: str = "eval_loss") -> str:
    """Markdown: each curve's ``key`` at ``marks`` and its mean over the run, mean ± std over seeds."""
    rows = [
        "| optimizer | " + " | ".join(f"step {m}" for m in marks) + " | mean over run |",
        "|---" * (len(marks) + 2) + "|",
    ]
    for c in curves:
        cells = [mean_std(at_step(c, key, m)) for m in marks] + [mean_std(np.asarray(c[key]).mean(1))]
        rows.append(f"| {c['name']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def final_table(curves_by_task: dict[str, list[dict]], split: str = "test") -> str:
    """Markdown: final accuracy, loss and training loss per task and optimizer, mean ± std over seeds."""
    rows = [
        f"| task | optimizer | {split} accuracy (%) | {split} loss | train loss (last 10 steps) |",
        "|---|---|---|---|---|",
    ]
    for task, curves in curves_by_task.items():
        for c in curves:
            rows.append(
                f"| {task} | {c['name']} | {100 * c['final_accuracy']:.2f} ± {100 * c['final_accuracy_std']:.2f} | "
                f"{c['final_loss']:.4f} ± {c['final_loss_std']:.4f} | {c['final_train_loss']:.4f} |"
            )
    return "\n".join(rows)


# --- the kinds --------------------------------------------------------------------------------------------------


@renderer("li_malik")
def _li_malik(data: dict) -> str:
    """Seed 003: policy-search optimizers and tuned baselines, the training objective along the run."""
    setup, tuning = data["setup"], data["tuning"]
    parts = [
        f"Meta-training task: `{setup['train_task']}`; unroll {setup['unroll']} steps; policy LSTM width "
        f"{setup['hidden']}.",
        "Meta-training wall time (s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in setup["meta_training_seconds"].items())
        + ".",
        f"Baseline learning rates tuned on `{tuning['task']}` over {tuning['steps']} steps ({tuning['seeds']} "
        f"seeds, {tuning['rule']}): " + ", ".join(f"{k} {v:g}" for k, v in tuning["learning_rates"].items()) + ".",
    ]
    for task, curves in data["tasks"].items():
        seeds = curves[0]["seeds"]
        parts += [
            f"**{task}** (full-batch training objective; mean ± std over {seeds} seeds)",
            objective_table(curves, tuple(data["marks"])),
        ]
    parts.append(f"![objective vs iteration]({data['figure']})")
    return "\n\n".join(parts)


@renderer("learned_backward")
def _learned_backward(data: dict) -> str:
    """Seed 001: a learned backward pass against true gradients under the same optimizer and learning rate."""
    setup, tuning = data["setup"], data["tuning"]
    meta_rows = [
        "| optimizer | meta-loss, backprop init | meta-loss, meta-trained | first → last 10 training meta-losses | s |",
        "|---|---|---|---|---|",
    ]
    for name, r in data["meta_training"].items():
        meta_rows.append(
            f"| {name} {r['lr']:g} | {r['before']:.4f} | {r['after']:.4f} | {r['first_10']:.4f} → "
            f"{r['last_10']:.4f} | {r['seconds']:.0f} |"
        )
    gaps = []
    for task, curves in data["tasks"].items():
        for name in data["optimizers"]:
            true = next(c for c in curves if c["name"].startswith(name + " ") and c["name"].endswith("true gradients"))
            learned = next(c for c in curves if c["name"].startswith(name + " ") and c["name"].endswith("backward"))
            gap = 100 * (learned["final_accuracy"] - true["final_accuracy"])
            loss_gap = learned["final_loss"] - true["final_loss"]
            gaps.append(f"- {task}, {name}: learned − true = {gap:+.2f} pp accuracy, {loss_gap:+.4f} test loss")
    first = next(iter(data["tasks"].values()))[0]
    return "\n\n".join(
        [
            f"Meta-training: `{setup['train_task']}` family, BPTT through {setup['unroll']}-step unrolls x "
            f"{setup['num_tasks']} optimizees, {setup['outer_steps']} outer steps of Adam {setup['meta_lr']:g} "
            f"(cosine); node and edge networks of width {setup['hidden']}, {setup['layers']} hidden layers "
            f"({setup['meta_parameters']} meta-parameters). One learned backward pass per optimizer, meta-trained "
            "under it at the learning rate tuned for it on true gradients (grid "
            + ", ".join(f"{k} {list(v)}" for k, v in tuning["grid"].items())
            + f"; {tuning['rule']} after {tuning['steps']} steps on the meta-training architecture, "
            f"{tuning['seeds']} seeds): " + ", ".join(f"{k} {v:g}" for k, v in tuning["learning_rates"].items()) + ".",
            "## Meta-loss on held-out seeds (mean training loss over the unroll)",
            "\n".join(meta_rows),
            f"## Held-out tasks: {first['steps']} steps, {first['seeds']} seeds (mean ± std)",
            final_table(data["tasks"]),
            "Learned backward minus true gradients under the same optimizer and learning rate:",
            "\n".join(gaps),
            f"![test loss and accuracy vs step]({data['figure']})",
        ]
    )


def _verdict(c: dict, scale: float, digits: int) -> str:
    """A comparison dict (``stats.Comparison`` as data) as ``'beats (+1.20, CI +0.40 to +2.00)'``."""
    m, lo, hi = (scale * c[k] for k in ("mean_difference", "low", "high"))
    return f"**{c['verdict']}** ({m:+.{digits}f}, CI {lo:+.{digits}f} to {hi:+.{digits}f})"


def _across_runs(values) -> str:
    """``'95.1 ± 0.4'``: mean ± std across meta-runs of the per-run mean over seeds, in %."""
    per_run = 100 * np.asarray(values, np.float64).reshape(-1, np.shape(values)[-1]).mean(1)
    return f"{per_run.mean():.2f} ± {per_run.std():.2f}"


@renderer("horizon")
def _horizon(data: dict) -> str:
    """Issue 15: learned optimizers over whole runs, against baselines tuned for each horizon."""
    p = data["protocol"]
    meta = p["meta_training"]
    estimator = meta["estimator"]
    parts = [
        f"Meta-training ({p['meta_seeds']} independent meta-seeds per learned optimizer): "
        f"`{estimator['type']}` with {estimator['truncation_length']}-step truncations of inner runs lasting "
        f"{estimator['horizon']['low']}-{estimator['horizon']['high']} steps (log-uniform, staggered), meta-loss "
        f"`{estimator['unroll']['meta_loss']}`, {meta['outer_steps']} outer steps of Adam {meta['meta_lr']:g} "
        f"({meta['schedule']}), {estimator['num_tasks']} optimizees per step. Checkpoint rule: {p['selection_rule']}.",
        "How a step is formed (every learned optimizer here): `update = -lr * exp(b * tanh(m / b)) * (adam + d)`, "
        "Adam's bias-corrected direction plus a learned correction `d`, scaled by a learned per-parameter "
        "magnitude `m` bounded by `b` and a learned global step size `lr`.",
        f"Baselines ({', '.join(p['baselines'])}) tuned on the validation split for each horizon separately "
        f"(learning rates {min(p['learning_rates']):g}-{max(p['learning_rates']):g}, x2 grid, weight decay "
        f"{p['weight_decays']}, {p['tuning_seeds']} seeds; horizons beyond {p['full_grid_until']} steps search the "
        f"grid points within {p['zoom']:g}x of the previous horizon's pick, widened to the whole grid when the pick "
        f"lands on that zoom's edge); every optimizer evaluated on the test split over "
        f"{p['seeds']} seeds (the same seeds for all). Differences: learned minus baseline, 95 % bootstrap interval "
        "over meta-runs x seeds; **beats**/**loses to** only when it excludes zero.",
    ]
    for label, task in data["tasks"].items():
        rows = [
            "| step | learned | baseline (tuned for this horizon) | learned acc. (%), across meta-runs | "
            "baseline acc. (%), across seeds | "
            "difference (pp) | test loss difference |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in task["comparisons"]:
            tuned = task["tuned"][c["baseline"]][str(c["step"])]
            edge = ", on the grid's edge" if tuned.get("on_edge") else ""
            acc, loss = c["eval_accuracy"], c["eval_loss"]
            rows.append(
                f"| {c['step']} | {c['learned']} | {c['baseline']} (lr {tuned['learning_rate']:g}{edge}) | "
                f"{_across_runs(acc['learned'])} | {mean_std(acc['baseline'], 2, 100)} | {_verdict(acc, 100, 2)} | "
                f"{_verdict(loss, 1, 4)} |"
            )
        speed = [
            f"- {s['learned']} reaches {s['baseline']}'s step-{p['speedup_step']} test loss ({s['target_loss']:.4f}) "
            + (f"at step {s['step']}: **{s['ratio']:.2f}x**" if s["step"] is not None else "**never** in the run")
            for s in task["speedups"]
        ]
        parts += [
            f"## {label} ({task['changes']}; {task['steps']} steps)",
            "\n".join(rows),
            "Speed-up (first evaluated step at which the mean test loss over meta-runs and seeds reaches the "
            "baseline's):",
            "\n".join(speed),
            f"![test accuracy and loss vs step]({task['figure']})",
        ]
    if data.get("not_run"):
        parts.append("Held-out tasks of the protocol that were not run: " + ", ".join(data["not_run"]) + ".")
    return "\n\n".join(parts)


@renderer("gpu")
def _gpu(data: dict) -> str:
    """The device check (``experiments/device_check.py``): is the accelerator used, what the learned optimizers
    cost as ratios to Adam timed in the same run, and a short slice of the paper protocol."""
    pieces = data["pieces"]
    status = ["| piece | status | seconds (limit) |", "|---|---|---|"]
    status += [f"| {n} | {p['status']} | {p['seconds']} ({p['limit_s']:.0f}) |" for n, p in pieces.items()]
    errors = [f"- {n}: `{p['error']}`" for n, p in pieces.items() if p.get("error")]
    parts = [f"Mode `{data['mode']}`.", "\n".join(status), *(["Errors:\n" + "\n".join(errors)] if errors else [])]
    result = lambda name: pieces.get(name, {}).get("result")
    if acc := result("accelerator"):
        verdict = "skipped (CPU allowed)" if acc["skipped"] else "yes" if acc["ok"] else "**no**"
        parts.append(
            f"Accelerator in use: {verdict}. {acc['devices']} x {acc['platform']} ({acc['device_kind']}), jax "
            f"{acc['jax']}; a CNN training step ran on {', '.join(acc['conv_step_ran_on'])} with "
            f"`{acc['conv_implementation']}` convolutions (kernels found in the compiled step: {acc['conv_kernels']})."
        )
    if steps := result("step_overhead"):
        rows = ["| optimizee | optimizer | ms / step | vs Adam |", "|---|---|---|---|"]
        rows += [
            f"| {r['optimizee']} | {r['optimizer']} | {r['ms_per_step']:.2f} | {r['vs_adam']:.2f}x |"
            for r in steps["rows"]
        ]
        parts += [f"## Training step (batch {steps['batch']})", "\n".join(rows)]
    if meta := result("meta_throughput"):
        parts += [
            "## Meta-training throughput",
            f"One BPTT outer step of GraphL2O on {meta['task']}, {meta['tasks']} tasks x {meta['length']} steps: "
            f"{meta['outer_step_s']:.3f} s, {meta['vs_adam']:.2f}x the same Adam steps ({meta['adam_steps_s']:.3f} "
            f"s); {meta['inner_steps_per_s']:.0f} inner steps/s; compiled in {meta['compile_s']:.1f} s.",
        ]
    if gmn := result("scalegmn"):
        parts += [
            "## ScaleGMN single shot",
            f"{gmn['network']}: one `finetune` call {gmn['finetune_ms']:.2f} ms, {gmn['vs_adam_step']:.2f}x one "
            f"Adam step ({gmn['adam_step_ms']:.2f} ms).",
        ]
    if paper := result("paper_slice"):
        rows = ["| optimizer | final test accuracy (%) | final test loss |", "|---|---|---|"]
        rows += [
            f"| {r['name']} | {100 * r['final_accuracy']:.2f} ± {100 * (r['final_accuracy_std'] or 0):.2f} | "
            f"{r['final_loss']:.4f} |"
            for r in paper["results"]
        ]
        data_note = " (mock tfds data: pipeline check only)" if paper["mock_data"] else ""
        parts += [
            "## A slice of the paper protocol",
            f"`{paper['command']}` on {paper['eval_task']}{data_note}, {paper['seconds']:.0f} s.",
            "\n".join(rows),
        ]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any file is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        current = open(path).read() if os.path.exists(path) else None
        if current == text:
            continue
        stale.append(os.path.relpath(path, ROOT))
        if not args.check:
            with open(path, "w") as f:
                f.write(text)
    verb = "stale" if args.check else "rewritten"
    print(f"{verb}: {', '.join(stale)}" if stale else "every page is up to date")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
