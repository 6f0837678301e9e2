"""Cost of turning a ~1M-parameter CNN's parameters into neural-graph arrays and back, as a ratio to one
forward+backward pass of that CNN (batch 128, 28x28x1).

    python experiments/benchmarks/graph_conversion.py
"""

from __future__ import annotations

import time

import jax
import optax
from timing import parser
from timing import publish
from timing import table
from timing import time_interleaved

from l2o_jax import graphs
from l2o_jax.tasks import CNNClassifier


def main(argv=None):
    started = time.perf_counter()
    cli = parser(__doc__)
    cli.add_argument("--width", type=int, default=192)
    cli.add_argument("--depth", type=int, default=4)
    cli.add_argument("--batch", type=int, default=128)
    cli.add_argument("--repeats", type=int, default=10)
    args = cli.parse_args(argv)
    model = CNNClassifier(width=args.width, depth=args.depth, num_classes=10)
    x = jax.random.normal(jax.random.key(1), (args.batch, 28, 28, 1))
    y = jax.random.randint(jax.random.key(2), (args.batch,), 0, 10)
    params = model.init(jax.random.key(0), x[:1])
    spec_started = time.perf_counter()
    spec = graphs.graph_spec(params)
    spec_seconds = time.perf_counter() - spec_started

    def fwd_bwd(p):
        return jax.grad(lambda q: optax.softmax_cross_entropy_with_integer_labels(model.apply(q, x), y).mean())(p)

    def round_trip(p):
        edges, nodes = graphs.tree_to_graph_arrays(p, spec)
        return graphs.graph_to_params(edges, nodes, spec)

    calls = {
        f"forward+backward, batch {args.batch}": (fwd_bwd, (params,)),
        "params -> graph arrays (jit)": (lambda p: graphs.tree_to_graph_arrays(p, spec), (params,)),
        "params -> graph -> params (jit)": (round_trip, (params,)),
    }
    seconds, ratios, _ = time_interleaved(calls, args.repeats)
    model_seconds = next(iter(seconds.values()))
    rows = [
        [
            "graph_spec (numpy, once per architecture)",
            f"{1000 * spec_seconds:.2f}",
            f"{spec_seconds / model_seconds:.2g}x",
        ]
    ]
    rows += [[name, f"{1000 * seconds[name]:.2f}", f"{ratios[name]:.2g}x"] for name in calls]
    text = [
        f"A CNN of width {args.width} and depth {args.depth} ({spec.num_params:,} parameters; its neural graph has "
        f"{spec.n_node:,} nodes and {spec.n_edge:,} edges, window {spec.window}) turned into neural-graph arrays and "
        f"back, against one forward+backward pass of the CNN on 28x28x1 inputs; {args.repeats} interleaved rounds "
        "after compilation (medians; ratios are medians of per-round ratios)."
    ]
    header = ["operation", "ms", "vs forward+backward"]
    publish("graph_conversion", "Neural-graph conversion of a 1M-parameter CNN", text, [table(header, rows)], args.out,
            started)  # fmt: skip


if __name__ == "__main__":
    main()
