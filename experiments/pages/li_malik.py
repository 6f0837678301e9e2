"""Li & Malik (2017): one optimizer policy trained by GPS, ES, PES and REINFORCE, against tuned baselines."""

from __future__ import annotations

import numpy as np

from experiments.pages import across_runs
from experiments.pages import markdown_table
from experiments.pages import mean_std
from experiments.pages import renderer
from experiments.pages import verdict
from l2o_jax import io


def _meta_training(data: dict) -> str:
    header = ["trainer", "estimator", "outer steps x optimizee steps", "meta-loss, first -> last 10 % (per meta-run)",
              "skipped steps", "seconds per meta-run"]  # fmt: skip
    rows = []
    for label, records in data["meta_training"].items():
        trainer = data["protocol"]["trainers"][label]
        rows.append([
            label, f"`{trainer['estimator']}`",
            f"{trainer['outer_steps']} x {trainer['optimizee_steps_per_outer_step']}",
            ", ".join(f"{r['first_meta_loss']:.3g} -> {r['last_meta_loss']:.3g}" for r in records),
            ", ".join(str(r["skipped_steps"]) for r in records),
            ", ".join(format(r["seconds"], ".0f") for r in records),
        ])  # fmt: skip
    return markdown_table(header, rows)


def _tuning(tuned: dict) -> str:
    rows = []
    for label, by_horizon in tuned.items():
        for horizon, t in by_horizon.items():
            pick = next(s for s in t["scores"] if s["learning_rate"] == t["learning_rate"])
            edge = " (on the grid's edge)" if t["on_edge"] else ""
            rows.append([label, horizon, f"{t['learning_rate']:.4g}{edge}", f"{pick['val_loss']:.4f}",
                         f"{100 * pick['val_accuracy']:.2f}"])  # fmt: skip
    header = ["baseline", "horizon", "learning rate", "validation loss", "validation accuracy (%)"]
    return markdown_table(header, rows)


def _train_loss(curve: dict, step: int) -> np.ndarray:
    """``[seeds]`` minibatch training loss over the ``eval_every`` steps before ``step``."""
    return np.asarray(curve["train_loss"], np.float64)[:, curve["eval_steps"].index(step)]


def _comparisons(entry: dict) -> str:
    rows = []
    for step in sorted({c["step"] for c in entry["comparisons"]}):
        here = [c for c in entry["comparisons"] if c["step"] == step]
        for c in here:
            loss, acc = c["eval_loss"], c["eval_accuracy"]
            train = np.stack([_train_loss(r, step) for r in entry["curves"]["learned"][c["trainer"]]])
            rows.append([
                step, f"{c['trainer']} ({len(loss['learned'])} meta-runs)", across_runs(train, 1.0, 4),
                across_runs(loss["learned"], 1.0, 4), across_runs(acc["learned"]),
                f"{verdict(loss, 1, 4)} vs {c['baseline']}", verdict(acc, 100, 2),
            ])  # fmt: skip
        for label, by_horizon in entry["curves"]["baselines"].items():
            curve = by_horizon[str(step)]
            column = curve["eval_steps"].index(step)
            loss = np.asarray(curve["eval_loss"], np.float64)[:, column]
            acc = np.asarray(curve["eval_accuracy"], np.float64)[:, column]
            best = " (best on validation)" if label == here[0]["baseline"] else ""
            rows.append([
                step, f"{label}, tuned for {step} steps{best}", mean_std(_train_loss(curve, step)), mean_std(loss),
                mean_std(acc, 2, 100), "", "",
            ])  # fmt: skip
    header = ["step", "optimizer", "training loss (minibatch)", "test loss", "test accuracy (%)",
              "loss vs best baseline", "accuracy vs best baseline (pp)"]  # fmt: skip
    return markdown_table(header, rows)


@renderer("li_malik")
def _li_malik(data: dict) -> str:
    """Seed 003 and issue 18: the policy's four trainers, judged at the unroll's horizon and 10x it."""
    p = data["protocol"]
    short, long = p["horizons"]
    parts = [
        f"Policy: `{p['policy']['type']}` (LSTM width {p['policy']['hidden']}), meta-trained on "
        f"`{p['train_task']}` with {p['unroll']}-step unrolls by each trainer, {p['meta_seeds']} independent "
        f"meta-runs each, on the same budget of {p['budget']} optimizee steps per meta-run and the same meta-seeds "
        f"(Adam {p['meta_lr']:g}, {p['schedule']}); selection: {p['selection_rule']}.",
        f"How a step is formed: {io.config_from_dict(p['policy']).describe_step()}",
        f"Evaluation: every meta-run trains fresh optimizees (the same MLP on each dataset's principal components) "
        f"for {long} steps over {len(p['seeds'])} seeds, the same seeds for every optimizer; the test split is "
        f"scored. Baselines ({', '.join(p['baselines'])}) tuned on each dataset's validation split for {short} and "
        f"for {long} steps separately (learning rates {min(p['learning_rates']):.4g}-{max(p['learning_rates']):.4g}, "
        f"x2 grid, {p['tuning_seeds']} seeds, lowest validation loss); the best baseline is the one with the lowest "
        "validation loss. Differences: trainer minus that baseline, 95 % bootstrap interval over meta-runs x seeds; "
        "**beats** / **loses to** only when it excludes zero. Trainers' values: mean ± std across meta-runs of "
        "each run's mean over seeds; baselines': mean ± std over seeds.",
        "## Meta-training",
        _meta_training(data),
    ]
    for dataset, entry in data["datasets"].items():
        role = "held out" if entry["held_out"] else "the meta-training dataset (its test split; not held out)"
        parts += [
            f"## {dataset}: `{entry['task']}`, {role}",
            _comparisons(entry),
            "Tuned baselines:",
            _tuning(entry["tuned"]),
        ]
    parts.append(f"![test accuracy and loss vs step, log x]({data['figure']})")
    if data.get("not_run"):
        parts.append("Datasets of the protocol that were not run: " + ", ".join(data["not_run"]) + ".")
    return "\n\n".join(parts)
