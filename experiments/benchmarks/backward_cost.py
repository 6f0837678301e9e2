"""Wall time of the learned backward pass against ``jax.value_and_grad`` of the same loss, measured in one run.

Both are jitted and timed as the median of repeated calls (after compilation) on one batch; the table prints
milliseconds per call and the ratio to ``jax.value_and_grad``. The optimizees: the digits MLP of the smoke
experiment, a 784-256-256-10 MLP, and the papers' 3-layer 32-channel CNN on 28x28x1 inputs, at batch 128.

    python experiments/benchmarks/backward_cost.py [--repeats 20] [--hidden 16]
"""

from __future__ import annotations

import argparse

import jax
import optax
from timing import device_line
from timing import markdown_table
from timing import time_compiled

from l2o_jax.backward import LearnedBackward
from l2o_jax.backward import learned_value_and_grad
from l2o_jax.tasks import CNNClassifier
from l2o_jax.tasks import MLPClassifier

MODELS = {
    "MLP 64-32-10 (digits)": (MLPClassifier(hidden=(32,), num_classes=10), (8, 8, 1)),
    "MLP 784-256-256-10": (MLPClassifier(hidden=(256, 256), num_classes=10), (28, 28, 1)),
    "CNN 3x32 channels, 28x28": (CNNClassifier(width=32, depth=3, num_classes=10), (28, 28, 1)),
}


def measure(model, input_shape, meta_params, repeats: int, batch: int = 128) -> dict[str, float]:
    """Median seconds per call of ``jax.value_and_grad`` and of the learned backward pass on one batch."""
    x = jax.random.normal(jax.random.key(1), (batch, *input_shape))
    y = jax.random.randint(jax.random.key(2), (batch,), 0, 10)
    params = model.init(jax.random.key(0), x[:1])

    def loss(params, batch):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(params, batch[0]), batch[1]).mean()

    functions = {
        "jax.value_and_grad": jax.value_and_grad(loss),
        "learned_value_and_grad": learned_value_and_grad(model, meta_params),
    }
    return {name: time_compiled(fn, params, (x, y), repeats=repeats)[0] for name, fn in functions.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=16, help="width of the learned backward pass's networks")
    args = parser.parse_args()
    meta_params = LearnedBackward(hidden=args.hidden).init(jax.random.key(0))
    print(f"# learned backward pass cost on {device_line()}\n")
    rows = []
    for name, (model, input_shape) in MODELS.items():
        times = measure(model, input_shape, meta_params, args.repeats)
        base = times["jax.value_and_grad"]
        for fn, t in times.items():
            rows.append([name, fn, f"{1000 * t:.3f}", f"{t / base:.2f}x"])
    print(markdown_table(["optimizee (batch 128)", "gradient", "ms / call", "vs jax.value_and_grad"], rows))


if __name__ == "__main__":
    main()
