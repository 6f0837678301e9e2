"""Wall time of one jitted training step with each learned optimizer, as a ratio to the same step with Adam.

The optimizee is the papers' 3-layer CNN (32 channels) at batch 128 on 28x28x1 inputs, and a 4x wider one;
NG-T is also timed over widths to show its O(neurons^2) attention.

    python experiments/benchmarks/step_overhead.py [--repeats 10] [--widths 32 128]
"""

from __future__ import annotations

import argparse

import jax
import optax
from timing import device_line
from timing import markdown_table
from timing import time_compiled

import l2o_jax
from l2o_jax.tasks import CNNClassifier

OPTIMIZERS = {
    "adam": lambda: optax.adam(1e-3),
    "graph_l2o (NG-GNN 32x4)": lambda: l2o_jax.graph_l2o(l2o_jax.GraphL2O(hidden=32, layers=4).init(jax.random.key(0))),
    "transformer_l2o (NG-T 32x2)": lambda: l2o_jax.transformer_l2o(
        l2o_jax.TransformerL2O(hidden=32, layers=2).init(jax.random.key(0))
    ),
    "recurrent_graph_l2o": lambda: l2o_jax.recurrent_graph_l2o(
        l2o_jax.RecurrentGraphL2O(hidden=32, layers=4).init(jax.random.key(0))
    ),
    "lstm_l2o (2x20)": lambda: l2o_jax.lstm_l2o(l2o_jax.LSTML2O().init(jax.random.key(0))),
    "mlp_l2o (32,32)": lambda: l2o_jax.mlp_l2o(l2o_jax.MLPL2O().init(jax.random.key(0))),
}


def train_step_fn(model, tx):
    def loss_fn(params, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(params, x), y).mean()

    def step(params, state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state, loss

    return step


def measure(width: int, names, repeats: int, batch: int = 128):
    model = CNNClassifier(width=width, depth=3, num_classes=10)
    x = jax.random.normal(jax.random.key(1), (batch, 28, 28, 1))
    y = jax.random.randint(jax.random.key(2), (batch,), 0, 10)
    params = model.init(jax.random.key(0), x[:1])
    times = {}
    for name in names:
        tx = OPTIMIZERS[name]()
        times[name] = time_compiled(train_step_fn(model, tx), params, tx.init(params), x, y, repeats=repeats)[0]
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 128])
    args = parser.parse_args()
    print(f"# step overhead on {device_line()}\n")
    rows = []
    for width in args.widths:
        times = measure(width, list(OPTIMIZERS), args.repeats)
        for name, t in times.items():
            rows.append([f"CNN-{width}", name, f"{1000 * t:.2f}", f"{t / times['adam']:.2f}x"])
    print(markdown_table(["optimizee", "optimizer", "ms / step", "vs adam"], rows))


if __name__ == "__main__":
    main()
