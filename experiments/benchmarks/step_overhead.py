"""Wall time of one jitted training step with each learned optimizer, as a ratio to the same step with Adam.

The optimizee is the papers' 3-layer CNN (32 channels) at batch 128 on 28x28x1 inputs, and a 4x wider one;
NG-T is also timed over widths to show its O(neurons^2) attention. ``--models ResNet Transformer`` times a
pre-norm ResNet (2 residual blocks with LayerNorm, same inputs) and a transformer (2 blocks of 4-head
self-attention and MLP, 40 tokens of 1 feature like MNIST-1D) of the same width, whose neural graphs the
graph optimizers read from the computation (``apply_fn=``, ``example_input=``).

    python experiments/benchmarks/step_overhead.py [--repeats 10] [--widths 32 128] [--models CNN ResNet Transformer]
        [--optimizers adam "graph_l2o (NG-GNN 32x4)"]
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
from l2o_jax.tasks import CNNClassifier
from l2o_jax.tasks import ResNetClassifier
from l2o_jax.tasks import TransformerClassifier
from l2o_jax.tasks.models import layer_activations


def _graph(factory, config):
    """A graph optimizer's factory taking how to read the optimizee (``activations=``, ``apply_fn=``, ...)."""
    return lambda **read: factory(config.init(jax.random.key(0)), **read)


OPTIMIZERS = {
    "adam": lambda **read: optax.adam(1e-3),
    "graph_l2o (NG-GNN 32x4)": _graph(l2o_jax.graph_l2o, l2o_jax.GraphL2O(hidden=32, layers=4)),
    "transformer_l2o (NG-T 32x2)": _graph(l2o_jax.transformer_l2o, l2o_jax.TransformerL2O(hidden=32, layers=2)),
    "recurrent_graph_l2o": _graph(l2o_jax.recurrent_graph_l2o, l2o_jax.RecurrentGraphL2O(hidden=32, layers=4)),
    "lstm_l2o (2x20)": lambda **read: l2o_jax.lstm_l2o(l2o_jax.LSTML2O().init(jax.random.key(0))),
    "mlp_l2o (32,32)": lambda **read: l2o_jax.mlp_l2o(l2o_jax.MLPL2O().init(jax.random.key(0))),
}
#: Optimizee of each width and its input shape (without the batch axis).
MODELS = {
    "CNN": lambda width: (CNNClassifier(width=width, depth=3, num_classes=10), (28, 28, 1)),
    "ResNet": lambda width: (ResNetClassifier(width=width, depth=2, num_classes=10), (28, 28, 1)),
    "Transformer": lambda width: (TransformerClassifier(width=width, depth=2, num_classes=10, heads=4), (40, 1)),
}


def train_step_fn(model, tx):
    def loss_fn(params, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(params, x), y).mean()

    def step(params, state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state, loss

    return step


def measure(width: int, names, repeats: int, batch: int = 128, model: str = "CNN") -> tuple[dict, dict]:
    """``(seconds, ratios)``: the median seconds per jitted training step of the ``model`` optimizee of ``width``
    with each optimizer in ``names``, and the median of its per-round ratios to the first's (``time_interleaved``)."""
    net, shape = MODELS[model](width)
    x = jax.random.normal(jax.random.key(1), (batch, *shape))
    y = jax.random.randint(jax.random.key(2), (batch,), 0, 10)
    params = net.init(jax.random.key(0), x[:1])
    # The CNN is a plain chain read from its parameters; the others' graphs are read from their computation.
    read = {} if model == "CNN" else dict(activations=layer_activations(net), apply_fn=net.apply, example_input=x[:1])
    transforms = {name: OPTIMIZERS[name](**read) for name in names}
    calls = {name: (train_step_fn(net, tx), (params, tx.init(params), x, y)) for name, tx in transforms.items()}
    return time_interleaved(calls, repeats)[:2]


#: The project's targets for a step's cost against Adam's, by optimizer.
TARGETS = {
    "CNN": {"graph_l2o (NG-GNN 32x4)": 1.25, "lstm_l2o (2x20)": 2.0, "recurrent_graph_l2o": 2.0},
    "Transformer": {"graph_l2o (NG-GNN 32x4)": 1.5},
}


def main(argv=None):
    started = time.perf_counter()
    cli = parser(__doc__)
    cli.add_argument("--repeats", type=int, default=10)
    cli.add_argument("--widths", type=int, nargs="+", default=[32, 128])
    cli.add_argument("--models", nargs="+", default=["CNN"], choices=sorted(MODELS))
    cli.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=list(OPTIMIZERS))
    args = cli.parse_args(argv)
    names = ["adam"] + [name for name in args.optimizers if name != "adam"]  # the baseline of every ratio
    rows = []
    for model in args.models:
        for width in args.widths:
            seconds, ratios = measure(width, names, args.repeats, model=model)
            for name, t in seconds.items():
                bound = TARGETS.get(model, {}).get(name)
                met = None if bound is None else ("met" if ratios[name] <= bound else "**missed**")
                target = "" if bound is None else f"<= {bound:g}x, {met}"
                rows.append([f"{model}-{width}", name, f"{1000 * t:.2f}", f"{ratios[name]:.2f}x", target])
    text = [
        f"One jitted training step (forward, backward, optimizer update) at batch 128 with each optimizer, timed in "
        f"{args.repeats} rounds after compilation; each round calls every optimizer's step once in a shuffled order. "
        "Milliseconds: the median per step; ratios: the median of the per-round ratios to Adam's step on the same "
        "optimizee. CNN: the papers' 3-layer CNN on 28x28x1 inputs; ResNet: 2 pre-norm residual blocks; Transformer: "
        "2 blocks of 4-head self-attention over 40 tokens (their graphs read from the computation)."
    ]
    header = ["optimizee", "optimizer", "ms / step", "vs adam", "target"]
    models = "-".join(m.lower() for m in args.models)
    return publish(f"step_overhead_{models}", f"Training-step cost against Adam ({', '.join(args.models)})", text,
                   [table(header, rows)], args.out, started)  # fmt: skip


if __name__ == "__main__":
    main()
