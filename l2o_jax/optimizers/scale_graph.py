"""ScaleGraph L2O: an iterative learned optimizer whose body is made of ScaleGMN's scale/sign-equivariant layers.

Hidden neuron ``i`` of a tanh network may flip sign (``q_i = -1``), one of a ReLU network may be rescaled
(``q_i > 0``): its bias and incoming weights are multiplied by ``q_i``, its outgoing weights by ``1 / q_i``, and
the network computes the same function. Every hidden neuron may also be permuted. This optimizer's step
commutes with all of them:

    step(T θ) = T step(θ),   i.e. a parameter's update transforms like the parameter itself

(an incoming weight's update is multiplied by ``q_i``, an outgoing weight's by ``1 / q_i``, a bias's by
``q_i``). That is the law an optimizer must keep for ``T θ_t`` to be its trajectory from ``T θ_0`` (``T`` is
linear and diagonal, so ``T θ + T Δ = T (θ + Δ)``): the networks it produces then compute the same functions
whichever of the equivalent parametrisations it started from. The gradient does *not* transform that way: the
loss is invariant, so ``∇L(T θ) = T⁻¹ ∇L(θ)`` (an incoming weight's gradient is divided by ``q_i``). For sign
flips ``T⁻¹ = T``, so gradients, momenta and Adam's ``m / sqrt(v)`` are already equivariant and SGD and Adam
commute with sign flips; for positive rescaling neither does (SGD's step scales like ``1 / q``, Adam's not at
all), which is why this optimizer works in the scale-normalised network.

How each symmetry is kept:

* ``symmetry='sign'`` (tanh): the per-parameter features that flip with the parameter (value, gradient, sign,
  normalised gradient and momenta) enter bias-free equivariant maps; ``log |g|`` and the globals enter only
  as gates; the layers (``l2o_jax.nn.scale_equivariant``) keep every node's features flipping with its
  neuron and every edge's with its weight; the direction is read out bias-free, the log-magnitude from
  sign-invariant features (``φ(z) + φ(-z)``).
* ``symmetry='scale'`` (ReLU): each hidden neuron gets the scale ``r_i`` of ScaleGMN's normalisation
  (``r_i = sqrt(b_i² + Σ_j ‖w_ji‖² r_j²)``, which becomes ``q_i r_i``), each parameter the unit
  ``u = r_receiver / r_sender`` (a bias: ``r_i``), which transforms like the parameter. The network sees the
  scale-normalised parameters ``θ / u``, gradients and momenta times ``u`` (the gradient of the normalised
  parameter), second moments times ``u²``: all invariant. Its step (Adam's direction on the normalised
  parameters plus the learned correction) is multiplied back by ``u`` (``LearnedOptimizer.step_frame``).
  The layers are ScaleGMN's ``'scale'`` ones. Like LARS, steps are then relative to each neuron's weight norm.

Permutations are kept as in every graph family: hidden neurons carry no identity, only roles. Parameters
the neural graph cannot place (LayerNorm, embeddings) and residual connections have no such symmetry and are
refused.

References:
  Kalogeropoulos et al., Scale Equivariant Graph Metanetworks, NeurIPS 2024.
  Kofinas et al., Graph neural networks for learning equivariant representations of neural networks, ICLR 2024.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2o_jax import graphs
from l2o_jax.nn.scale_equivariant import Equivariant
from l2o_jax.nn.scale_equivariant import Invariant
from l2o_jax.nn.scale_equivariant import ScaleGMNLayer
from l2o_jax.nn.scale_equivariant import edge_ratio
from l2o_jax.nn.scale_equivariant import graph_structure
from l2o_jax.nn.scale_equivariant import group_dense
from l2o_jax.nn.scale_equivariant import neuron_scales
from l2o_jax.optimizers.base import LearnedOptimizer
from l2o_jax.optimizers.base import MetaParams
from l2o_jax.optimizers.base import OutputConfig
from l2o_jax.optimizers.base import check_meta_params
from l2o_jax.optimizers.graph import _float_spec
from l2o_jax.optimizers.registry import register_family

#: Activations whose hidden neurons have each symmetry (besides permutations); ``'linear'`` has both.
SYMMETRIC_ACTIVATIONS = {"sign": ("tanh", "linear"), "scale": ("relu", "linear")}
# In ``parameter_features``' channel order (value, g, log|g|, sign g, normalised g, momenta...), the one channel
# that does not flip with the parameter: log|g|.
_EVEN_CHANNELS = (2,)


def _split_channels(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(channels that flip with the parameter, channels that do not)``."""
    even = np.isin(np.arange(x.shape[-1]), _EVEN_CHANNELS)
    return x[..., ~even], x[..., even]


class _Encoder(nn.Module):
    """Per-parameter features -> equivariant state: the flipping channels through a gated bias-free map."""

    hidden: int
    group: str

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
        flips, stays = _split_channels(x)
        context = jnp.broadcast_to(context, stays.shape[:-1] + context.shape[-1:])
        invariants = [Invariant(self.hidden, self.group)(flips), stays, context]
        return Equivariant(self.hidden, self.group)(flips, invariants)


class _Decoder(nn.Module):
    """Equivariant state -> (direction, log-magnitude): the first transforms like the parameter, the second not."""

    hidden: int
    group: str
    output: OutputConfig
    direction_bound: float

    @nn.compact
    def __call__(self, z: jax.Array, context: jax.Array) -> jax.Array:
        context = jnp.broadcast_to(context, z.shape[:-1] + context.shape[-1:])
        u = Equivariant(self.hidden, self.group)(z, [Invariant(self.hidden, self.group)(z), context])
        init = nn.initializers.normal(self.output.output_init_scale)
        direction = group_dense(1, self.group, kernel_init=init, name="direction")(u)
        # Odd and bounded: a direction that grew with the weights it reads made steps grow with the weights
        # (tanh smoke run: the loss was NaN within 200 steps of a run 1000 steps long, past the inner runs of 300).
        direction = self.direction_bound * jnp.tanh(direction / self.direction_bound)
        magnitude = nn.Dense(1, kernel_init=init, name="magnitude")(Invariant(self.hidden, self.group)(u))
        return jnp.concatenate([direction, magnitude], -1)


class ScaleGraphNet(nn.Module):
    """Per-cell encoder -> ScaleGMN layers over the neural graph -> per-cell decoder (see the module docstring).

    Kernel cells are encoded one by one and averaged into their edge's state, so the meta-parameters serve any
    kernel size, width and depth, as NG-GNN's do.
    """

    group: str
    hidden: int
    num_layers: int
    output: OutputConfig
    direction_bound: float

    @nn.compact
    def __call__(self, feats, glob, spec: graphs.GraphSpec, recurrent):
        d, group = self.hidden, self.group
        edge_x, node_x = graphs.tree_to_graph_arrays(feats, spec)  # (E, K, C), (N, C)
        structure = graph_structure(spec, positional=False)
        g = nn.gelu(nn.Dense(d, name="globals")(glob))  # step count and loss: invariant, so gates only
        structure = structure._replace(
            edge_context=jnp.concatenate([structure.edge_context, jnp.broadcast_to(g, (spec.n_edge, d))], -1),
            node_context=jnp.concatenate([structure.node_context, jnp.broadcast_to(g, (spec.n_node, d))], -1),
        )
        cells = _Encoder(d, group, name="cell_encoder")(edge_x, structure.edge_context[:, None])  # (E, K, d)
        mask = jnp.asarray(structure.kernel_mask)[..., None]
        edges = (cells * mask).sum(1) / mask.sum(1)
        node_enc = _Encoder(d, group, name="node_encoder")(node_x, structure.node_context)
        # Inputs and outputs have no symmetry and may carry a constant; a hidden neuron's state must flip/scale.
        role = nn.Embed(3, d, name="role")(spec.node_role) * (spec.node_role != graphs.ROLE_HIDDEN)[:, None]
        nodes = node_enc + role
        for i in range(self.num_layers):
            nodes, edges = ScaleGMNLayer(d, group, bidirectional=True, name=f"layer_{i}")(nodes, edges, structure)
        edge_in = jnp.concatenate([jnp.broadcast_to(edges[:, None], cells.shape), cells], -1)
        edge_out = _Decoder(d, group, self.output, self.direction_bound, name="edge_decoder")(
            edge_in, structure.edge_context[:, None]
        )
        node_in = jnp.concatenate([nodes, node_enc], -1)
        node_out = _Decoder(d, group, self.output, self.direction_bound, name="node_decoder")(
            node_in, structure.node_context
        )
        return graphs.graph_to_params(edge_out, node_out, _float_spec(spec)), recurrent


@register_family
@dataclasses.dataclass(frozen=True)
class ScaleGraphL2O(LearnedOptimizer):
    """Config of ScaleGraph L2O: an iterative learned optimizer equivariant to hidden-neuron permutations and to
    sign flips (tanh) or positive rescalings (ReLU) of hidden neurons; see the module docstring.

    Attributes:
      symmetry: ``'sign'`` for networks with odd activations (tanh), ``'scale'`` for positively homogeneous
        ones (ReLU). The optimizee's hidden activations must have it (``SYMMETRIC_ACTIVATIONS``); when the
        factory gets no ``activations``, they are taken to be tanh (``'sign'``) or ReLU (``'scale'``).
      hidden: width of node and edge states. layers: ScaleGMN message-passing layers (bidirectional).
      direction_bound: the learned direction ``d`` is ``b * tanh(d / b)`` (odd, so sign-equivariant): each step
        is bounded by ``lr * e^magnitude_bound * (|adam| + b)``, however large the weights it reads grow.

    Example:
      >>> meta_params = ScaleGraphL2O(symmetry='scale', hidden=16, layers=2).init(jax.random.key(0))
      >>> tx = optax.chain(optax.clip_by_global_norm(1.0), scale_graph_l2o(meta_params, activations='relu'))
    """

    symmetry: str = "sign"
    hidden: int = 16
    layers: int = 2
    direction_bound: float = 1.0

    def __post_init__(self):
        if self.symmetry not in SYMMETRIC_ACTIVATIONS:
            raise ValueError(
                f"ScaleGraphL2O.symmetry must be one of {tuple(SYMMETRIC_ACTIVATIONS)}, got {self.symmetry!r}."
            )
        if not self.direction_bound > 0:
            raise ValueError(f"ScaleGraphL2O.direction_bound must be positive, got {self.direction_bound}.")
        if self.hidden < 1 or self.layers < 0:
            raise ValueError(f"ScaleGraphL2O needs hidden >= 1 and layers >= 0, got {self.hidden}, {self.layers}.")

    def network(self) -> nn.Module:
        return ScaleGraphNet(self.symmetry, self.hidden, self.layers, self.output, self.direction_bound)

    def architecture_spec(self, params, activations=None, order=None) -> graphs.GraphSpec:
        if activations is None:
            activations = SYMMETRIC_ACTIVATIONS[self.symmetry][0]
        spec = graphs.graph_spec(params, activations=activations, order=order, strict=True)
        allowed = SYMMETRIC_ACTIVATIONS[self.symmetry]
        for layer in spec.layers[:-1]:
            if layer.activation not in allowed:
                raise ValueError(
                    f"{layer.name}: activation {layer.activation!r} has no {self.symmetry} symmetry; "
                    f"ScaleGraphL2O(symmetry={self.symmetry!r}) serves hidden activations {allowed} "
                    f"(symmetry='sign' for tanh, 'scale' for ReLU)."
                )
        return spec

    def step_frame(self, params, context: graphs.GraphSpec):
        if self.symmetry != "scale":
            return None
        structure = graph_structure(context, positional=False)
        edges, nodes = graphs.tree_to_graph_arrays(params, context)
        r = neuron_scales(edges.astype(jnp.float32), nodes.astype(jnp.float32), structure)
        units = jnp.broadcast_to(edge_ratio(r, structure), edges.shape)
        return graphs.graph_to_params(units, r, _float_spec(context))


def scale_graph_l2o(
    meta_params: MetaParams, *, activations=None, order=None, total_steps=None
) -> optax.GradientTransformationExtraArgs:
    """ScaleGraph L2O as an optax transformation: updates equivariant to hidden-neuron permutations and to sign
    flips (``symmetry='sign'``, tanh) or positive rescalings (``'scale'``, ReLU) of hidden neurons.

    Args:
      meta_params: ``ScaleGraphL2O(...).init(key)``, trained meta-parameters or ``load_meta_params(path)``.
      activations, order: how to read the optimizee (see ``l2o_jax.graphs.graph_spec``); the hidden
        activations must have the meta-parameters' symmetry. Default activations: tanh for ``'sign'``, ReLU
        for ``'scale'``.
      total_steps: the run's length, for meta-parameters that need it (see ``graph_l2o``).

    Returns:
      ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params`` and uses ``value=loss`` if given.

    Example:
      >>> tx = scale_graph_l2o(ScaleGraphL2O(symmetry='sign').init(jax.random.key(0)), activations='tanh')
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state, params, value=loss)
    """
    meta_params = check_meta_params(meta_params, ScaleGraphL2O)
    return meta_params.transform(activations=activations, order=order, total_steps=total_steps)
