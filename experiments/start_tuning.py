"""How ``RUN_LENGTH_OUTPUT``'s start was tuned: warmup-cosine Adam over a grid of peaks and update caps
(``OutputConfig.update_cap``) on the meta-training task's architecture and one a layer deeper, validation split.

    python -m experiments.start_tuning --out runs/start_tuning.json     # ~30 min of one CPU core

The score of a (peak, cap) pair is its mean log validation loss over the grid's depths and horizons (3 seeds each);
the lowest wins. Runs of one depth and horizon share one compilation (the peak and cap are traced).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2o_jax.evaluation import training_run
from l2o_jax.optimizers import relative_update_cap
from l2o_jax.optimizers import warmup_cosine
from l2o_jax.tasks import image_task

PEAKS = (0.0256, 0.0512, 0.1024)
CAPS = (None, 0.01, 0.03, 0.1)
DEPTHS = (2, 3)
HORIZONS = (100, 1000)


def capped_adam(peak, cap, steps: int) -> optax.GradientTransformation:
    """Warmup-cosine Adam at ``peak`` with every weight tensor's step capped at ``cap`` times its norm (traced)."""
    return optax.chain(optax.adam(lambda count: peak * warmup_cosine(count, steps)), relative_update_cap(cap))


def scores(width: int = 8, seeds: int = 3) -> dict:
    """``{'depth D, T steps': {'peak P, cap C': (mean log validation loss, validation accuracy)}}``."""
    grid = list(itertools.product(PEAKS, CAPS))
    hyper = jnp.array([(p, 1e9 if c is None else c) for p, c in grid], jnp.float32)  # 1e9: a cap that never binds
    keys = jnp.stack([jax.random.key(s) for s in range(seeds)])
    out = {}
    for depth, steps in itertools.product(DEPTHS, HORIZONS):
        task = image_task("digits", width=width, depth=depth, batch_size=64)
        run = training_run(lambda h: capped_adam(h[0], h[1], steps), task, steps, steps, "validation", 2048)
        _, loss, accuracy = jax.jit(jax.vmap(jax.vmap(run, (0, None)), (None, 0)))(keys, hyper)
        out[f"depth {depth}, {steps} steps"] = {
            f"peak {p:g}, cap {c}": (float(np.mean(np.log(l[:, -1]))), float(a[:, -1].mean()))
            for (p, c), l, a in zip(grid, np.asarray(loss), np.asarray(accuracy))
        }
        print(f"depth {depth}, {steps} steps done", flush=True)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/start_tuning.json")
    args = parser.parse_args(argv)
    table = scores()
    means = {pair: float(np.mean([t[pair][0] for t in table.values()])) for pair in next(iter(table.values()))}
    best = min(means, key=means.get)
    for pair, mean in sorted(means.items(), key=lambda kv: kv[1]):
        print(f"{pair}: mean log validation loss {mean:.3f}{'  <- picked' if pair == best else ''}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"runs": table, "mean_log_validation_loss": means, "picked": best}, f, indent=1)
    return means


if __name__ == "__main__":
    main()
