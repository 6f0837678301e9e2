"""Shared timing helpers for the benchmarks: compile once, then the median of repeated calls."""

from __future__ import annotations

import statistics
import time

import jax


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


def markdown_table(header: list[str], rows: list[list]) -> str:
    """Rows as a markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def device_line() -> str:
    d = jax.devices()[0]
    return f"{d.platform} ({getattr(d, 'device_kind', '')}), {len(jax.devices())} device(s), jax {jax.__version__}"
