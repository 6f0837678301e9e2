"""Meta-training throughput: one outer step (tasks x 100-step unroll, BPTT) against the same number of plain
Adam steps; scaling with the number of tasks; peak memory with and without rematerialisation; compile time.
With ``--long-horizon``: one outer step of the long-horizon recipe (``long_horizon_estimator``: truncated BPTT,
20-step truncations of persistent optimizees) on the quickstart's meta-training task instead.

    python experiments/benchmarks/meta_throughput.py [--length 100] [--tasks 1 2 4 8 16]
    python experiments/benchmarks/meta_throughput.py --long-horizon --width 8 --tasks 8
"""

from __future__ import annotations

import time

import jax
import optax
from timing import parser
from timing import publish
from timing import table
from timing import time_interleaved

import l2o_jax
from l2o_jax.features import RUN_LENGTH_FEATURES
from l2o_jax.meta import PES
from l2o_jax.meta import FullUnrollBPTT
from l2o_jax.meta import UnrollConfig
from l2o_jax.meta import long_horizon_estimator
from l2o_jax.optimizers import RUN_LENGTH_OUTPUT
from l2o_jax.tasks import image_task


def adam_steps(task, num_tasks: int, length: int):
    """The floor: num_tasks x length plain Adam training steps, vmapped, in one scan."""
    tx = optax.adam(1e-3)

    def run(key):
        params = task.init(key)

        def step(carry, k):
            p, s = carry
            loss, grads = jax.value_and_grad(task.loss)(p, task.sample_batch(k))
            updates, s = tx.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), loss

        return jax.lax.scan(step, (params, tx.init(params)), jax.random.split(key, length))[1].mean()

    return lambda key: jax.vmap(run)(jax.random.split(key, num_tasks)).mean()


def peak_bytes(fn, *args) -> int | None:
    analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
    return None if analysis is None else int(analysis.temp_size_in_bytes + analysis.output_size_in_bytes)


#: The project's targets for one outer step of the long-horizon recipe: its cost against the same Adam steps, and
#: its compile seconds.
LONG_HORIZON_TARGETS = {"ratio": 4.0, "compile": 60.0}


def long_horizon(task, tasks: list[int], key, repeats: int = 5) -> tuple[list[str], list[dict]]:
    """Outer steps of the long-horizon recipe against the same number of Adam steps, and their compile time."""
    config = l2o_jax.GraphL2O(hidden=16, layers=2, features=RUN_LENGTH_FEATURES, output=RUN_LENGTH_OUTPUT)
    meta = config.init(jax.random.key(0))
    rows = []
    for n in tasks:
        estimator = long_horizon_estimator(num_tasks=n)
        state = jax.jit(estimator.init)(meta, task, key)
        outer = lambda m, s, k, est=estimator: est.estimate(m, task, s, k)[:2]
        optimizees = 2 * n if isinstance(estimator, PES) else n  # PES trains each pair's two optimizees
        calls = {
            "adam": (adam_steps(task, optimizees, estimator.truncation_length), (key,)),
            "outer": (outer, (meta, state, key)),
        }
        seconds, ratios, compile_s = time_interleaved(calls, repeats)
        row = [n, estimator.truncation_length, f"{seconds['outer']:.3f}", f"{seconds['adam']:.3f}"]
        met = ratios["outer"] <= LONG_HORIZON_TARGETS["ratio"] and compile_s["outer"] <= LONG_HORIZON_TARGETS["compile"]
        rows.append(row + [f"{ratios['outer']:.2f}x", f"{compile_s['outer']:.1f}", "met" if met else "**missed**"])
    text = [
        f"One outer step of the long-horizon recipe (`long_horizon_estimator`: {type(estimator).__name__}, "
        f"{estimator.truncation_length}-step truncations of persistent optimizees, no backward pass through the "
        f"truncation) with GraphL2O 16x2 on {task.name}, against the same optimizee steps of plain Adam, vmapped, in "
        f"one scan; {repeats} interleaved rounds after compilation (medians; the ratio is the median of per-round "
        "ratios)."
    ]
    header = ["tasks", "truncation", "outer step (s)", "same Adam steps (s)", "ratio", "compile (s)"]
    target = f"target (ratio <= {LONG_HORIZON_TARGETS['ratio']:g}x, compile <= {LONG_HORIZON_TARGETS['compile']:g} s)"
    return text, [table([*header, target], rows)]


def full_unroll(task, tasks: list[int], length: int, key, repeats: int = 3) -> tuple[list[str], list[dict]]:
    """BPTT outer steps over ``length``-step unrolls against the same Adam steps; peak memory with and without
    rematerialisation."""
    meta = l2o_jax.GraphL2O(hidden=16, layers=2).init(jax.random.key(0))
    rows = []
    for n in tasks:
        estimator = FullUnrollBPTT(lengths=(length,), num_tasks=n)
        outer = lambda m, k, est=estimator: est.estimate(m, task, (), k, length=length)[:2]
        calls = {"adam": (adam_steps(task, n, length), (key,)), "outer": (outer, (meta, key))}
        seconds, ratios, compile_s = time_interleaved(calls, repeats)
        row = [n, f"{seconds['outer']:.3f}", f"{seconds['adam']:.3f}", f"{ratios['outer']:.2f}x"]
        rows.append(row + [f"{n * length / seconds['outer']:.0f}", f"{compile_s['outer']:.1f}"])
    n = max(tasks)
    memory = []
    for remat in (False, True):
        est = FullUnrollBPTT(lengths=(length,), num_tasks=n, unroll=UnrollConfig(remat=remat))
        b = peak_bytes(lambda m, k, e=est: e.estimate(m, task, (), k, length=length)[:2], meta, key)
        memory.append([f"remat={remat}", "n/a" if b is None else f"{b / 2**20:.1f} MiB"])
    text = [
        f"One BPTT outer step of GraphL2O 16x2 over {length}-step unrolls on {task.name}, against the same number "
        f"of plain Adam steps, vmapped, in one scan; {repeats} interleaved rounds after compilation (medians)."
    ]
    header = ["tasks", "outer step (s)", "same Adam steps (s)", "ratio", "inner steps/s", "compile (s)"]
    memory_header = [f"{n} tasks x {length} steps", "temp+output memory (XLA estimate)"]
    return text, [table(header, rows), table(memory_header, memory, "Peak memory:")]


def main(argv=None):
    started = time.perf_counter()
    cli = parser(__doc__)
    cli.add_argument("--length", type=int, default=100)
    cli.add_argument("--tasks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    cli.add_argument("--width", type=int, default=16)
    cli.add_argument("--long-horizon", action="store_true", help="time the long-horizon recipe instead")
    args = cli.parse_args(argv)
    task = jax.device_put(image_task("digits", width=args.width, depth=2, batch_size=64))
    key = jax.random.key(1)
    if args.long_horizon:
        text, tables = long_horizon(task, args.tasks, key)
        publish("meta_throughput_long_horizon", "Meta-training cost: the long-horizon recipe", text, tables,
                args.out, started)  # fmt: skip
    else:
        text, tables = full_unroll(task, args.tasks, args.length, key)
        publish("meta_throughput_full_unroll", "Meta-training cost: full-unroll BPTT", text, tables, args.out,
                started)  # fmt: skip


if __name__ == "__main__":
    main()
