"""A benchmark (``experiments/benchmarks/``): its setup in words and its tables, each ratio against a baseline
timed in the same run."""

from __future__ import annotations

from experiments.pages import markdown_table
from experiments.pages import renderer


@renderer("benchmark")
def _benchmark(data: dict) -> str:
    parts = list(data["text"])
    for t in data["tables"]:
        parts += [t["caption"]] if t.get("caption") else []
        parts.append(markdown_table(t["header"], t["rows"]))
    return "\n\n".join(parts)
