"""Learned optimizers over whole training runs, against baselines tuned for each horizon: the page of a study run
by ``l2o_jax.study.run_study`` (the CLI's ``results.md`` is the same markdown), with the study's targets checked
against its data when the JSON names them (``targets``: the long-horizon study's, from issue 15)."""

from __future__ import annotations

import dataclasses

import numpy as np

from experiments.pages import markdown_table
from experiments.pages import renderer
from l2o_jax.evaluation import compare
from l2o_jax.study import markdown


def _comparison(task: dict, learned: str, baseline: str, step: int) -> dict | None:
    return next(
        (c for c in task["comparisons"] if (c["learned"], c["baseline"], c["step"]) == (learned, baseline, step)), None
    )


def _short(c: dict | None) -> str:
    """``'beats +18.0'``, ``'ties -0.1'``, ``'**loses** -33.9'`` (test accuracy, pp); ``-`` when not run."""
    if c is None:
        return "-"
    acc = c["eval_accuracy"]
    word = "**loses**" if acc["verdict"] == "loses to" else acc["verdict"]
    return f"{word} {100 * acc['mean_difference']:+.1f}"


def _speedup(task: dict, learned: str, baseline: str) -> float | None:
    s = next((s for s in task["speedups"] if (s["learned"], s["baseline"]) == (learned, baseline)), None)
    return None if s is None or s["step"] is None else s["ratio"]


def _at_least(data: dict, learned: str, baseline: str) -> tuple[list[str], list[str]]:
    """The tasks where ``learned`` never loses to ``baseline`` in test accuracy at a reported step, and the others."""
    horizons = data["protocol"]["horizons"]
    kept, lost = [], []
    for label, task in data["tasks"].items():
        verdicts = [_comparison(task, learned, baseline, h) for h in horizons if h <= task["steps"]]
        losing = any(c is not None and c["eval_accuracy"]["verdict"] == "loses to" for c in verdicts)
        (lost if losing else kept).append(label)
    return kept, lost


def _targets(data: dict) -> str:
    t, p = data["targets"], data["protocol"]
    learned, horizons = t["learned"], p["horizons"]
    rows = []
    for label, task in data["tasks"].items():
        for baseline in p["baselines"]:
            ratio = _speedup(task, learned, baseline)
            cells = [_short(_comparison(task, learned, baseline, h)) for h in horizons]
            speed = "never" if ratio is None else f"{ratio:.2f}x" + (" (met)" if ratio >= t["speedup"] else "")
            rows.append([label, baseline, *cells, speed])
    head = ["task", "baseline", *(f"step {h}" for h in horizons), f"speed-up to its step-{p['speedup_step']} loss"]
    lines = [
        f"## Targets ({t['source']})",
        f"{learned}'s test accuracy minus each baseline's (pp; **beats**/**loses** only when the 95 % interval "
        f"excludes zero), and how much sooner it reaches the baseline's step-{p['speedup_step']} test loss "
        f"(target {t['speedup']:g}x).",
        markdown_table(head, rows),
    ]
    summary = []
    for baseline in p["baselines"]:
        kept, lost = _at_least(data, learned, baseline)
        fast = [
            label for label, task in data["tasks"].items() if (_speedup(task, learned, baseline) or 0) >= t["speedup"]
        ]
        summary.append(
            f"- Against {baseline}: at least as accurate at every reported step on {len(kept)} of {len(data['tasks'])} "
            f"tasks" + (f" (loses on {', '.join(lost)})" if lost else "") + f"; {t['speedup']:g}x faster on "
            f"{len(fast)} of {len(data['tasks'])}" + (f" ({', '.join(fast)})" if fast else "") + "."
        )
    lines.append("\n".join(summary))
    lines += _against(data, t["comparator"], p["baselines"][0])
    lines += _meta_training(data, learned, t["ablation"])
    return "\n\n".join(lines)


def _against(data: dict, comparator: str, baseline: str) -> list[str]:
    """Seed 000's generalisation claim: the learned optimizer's advantage over ``baseline`` at least the
    comparator's, at each task's last step (means over meta-runs and seeds)."""
    learned = data["targets"]["learned"]
    rows, held = [], 0
    for label, task in data["tasks"].items():
        mine, theirs = (_comparison(task, name, baseline, task["steps"]) for name in (learned, comparator))
        if mine is None or theirs is None:
            continue
        a, b = (100 * c["eval_accuracy"]["mean_difference"] for c in (mine, theirs))
        held += a >= b
        rows.append([label, f"{a:+.2f}", f"{b:+.2f}", "yes" if a >= b else "no"])
    if not rows:
        return []
    head = ["task (last step)", f"{learned} − {baseline} (pp)", f"{comparator} − {baseline} (pp)", "at least"]
    return [
        f"{learned}'s advantage over {baseline} against {comparator}'s (means; the claim is that the graph optimizer's "
        f"advantage is at least the per-parameter one's on wider and deeper networks): held on {held} of "
        f"{len(rows)} tasks.",
        markdown_table(head, rows),
    ]


def _meta_training(data: dict, learned: str, ablation: str) -> list[str]:
    """What meta-training adds: the learned optimizer against its own starting point, in test accuracy."""
    rows, base = [], data["protocol"]["baselines"][0]
    for label, task in data["tasks"].items():
        for step in sorted({data["protocol"]["horizons"][0], task["steps"]}):
            mine, start = (_comparison(task, name, base, step) for name in (learned, ablation))
            if mine is None or start is None:
                continue
            result = compare(
                np.asarray(mine["eval_accuracy"]["learned"]), np.asarray(start["eval_accuracy"]["learned"])
            )
            c = dataclasses.asdict(result)
            rows.append(
                [
                    label,
                    str(step),
                    f"**{c['verdict']}** ({100 * c['mean_difference']:+.2f}, CI {100 * c['low']:+.2f} to "
                    f"{100 * c['high']:+.2f})",
                ]
            )
    if not rows:
        return []
    return [
        f"What meta-training adds: {learned} against {ablation} (its own initialisations, judged alike), test "
        "accuracy (pp), 95 % bootstrap interval over both sets of meta-runs and the shared seeds.",
        markdown_table(["task", "step", f"{learned} − {ablation}"], rows),
    ]


@renderer("horizon")
def render(data: dict) -> str:
    """The study's markdown, with the targets section before the per-task tables when the JSON names targets."""
    body = markdown(data)
    if not data.get("targets"):
        return body
    head, sep, rest = body.partition("\n\n## ")
    return head + "\n\n" + _targets(data) + sep + rest
