"""Meta-training throughput: one outer step (tasks x 100-step unroll, BPTT) against the same number of plain
Adam steps; scaling with the number of tasks; peak memory with and without rematerialisation; compile time.
With ``--long-horizon``: one outer step of the long-horizon recipe (``long_horizon_estimator``: truncated BPTT,
20-step truncations of persistent optimizees) on the quickstart's meta-training task instead.

    python experiments/benchmarks/meta_throughput.py [--length 100] [--tasks 1 2 4 8 16]
    python experiments/benchmarks/meta_throughput.py --long-horizon --width 8 --tasks 8
"""

from __future__ import annotations

import argparse

import jax
import optax
from timing import device_line
from timing import markdown_table
from timing import time_compiled

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


def long_horizon(task, tasks: list[int], key) -> None:
    """Outer steps of the long-horizon recipe against the same number of Adam steps, and their compile time."""
    config = l2o_jax.GraphL2O(hidden=16, layers=2, features=RUN_LENGTH_FEATURES, output=RUN_LENGTH_OUTPUT)
    meta = config.init(jax.random.key(0))
    print(f"# long-horizon meta-training on {device_line()}\n\nGraphL2O(16x2) on {task.name}\n")
    rows = []
    for n in tasks:
        estimator = long_horizon_estimator(num_tasks=n)
        state = jax.jit(estimator.init)(meta, task, key)
        outer = lambda m, s, k, est=estimator: est.estimate(m, task, s, k)[:2]
        t_outer, compile_s = time_compiled(outer, meta, state, key, repeats=5)
        optimizees = 2 * n if isinstance(estimator, PES) else n  # PES trains each pair's two optimizees
        t_adam, _ = time_compiled(adam_steps(task, optimizees, estimator.truncation_length), key, repeats=5)
        rows.append(
            [
                n,
                estimator.truncation_length,
                f"{t_outer:.3f}",
                f"{t_adam:.3f}",
                f"{t_outer / t_adam:.2f}x",
                f"{compile_s:.1f}",
            ]
        )
    header = ["tasks", "truncation", "outer step (s)", "same Adam steps (s)", "ratio", "compile (s)"]
    print(markdown_table(header, rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--tasks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--long-horizon", action="store_true", help="time the long-horizon recipe instead")
    args = parser.parse_args()
    task = jax.device_put(image_task("digits", width=args.width, depth=2, batch_size=64))
    if args.long_horizon:
        return long_horizon(task, args.tasks, jax.random.key(1))
    meta = l2o_jax.GraphL2O(hidden=16, layers=2).init(jax.random.key(0))
    key = jax.random.key(1)
    print(f"# meta-training throughput on {device_line()}\n\nGraphL2O(16x2) on {task.name}, unroll {args.length}\n")
    rows = []
    for n in args.tasks:
        estimator = FullUnrollBPTT(lengths=(args.length,), num_tasks=n)
        outer = lambda m, k, est=estimator: est.estimate(m, task, (), k, length=args.length)[:2]
        t_outer, compile_s = time_compiled(outer, meta, key, repeats=3)
        t_adam, _ = time_compiled(adam_steps(task, n, args.length), key, repeats=3)
        steps = n * args.length
        rows.append(
            [
                n,
                f"{t_outer:.3f}",
                f"{t_adam:.3f}",
                f"{t_outer / t_adam:.2f}x",
                f"{steps / t_outer:.0f}",
                f"{compile_s:.1f}",
            ]
        )
    print(
        markdown_table(
            ["tasks", "outer step (s)", "same Adam steps (s)", "ratio", "inner steps/s", "compile (s)"], rows
        )
    )
    n = max(args.tasks)
    memory = []
    for remat in (False, True):
        est = FullUnrollBPTT(lengths=(args.length,), num_tasks=n, unroll=UnrollConfig(remat=remat))
        b = peak_bytes(lambda m, k, e=est: e.estimate(m, task, (), k, length=args.length)[:2], meta, key)
        memory.append([f"remat={remat}", "n/a" if b is None else f"{b / 2**20:.1f} MiB"])
    print("\n" + markdown_table([f"{n} tasks x {args.length} steps", "temp+output memory (XLA estimate)"], memory))


if __name__ == "__main__":
    main()
