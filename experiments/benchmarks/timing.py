"""Shared helpers of the benchmarks: compile once, then the median of repeated calls; and the result each writes.

A benchmark prints its page and, with ``--out DIR``, writes it as ``DIR/benchmark_<name>.json`` (kind
``benchmark``, rendered by ``experiments/pages/benchmark.py``) with the provenance every result records, so
``docs/results/`` holds the measured numbers README's benchmarks section points to.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:  # run as `python experiments/benchmarks/x.py`: the repository root is not on the path
    sys.path.insert(0, ROOT)

from experiments import report  # noqa: E402


def time_compiled(fn, *args, repeats: int = 10) -> tuple[float, float]:
    """(median seconds per call, compile seconds) of the jitted ``fn`` on ``args``."""
    jitted = jax.jit(fn)
    started = time.perf_counter()
    jax.block_until_ready(jitted(*args))
    compile_seconds = time.perf_counter() - started
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(jitted(*args))
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), compile_seconds


def time_interleaved(calls: dict, repeats: int = 10, seed: int = 0) -> tuple[dict, dict, dict]:
    """Times several jitted functions against the first, robust to a machine whose load drifts.

    ``calls`` maps a name to ``(fn, args)``. Each is compiled first; then every round calls each once, in a
    shuffled order, so a slow moment hits all of them alike. Returns ``(median seconds per call, median of the
    per-round ratios to the first, compile seconds)``, each by name.

    Example:
      >>> seconds, ratios, _ = time_interleaved({"adam": (adam_step, args), "gnn": (gnn_step, args)}, repeats=10)
    """
    jitted, compile_seconds = {name: (jax.jit(fn), args) for name, (fn, args) in calls.items()}, {}
    for name, (fn, args) in jitted.items():
        started = time.perf_counter()
        jax.block_until_ready(fn(*args))
        compile_seconds[name] = time.perf_counter() - started
    samples, order, rng = {name: [] for name in jitted}, list(jitted), random.Random(seed)
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            fn, args = jitted[name]
            started = time.perf_counter()
            jax.block_until_ready(fn(*args))
            samples[name].append(time.perf_counter() - started)
    first = samples[next(iter(calls))]
    seconds = {name: statistics.median(s) for name, s in samples.items()}
    ratios = {name: statistics.median(a / b for a, b in zip(s, first)) for name, s in samples.items()}
    return seconds, ratios, compile_seconds


def device_line() -> str:
    d = jax.devices()[0]
    return f"{d.platform} ({getattr(d, 'device_kind', '')}), {len(jax.devices())} device(s), jax {jax.__version__}"


def parser(doc: str) -> argparse.ArgumentParser:
    """A benchmark's command line, with ``--out``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="also write the result as DIR/benchmark_<name>.json and its page")
    return parser


def table(header: list[str], rows: list[list], caption: str = "") -> dict:
    """One table of a benchmark's result: cells as they are shown, in the JSON as in the page."""
    return {"caption": caption, "header": header, "rows": [[str(c) for c in row] for row in rows]}


def publish(name: str, title: str, text: list[str], tables: list[dict], out: str | None, started: float) -> dict:
    """Prints the benchmark's page and, with ``out``, writes its JSON and page there; returns the data.

    Example:
      >>> started = time.perf_counter()
      >>> rows = [["adam", "1.00x"]]
      >>> publish("step", "One training step", ["Batch 128."], [table(["optimizer", "vs adam"], rows)], None, started)
    """
    data = {
        "kind": "benchmark",
        "title": title,
        "text": [f"Measured on {device_line()}.", *text],
        "tables": tables,
        "provenance": report.provenance(started),
    }
    print(report.render(data))
    if out:
        print(f"wrote {report.save(data, os.path.join(out, f'benchmark_{name}.json'))}")
    return data
