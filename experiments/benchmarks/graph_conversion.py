"""Cost of turning a ~1M-parameter CNN's parameters into neural-graph arrays and back, as a ratio to one
forward+backward pass of that CNN (batch 128, 28x28x1).

    python experiments/benchmarks/graph_conversion.py
"""

from __future__ import annotations

import time

import jax
import optax
from timing import device_line
from timing import markdown_table
from timing import time_compiled

from l2o_jax import graphs
from l2o_jax.tasks import CNNClassifier


def main(width: int = 192, depth: int = 4, batch: int = 128):
    model = CNNClassifier(width=width, depth=depth, num_classes=10)
    x = jax.random.normal(jax.random.key(1), (batch, 28, 28, 1))
    y = jax.random.randint(jax.random.key(2), (batch,), 0, 10)
    params = model.init(jax.random.key(0), x[:1])
    started = time.perf_counter()
    spec = graphs.graph_spec(params)
    spec_seconds = time.perf_counter() - started

    def fwd_bwd(p):
        return jax.grad(lambda q: optax.softmax_cross_entropy_with_integer_labels(model.apply(q, x), y).mean())(p)

    def round_trip(p):
        edges, nodes = graphs.tree_to_graph_arrays(p, spec)
        return graphs.graph_to_params(edges, nodes, spec)

    t_model, _ = time_compiled(fwd_bwd, params)
    t_to, _ = time_compiled(lambda p: graphs.tree_to_graph_arrays(p, spec), params)
    t_round, _ = time_compiled(round_trip, params)
    print(f"# graph conversion on {device_line()}\n")
    print(
        f"CNN width {width}, depth {depth}: {spec.num_params:,} parameters, {spec.n_node:,} nodes, "
        f"{spec.n_edge:,} edges, window {spec.window}\n"
    )
    print(
        markdown_table(
            ["operation", "ms", "vs forward+backward"],
            [
                [
                    "graph_spec (numpy, once per architecture)",
                    f"{1000 * spec_seconds:.2f}",
                    f"{spec_seconds / t_model:.3f}x",
                ],
                ["params -> graph arrays (jit)", f"{1000 * t_to:.2f}", f"{t_to / t_model:.3f}x"],
                ["params -> graph -> params (jit)", f"{1000 * t_round:.2f}", f"{t_round / t_model:.3f}x"],
                [f"forward+backward, batch {batch}", f"{1000 * t_model:.2f}", "1.000x"],
            ],
        )
    )


if __name__ == "__main__":
    main()
