"""Learned optimizers over the optimizee's neural graph: NG-GNN (PNA), NG-T (relational transformer) and
RecurrentGNN (a per-parameter LSTM feeding the GNN).

Edges carry the per-parameter features of a weight (for convolutions, of every cell of its kernel); nodes
carry the features of a neuron's bias. Each kernel cell is encoded on its own, the cells of an edge are pooled
into the edge's state, the graph network mixes information across the whole network, and each cell's step is
decoded from its own encoding and its edge's final state. Nothing depends on the kernel size, the width or the
depth, so one set of meta-parameters serves every MLP and CNN.

Nor, by default, on the number of input channels or classes: input and output neurons are told apart from
hidden ones by a role embedding only, so they are interchangeable among themselves (permuting input channels
or classes permutes the updates) and an optimizee with inputs or classes the meta-training never saw (1-channel
FashionMNIST -> 3-channel CIFAR10, 10 -> 100 classes) uses embeddings that were all trained. A class or channel
index names nothing that carries over between datasets. ``max_io_positions=N`` opts into per-position
embeddings of the first ``N`` input and output neurons (later ones share the last); positions the meta-training
never reached then keep their random initial embedding, so use it only when evaluation keeps the meta-training
inputs and classes.

Given ``apply_fn=model.apply, example_input=x``, the graph is read from the model's computation
(``l2o_jax.graphs.graph_spec``): residual connections are identity edges, encoded from all-zero features;
normalisation scales and shifts and attention biases are *neuron parameters*, each encoded like a kernel cell
(scales) or a bias (shifts), summed into the initial state of the neuron it acts on, and decoded from that
neuron's final state; attention modules are layers whose edges carry the query, key and value weights as three
cells; a position embedding's rows are extra input neurons. Without them a ResNet's convolutions are one
sequential chain and its other parameters are unplaced. Parameters the neural graph cannot place are stepped
as coordinates without message passing: the same cell encoder, edge decoder and output head as a kernel cell,
with the globals and the mean final node state where an edge's state would be. None of this adds
meta-parameters, so saved meta-parameters serve such models unchanged, and MLPs and CNNs step exactly as
before. A warning names unplaced parameters once; ``strict=True`` refuses them.

With ``probes=ProbeConfig(...)``, learned probe inputs run through the optimizee every step and each neuron's
activations join its node features (Kofinas et al.); the probes are meta-parameters (``arrays['probes']``).

References:
  Kofinas et al., Graph neural networks for learning equivariant representations of neural networks, ICLR 2024.
  Sbicego, Hammache and Ben Mohamed, Learning to optimize with graph neural networks.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2o_jax import graphs
from l2o_jax.features import ProbeConfig
from l2o_jax.features import check_probe_forward
from l2o_jax.features import init_probes
from l2o_jax.features import probe_features
from l2o_jax.nn import MLP
from l2o_jax.nn import PNA
from l2o_jax.nn import CoordinateLSTM
from l2o_jax.nn import RelationalTransformer
from l2o_jax.optimizers.base import LearnedOptimizer
from l2o_jax.optimizers.base import MetaParams
from l2o_jax.optimizers.base import OutputConfig
from l2o_jax.optimizers.base import check_meta_params
from l2o_jax.optimizers.base import flatten_features
from l2o_jax.optimizers.base import learned_transform
from l2o_jax.optimizers.base import num_coordinates
from l2o_jax.optimizers.base import output_head
from l2o_jax.optimizers.base import tiny_mlp_params
from l2o_jax.optimizers.base import unflatten_features
from l2o_jax.optimizers.registry import register_family


def io_position_ids(spec: graphs.GraphSpec, max_positions: int) -> np.ndarray:
    """Embedding ids that tell input and output neurons apart and leave hidden neurons anonymous.

    Inputs get ``0..max_positions-1`` (clipped), outputs ``max_positions..2*max_positions-1``, every hidden
    neuron the same id ``2*max_positions``: hidden neurons must stay interchangeable.
    """
    position = np.minimum(spec.node_position, max_positions - 1)
    return np.where(
        spec.node_role == graphs.ROLE_INPUT,
        position,
        np.where(spec.node_role == graphs.ROLE_OUTPUT, max_positions + position, 2 * max_positions),
    )


def cell_offsets(spec: graphs.GraphSpec) -> np.ndarray:
    """``(n_cells, 2)`` float32: each real kernel cell's (row, column) offset from its window's centre, in the order
    of ``graphs.cell_values``; a dense weight sits at the centre, (0, 0). Offsets, unlike window indices, mean the
    same in any window, so a position embedding of them carries over to kernels of other sizes.

    Example:
      >>> cell_offsets(graph_spec(cnn_params))[:9]   # a 3x3 kernel's cells: (-1, -1), (-1, 0), ..., (1, 1)
    """
    index = spec.real_cells % spec.kernel_size
    height, width = spec.window
    rows, columns = np.divmod(index, width)
    return np.stack([rows - (height - 1) / 2, columns - (width - 1) / 2], -1).astype(np.float32)


class GraphNet(nn.Module):
    """Encoder -> graph network (PNA or relational transformer) -> per-parameter decoder.

    ``probes``, when given, is ``(n_node, count)`` per-neuron probe activations appended to the node features.
    """

    hidden: int
    num_layers: int
    body: str
    num_heads: int
    recurrent_hidden: int
    max_io_positions: int
    output: OutputConfig
    degree_delta: float | None = None
    cell_positions: bool = False

    @nn.compact
    def __call__(self, feats, glob, spec: graphs.GraphSpec, recurrent, probes=None):
        if self.recurrent_hidden:
            rows, how = flatten_features(feats)
            recurrent, h = CoordinateLSTM(self.recurrent_hidden, 1)(recurrent, rows)
            feats = jax.tree.map(lambda f, r: jnp.concatenate([f, r], -1), feats, unflatten_features(h, how))
        node_x = graphs.node_values(feats, spec)
        if probes is not None:
            node_x = jnp.concatenate([node_x, probes.astype(node_x.dtype)], -1)
        d = self.hidden
        cell_encoder = MLP((d,), final_activation=True, name="cell_encoder")
        # Only the real kernel cells are encoded and decoded, as rows: dense edges padded to a 3x3 window, or to an
        # attention layer's three cells, would otherwise cost several times their own work.
        cell_edge = spec.real_cells // spec.kernel_size  # the edge of each real cell, ascending
        cell_x = graphs.cell_values(feats, spec)
        cells = cell_encoder(cell_x)  # (real cells, d)
        if self.cell_positions:
            cells = cells + nn.Dense(d, name="cell_position")(cell_offsets(spec))
        cell_sums = jax.ops.segment_sum(cells, cell_edge, spec.n_edge, indices_are_sorted=True)
        edges = cell_sums / spec.edge_kernel_mask.sum(1, keepdims=True).astype(cells.dtype)
        edges = edges + nn.Embed(len(graphs.LAYER_KINDS), d, name="edge_kind")(spec.edge_kind)
        node_encoder = MLP((d,), final_activation=True, name="node_encoder")
        node_enc = node_encoder(node_x)
        nodes = (
            node_enc
            + nn.Embed(3, d, name="role")(spec.node_role)
            + nn.Embed(len(graphs.ACTIVATION_CATEGORIES), d, name="activation")(spec.node_activation)
        )
        if self.max_io_positions:
            ids = io_position_ids(spec, self.max_io_positions)
            nodes = nodes + nn.Embed(2 * self.max_io_positions + 1, d, name="io_position")(ids)
        if spec.neuron_params:
            # Normalisation scales and shifts, attention biases: encoded like a kernel cell (scales) or a bias
            # (shifts), summed into the state of the neuron each acts on.
            values, scale = graphs.neuron_param_values(feats, spec), spec.neuron_param_is_scale
            neuron_enc = jnp.where(scale[:, None], cell_encoder(values), node_encoder(values))
            nodes = nodes + jax.ops.segment_sum(neuron_enc, spec.neuron_param_nodes, spec.n_node)
        g = nn.Dense(d, name="globals")(glob)
        n_residual = len(spec.residual_senders)
        if n_residual:
            # Residual connections are edges without a parameter: encoded from all-zero features.
            residual = cell_encoder(jnp.zeros((1, cell_x.shape[-1]), cell_x.dtype))
            edges = jnp.concatenate([edges, jnp.broadcast_to(residual, (n_residual, d))])
        nodes, edges = self._body()(nodes + g, edges + g, spec.message_senders, spec.message_receivers)
        edges = edges[: spec.n_edge]
        edge_decoder = MLP((d,), final_activation=True, name="edge_decoder")
        edge_output = output_head(2, self.output, "edge_output")
        cell_out = edge_output(edge_decoder((edges, cell_edge), cells))  # from [its edge's state, its encoding]
        node_decoder = MLP((d,), final_activation=True, name="node_decoder")
        node_output = output_head(2, self.output, "node_output")
        node_out = node_output(node_decoder(jnp.concatenate([nodes, node_enc], -1)))
        neuron_out = None
        if spec.neuron_params:
            # Decoded from the final state of their neuron, like a kernel cell from its edge's or a bias.
            neuron_in = jnp.concatenate([nodes[spec.neuron_param_nodes], neuron_enc], -1)
            neuron_out = jnp.where(
                scale[:, None], edge_output(edge_decoder(neuron_in)), node_output(node_decoder(neuron_in))
            )
        unplaced_out = None
        if spec.unplaced:
            # Coordinates outside the graph: decoded like a kernel cell, with the graph's mean state as context.
            unplaced = cell_encoder(graphs.unplaced_values(feats, spec))  # (F, d)
            context = jnp.broadcast_to(nodes.mean(0) + g, unplaced.shape)
            unplaced_out = edge_output(edge_decoder(jnp.concatenate([context, unplaced], -1)))
        return graphs.cells_to_params(cell_out, node_out, _float_spec(spec), unplaced_out, neuron_out), recurrent

    def _body(self) -> nn.Module:
        if self.body == "pna":
            return PNA(self.hidden, self.num_layers, delta=self.degree_delta, name="pna")
        if self.body == "transformer":
            return RelationalTransformer(self.hidden, self.num_layers, self.num_heads, name="transformer")
        raise ValueError(f"unknown graph network body {self.body!r}; use 'pna' or 'transformer'.")


def _float_spec(spec: graphs.GraphSpec) -> graphs.GraphSpec:
    """The spec with float32 leaves: network outputs stay float32 until the step is cast to the params' dtype."""
    return dataclasses.replace(spec, leaf_dtypes=(np.dtype(np.float32),) * len(spec.leaf_dtypes))


@dataclasses.dataclass(frozen=True)
class _GraphFamily(LearnedOptimizer):
    hidden: int = 32
    layers: int = 4
    max_io_positions: int = 0
    probes: ProbeConfig | None = None
    degree_delta: float | None = None
    cell_positions: bool = False

    body = "pna"
    num_heads = 1
    recurrent_hidden = 0
    reads_computation = True

    def network(self) -> nn.Module:
        return GraphNet(
            self.hidden,
            self.layers,
            self.body,
            self.num_heads,
            self.recurrent_hidden,
            self.max_io_positions,
            self.output,
            self.degree_delta,
            self.cell_positions,
        )

    def __post_init__(self):
        if self.degree_delta is not None and (self.body != "pna" or not self.degree_delta > 0):
            raise ValueError(
                f"degree_delta is PNA's degree normaliser: a positive number for a PNA body, got {self.degree_delta} "
                f"for {type(self).__name__} (body {self.body!r}); leave it None to normalise per graph."
            )

    def architecture_spec(
        self, params, activations=None, order=None, strict=False, apply_fn=None, example_input=None
    ) -> graphs.GraphSpec:
        spec = graphs.graph_spec(
            params, activations=activations, order=order, strict=strict, apply_fn=apply_fn, example_input=example_input
        )
        if self.probes is not None and not spec.sequential:
            raise ValueError(
                f"probe features run the optimizee's forward pass through its sequential neural graph, and this "
                f"model has residual connections, normalisation or attention layers, or parameters outside the graph "
                f"({list(spec.unplaced_paths)}); use meta-parameters without probes for this model."
            )
        return spec

    def extra_arrays(self, key: jax.Array) -> dict:
        if self.probes is None:
            return {}
        return {"probes": init_probes(jax.random.fold_in(key, 1), self.probes)}

    def step_inputs(self, arrays, params, context: graphs.GraphSpec) -> dict:
        if self.probes is None:
            return {}
        return {"probes": probe_features(context, params, arrays["probes"])}

    def stand_in_params(self):
        return tiny_mlp_params() if self.probes is None else tiny_mlp_params(self.probes.input_size)

    def transform(
        self, meta_params: MetaParams, *, apply_fn=None, example_input=None, total_steps=None, **options
    ) -> optax.GradientTransformationExtraArgs:
        """This learned optimizer as an optax transformation; with probes, ``init`` checks the optimizee.

        Args:
          meta_params: this family's meta-parameters.
          apply_fn: optional ``apply_fn(params, inputs) -> outputs`` of the optimizee (e.g. ``model.apply``).
            With ``example_input``, residual connections are read from it (see ``graphs.graph_spec``); with
            probes, ``init`` checks, outside ``jit``, that it computes what the probes run through.
          example_input: an input batch of the optimizee, to trace ``apply_fn`` (shapes only).
          total_steps: the run's length, for meta-parameters that need it (see ``learned_transform``).
          **options: ``activations=``, ``order=``, ``strict=`` as in ``l2o_jax.graphs.graph_spec``.

        Example:
          >>> tx = GraphL2O(probes=ProbeConfig(8, (8, 8, 1))).init(key).transform(apply_fn=model.apply)
        """
        if example_input is not None:
            options = {**options, "apply_fn": apply_fn, "example_input": example_input}
        tx = learned_transform(meta_params, total_steps=total_steps, **options)
        if self.probes is None:
            if apply_fn is not None and example_input is None:
                raise ValueError(
                    f"apply_fn is only used by probe features, and these {type(self).__name__} meta-parameters have "
                    f"none, or with example_input= to read residual connections; pass example_input=, initialise "
                    f"them with {type(self).__name__}(probes=ProbeConfig(count, input_shape)) or drop apply_fn."
                )
            return tx
        probes = meta_params.arrays["probes"]

        def init_fn(params):
            spec = self.architecture_spec(params, **options)
            if apply_fn is None:
                jax.eval_shape(lambda p, x: probe_features(spec, p, x), params, probes)  # fails early, by path
            else:
                check_probe_forward(apply_fn, spec, params, probes)
            return tx.init(params)

        return optax.GradientTransformationExtraArgs(init_fn, tx.update)

    def initial_recurrent(self, params):
        if not self.recurrent_hidden:
            return ()
        return CoordinateLSTM.initialize_carry(num_coordinates(params), self.recurrent_hidden, 1, jnp.float32)


def degree_normaliser(params_list, **spec_options) -> float:
    """PNA's degree normaliser from training architectures: the mean log(d + 1) over every neuron with messages,
    in-degrees (forward messages) and out-degrees (backward) alike, residual connections included.

    Args:
      params_list: parameter pytrees of the meta-training architectures.
      **spec_options: ``activations=``, ``apply_fn=``, ... as in ``graphs.graph_spec`` (the same for each).

    Example:
      >>> config = GraphL2O(degree_delta=degree_normaliser([task.init(jax.random.key(0))]))
    """
    logs = []
    for params in params_list:
        spec = graphs.graph_spec(params, **spec_options)
        for ends in (spec.message_receivers, spec.message_senders):
            degree = np.bincount(ends, minlength=spec.n_node)
            logs.append(np.log1p(degree[degree > 0]))
    if not logs:
        raise ValueError("degree_normaliser needs at least one parameter pytree.")
    return float(np.concatenate(logs).mean())


@register_family
@dataclasses.dataclass(frozen=True)
class GraphL2O(_GraphFamily):
    """Config of NG-GNN: PNA message passing with edge updates over the optimizee's neural graph.

    Attributes:
      hidden: width of node/edge states. layers: message-passing layers.
      max_io_positions: 0 (default): input and output neurons carry no position, so any number of input
        channels or classes gets trained embeddings (see the module docstring). ``N > 0``: the first ``N``
        input and output neurons get their own embeddings, later ones share the last.
      probes: ``ProbeConfig(count, input_shape)`` to learn probe inputs whose activations join every neuron's
        features (Kofinas et al.); default none. Shared by all graph families.
      degree_delta: PNA's degree normaliser. ``None`` (default): each graph's own mean log(d + 1), so the degree
        scalers do not change when every layer widens by the same factor (a 4x wider net looks like the
        meta-training one to them). A number, e.g. ``degree_normaliser(meta_training_params)``: PNA's choice, fixed
        from the training graphs, so the scalers grow with the degree (by log(4w + 1) / log(w + 1) at 4x width).
      cell_positions: whether each conv kernel cell's encoding gets an embedding of its offset from the kernel's
        centre (``cell_offsets``) before the cells of an edge are pooled. Default off: the cells are pooled blind
        to their position (the update commutes with flipping every kernel), as in the shipped optimizers.

    Example:
      >>> meta_params = GraphL2O(hidden=32, layers=4).init(jax.random.key(0))
      >>> tx = optax.chain(optax.clip_by_global_norm(1.0), graph_l2o(meta_params))
      >>> probed = GraphL2O(probes=ProbeConfig(count=8, input_shape=(28, 28, 1))).init(jax.random.key(0))
      >>> tx = graph_l2o(probed, apply_fn=model.apply)
    """


@register_family
@dataclasses.dataclass(frozen=True)
class TransformerL2O(_GraphFamily):
    """Config of NG-T: a relational transformer over the neural graph.

    Attention is dense over all neurons, so its cost grows as O(n^2) in the number of neurons n (vs O(edges)
    for the GNN); the benchmark ``experiments/benchmarks/step_overhead.py`` reports it by width.

    Example:
      >>> tx = transformer_l2o(TransformerL2O(hidden=32, layers=2, heads=4).init(jax.random.key(0)))
    """

    heads: int = 4
    body = "transformer"

    @property
    def num_heads(self) -> int:
        return self.heads


@register_family
@dataclasses.dataclass(frozen=True)
class RecurrentGraphL2O(_GraphFamily):
    """Config of RecurrentGNN (Sbicego et al., III.2): a per-parameter LSTM whose outputs are appended to each
    parameter's features before the GNN.

    Example:
      >>> tx = recurrent_graph_l2o(RecurrentGraphL2O(lstm_hidden=16).init(jax.random.key(0)))
    """

    lstm_hidden: int = 16

    @property
    def recurrent_hidden(self) -> int:
        return self.lstm_hidden


def graph_l2o(meta_params: MetaParams, **reading) -> optax.GradientTransformationExtraArgs:
    """NG-GNN as an optax transformation.

    Args:
      meta_params: ``GraphL2O(...).init(key)``, trained meta-parameters or ``load_meta_params(path)``. The
        top-level ``l2o_jax.graph_l2o`` also takes the name of a shipped pretrained entry, such as
        ``"ng-gnn-digits"`` (see ``l2o_jax.pretrained.available()``).
      **reading: how to read the optimizee and its run, all optional (an unknown keyword is a TypeError here):
        ``activations``, ``order``: the activation name(s) and, when the natural order of layer names is not the
        forward order, the layer paths in order (see ``l2o_jax.graphs.graph_spec``).
        ``apply_fn``: the optimizee's ``apply_fn(params, inputs) -> outputs`` (e.g. ``model.apply``), for
        meta-parameters with probes (``GraphL2O(probes=ProbeConfig(...))``): ``init`` checks, outside ``jit``,
        that the forward pass the probes run through (read from ``params``, ``activations`` and ``order``) is this
        network's, and raises a ValueError otherwise. With ``example_input`` (an input batch), the model's
        residual connections are read from its computation and become identity edges of the neural graph, and
        so are the activations when ``activations`` is not given (``graphs.graph_spec``); otherwise, without
        probes, it must be left out.
        ``strict``: refuse parameters the graph cannot place instead of optimising them as lone coordinates.
        ``total_steps``: the length of the training run, for meta-parameters meta-trained to know it
        (``meta_params.config.needs_total_steps``); ignored otherwise.

    Returns:
      ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params`` and uses ``value=loss`` if given.

    Example:
      >>> tx = optax.chain(graph_l2o(meta_params, total_steps=1000))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state, params, value=loss)
      >>> params = optax.apply_updates(params, updates)
    """
    return _graph_transform(check_meta_params(meta_params, GraphL2O), **reading)


def transformer_l2o(meta_params: MetaParams, **reading) -> optax.GradientTransformationExtraArgs:
    """NG-T (relational transformer over the neural graph) as an optax transformation; ``reading`` as for
    ``graph_l2o``.

    Example:
      >>> tx = transformer_l2o(TransformerL2O().init(jax.random.key(0)))
    """
    return _graph_transform(check_meta_params(meta_params, TransformerL2O), **reading)


def recurrent_graph_l2o(meta_params: MetaParams, **reading) -> optax.GradientTransformationExtraArgs:
    """RecurrentGNN as an optax transformation; ``reading`` as for ``graph_l2o``.

    Example:
      >>> tx = recurrent_graph_l2o(RecurrentGraphL2O().init(jax.random.key(0)))
    """
    return _graph_transform(check_meta_params(meta_params, RecurrentGraphL2O), **reading)


def _graph_transform(
    meta_params: MetaParams,
    *,
    activations=None,
    order=None,
    apply_fn=None,
    example_input=None,
    strict=False,
    total_steps=None,
) -> optax.GradientTransformationExtraArgs:
    """The optax transform of checked graph-family meta-parameters; its keywords are every factory's ``reading``."""
    return meta_params.transform(
        activations=activations,
        order=order,
        apply_fn=apply_fn,
        example_input=example_input,
        strict=strict,
        total_steps=total_steps,
    )
