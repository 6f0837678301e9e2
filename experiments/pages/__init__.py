"""The renderers of ``docs/results/`` pages, one module per result kind, and the table helpers they share.

A result JSON ``{"kind": k, ...}`` is rendered by ``RENDERERS[k]``. Adding a kind is one module here::

    # experiments/pages/my_study.py
    from experiments.pages import final_table, renderer

    @renderer("my_study")
    def render(data: dict) -> str:
        return final_table(data["tasks"])

Every module of this package is imported when the package is, so registering needs nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

from l2o_jax.study import slug  # noqa: F401  (re-exported for the pages)
from l2o_jax.study.report import across_runs  # noqa: F401  (re-exported for the pages)
from l2o_jax.study.report import mean_std  # noqa: F401
from l2o_jax.study.report import verdict  # noqa: F401

#: Page renderers by the JSON's ``kind``: ``data -> markdown`` (the page's body, without title or provenance).
RENDERERS: dict[str, Callable[[dict], str]] = {}


def renderer(kind: str):
    """Registers the decorated ``data -> markdown`` function as the renderer of JSON files of ``kind``.

    Example:
      >>> @renderer("toy")
      ... def render(data):
      ...     return f"{len(data['values'])} values"
    """

    def register(function):
        if kind in RENDERERS and RENDERERS[kind] is not function:
            raise ValueError(
                f"two renderers for result kind {kind!r}: {RENDERERS[kind].__module__} and {function.__module__}."
            )
        RENDERERS[kind] = function
        return function

    return register


# --- table helpers -------------------------------------------------------------------------------------


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A markdown table: one header row, the separator, then one line per row (cells formatted by ``str``).

    Example:
      >>> markdown_table(["step", "loss"], [[100, "0.31"], [1000, "0.12"]])
      '| step | loss |\n|---|---|\n| 100 | 0.31 |\n| 1000 | 0.12 |'
    """
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"markdown_table: a row has {len(row)} cells, the header {len(header)}: {row}")
    line = lambda cells: "|" + "".join(f" {cell} |" if str(cell) else " |" for cell in cells)  # noqa: E731
    return "\n".join([line(header), "|" + "---|" * len(header)] + [line(row) for row in rows])


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


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
