"""``docs/pretrained.md``: every entry shipped in ``l2o_jax.pretrained``, from its record (written by
``experiments.export_pretrained``, checked by ``experiments.report`` like the result pages)."""

from __future__ import annotations

from l2o_jax import io
from l2o_jax import pretrained


def _row(name: str, entry: dict) -> str:
    meta, ev, long = entry["meta_training"], entry["evaluation"], entry["long_run"]
    at = {(c["step"], c["baseline"]): c for c in ev["comparisons"]}
    steps = sorted({c["step"] for c in ev["comparisons"]})
    cells = [
        f"{100 * at[(s, 'adam')]['learned_accuracy']:.1f} vs {100 * at[(s, 'adam')]['baseline_accuracy']:.1f}"
        for s in steps
        if (s, "adam") in at
    ]
    horizon = meta["estimator"]["horizon"]
    return (
        f"| `{name}` | {entry['config']['type']} | {meta['estimator']['truncation_length']}-step truncations of "
        f"{horizon['low']}-{horizon['high']}-step runs, {meta['outer_steps']} outer steps (checkpoint "
        f"{meta['checkpoint_chosen']}) | {ev['task']} | {' / '.join(cells)} (steps {', '.join(map(str, steps))}) | "
        f"{100 * long['test_accuracy'][-1]:.1f} % at step {long['steps']}, largest drop below its best "
        f"{100 * long['largest_drop_below_best']:.1f} pp, {'finite' if long['finite'] else 'NOT FINITE'} |"
    )


def _step_form(entry: dict) -> str:
    config = io.config_from_dict(entry["config"])
    told = " Told the run's length (`total_steps=`)." if config.needs_total_steps else ""
    return config.output.describe() + told


def pretrained_doc() -> str:
    """The markdown of ``docs/pretrained.md``, from every shipped entry's record.

    Example:
      >>> pretrained_doc().splitlines()[0]
      '# Pretrained learned optimizers'
    """
    names = pretrained.available()
    lines = [
        "# Pretrained learned optimizers",
        "",
        "Shipped inside the package (`l2o_jax/pretrained/`); use one by name:",
        "",
        "```python",
        "tx = optax.chain(optax.clip_by_global_norm(1.0), l2o_jax.graph_l2o('ng-gnn-digits', total_steps=5000))",
        "```",
        "",
        "`total_steps` is the length of your run, as for a learning-rate schedule; entries that are told it say so",
        "below, and a clear error names it when it is missing.",
        "",
        "Each entry is one meta-training run of the long-horizon study (`docs/results/horizon_smoke.md`), chosen",
        "among its meta-runs by the lowest validation loss, never by test numbers. Test accuracy (%) of that meta-run",
        "against Adam tuned for each horizon (mean over 5 seeds), and a run of the length in the last column on the",
        "same task (mean over 5 seeds). `l2o_jax.pretrained.info(name)` has the full record.",
        "",
        "| name | family | meta-training | evaluated on | learned vs tuned Adam (%) | long run |",
        "|---|---|---|---|---|---|",
        *(_row(n, pretrained.info(n)) for n in names),
        "",
        "## How each forms a step",
        "",
        *(f"- `{n}`: {_step_form(pretrained.info(n))}" for n in names),
        "",
        "## How each was made",
        "",
        *(f"- `{n}`: `{pretrained.info(n)['command']}`, then `{pretrained.info(n)['export_command']}`" for n in names),
        "",
    ]
    return "\n".join(lines)
