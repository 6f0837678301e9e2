"""Wall time of the learned backward pass against ``jax.value_and_grad`` of the same loss, measured in one run.

Both are jitted and timed as the median of repeated calls (after compilation) on one batch; the table prints
milliseconds per call and the ratio to ``jax.value_and_grad``. The optimizees: the digits MLP of the smoke
experiment, a 784-256-256-10 MLP, and the papers' 3-layer 32-channel CNN on 28x28x1 inputs, at batch 128.

    python experiments/benchmarks/backward_cost.py [--repeats 20] [--hidden 16]
"""

from __future__ import annotations

import time

import jax
import optax
from timing import parser
from timing import publish
from timing import table
from timing import time_interleaved

from l2o_jax.backward import LearnedBackward
from l2o_jax.backward import learned_value_and_grad
from l2o_jax.tasks import CNNClassifier
from l2o_jax.tasks import MLPClassifier

MODELS = {
    "MLP 64-32-10 (digits)": (MLPClassifier(hidden=(32,), num_classes=10), (8, 8, 1)),
    "MLP 784-256-256-10": (MLPClassifier(hidden=(256, 256), num_classes=10), (28, 28, 1)),
    "CNN 3x32 channels, 28x28": (CNNClassifier(width=32, depth=3, num_classes=10), (28, 28, 1)),
}


def measure(model, input_shape, meta_params, repeats: int, batch: int = 128) -> tuple[dict, dict]:
    """``(seconds, ratios)``: median seconds per call of ``jax.value_and_grad`` and of the learned backward pass on
    one batch, and the median per-round ratio to ``jax.value_and_grad`` (``time_interleaved``)."""
    x = jax.random.normal(jax.random.key(1), (batch, *input_shape))
    y = jax.random.randint(jax.random.key(2), (batch,), 0, 10)
    params = model.init(jax.random.key(0), x[:1])

    def loss(params, batch):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(params, batch[0]), batch[1]).mean()

    calls = {
        "jax.value_and_grad": (jax.value_and_grad(loss), (params, (x, y))),
        "learned_value_and_grad": (learned_value_and_grad(model, meta_params), (params, (x, y))),
    }
    return time_interleaved(calls, repeats)[:2]


def main(argv=None):
    started = time.perf_counter()
    cli = parser(__doc__)
    cli.add_argument("--repeats", type=int, default=20)
    cli.add_argument("--hidden", type=int, default=16, help="width of the learned backward pass's networks")
    args = cli.parse_args(argv)
    meta_params = LearnedBackward(hidden=args.hidden).init(jax.random.key(0))
    rows = []
    for name, (model, input_shape) in MODELS.items():
        seconds, ratios = measure(model, input_shape, meta_params, args.repeats)
        rows += [[name, fn, f"{1000 * t:.3f}", f"{ratios[fn]:.2f}x"] for fn, t in seconds.items()]
    text = [
        f"The learned backward pass (`learned_value_and_grad`, node and edge networks of width {args.hidden}) against "
        f"`jax.value_and_grad` of the same loss on one batch of 128, both jitted; {args.repeats} interleaved rounds "
        "after compilation (medians; ratios are medians of per-round ratios)."
    ]
    header = ["optimizee (batch 128)", "gradient", "ms / call", "vs jax.value_and_grad"]
    publish("backward_cost", "Learned backward pass cost against backprop", text, [table(header, rows)], args.out,
            started)  # fmt: skip


if __name__ == "__main__":
    main()
