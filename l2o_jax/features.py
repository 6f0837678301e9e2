"""Per-parameter and global input features of learned optimizers.

Per parameter (as in Andrychowicz et al. 2016 and Kofinas et al. 2024): the parameter's value, its gradient,
the gradient's log/sign preprocessing, and momenta at several timescales, normalised by a running second
moment so the features do not depend on the gradient's scale. Global: an embedding of the step count and the
loss value when the caller passes it (optax's ``value`` extra argument).

Per neuron, optionally (graph learned optimizers with ``probes=ProbeConfig(...)``): probe features (Kofinas et
al. 2024), each neuron's activation on a set of learned probe inputs run through the optimizee.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from l2o_jax.graphs import ACTIVATIONS
from l2o_jax.graphs import record_forward

#: Step-count timescales that all saturate within a long-horizon meta-training run (inner runs of thousands of
#: steps): past the meta-training horizon the step features keep values meta-training saw, instead of the
#: slow ones (1000-10000 steps) taking values it never did.
SATURATING_STEP_TIMESCALES = (1, 3, 10, 30, 100, 300)


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """What a learned optimizer sees.

    Attributes:
      betas: momentum timescales (Sbicego et al.: 0.5, 0.9, 0.99, 0.999, 0.9999).
      second_moment_beta: decay of the running mean of g^2 that normalises gradient and momenta.
      log_sign_p: the constant p of the log/sign gradient preprocessing (Andrychowicz et al.: 10).
      normalize: divide gradient and momenta by sqrt of the second moment (per parameter); without it the raw
        values are fed (then the meta-network must cope with the gradients' scale itself).
      step_timescales: the step count enters as tanh(t / s) for each s.
      eps: added under the square root of the second moment.
      progress_scales: the fraction of the run done, ``f = t / total_steps``, enters as tanh(k * f) for each k
        (VeLO's progress embedding): an optimizer that knows where the run ends can anneal, as a cosine
        schedule does. Non-empty scales make ``total_steps=`` a required argument of the optax transform.
    """

    betas: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999, 0.9999)
    second_moment_beta: float = 0.999
    log_sign_p: float = 10.0
    normalize: bool = True
    step_timescales: tuple[float, ...] = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000)
    eps: float = 1e-8
    progress_scales: tuple[float, ...] = ()

    @property
    def num_parameter_features(self) -> int:
        """Channels per parameter: value, gradient, log|g|, sign g, normalised g, one per momentum."""
        return 5 + len(self.betas)

    @property
    def num_global_features(self) -> int:
        """Step embedding, progress embedding, (log loss, has-loss flag)."""
        return len(self.step_timescales) + len(self.progress_scales) + 2


#: What long-horizon learned optimizers see: the default features with step-count features that saturate within
#: the meta-training horizon (``SATURATING_STEP_TIMESCALES``).
LONG_HORIZON_FEATURES = FeatureConfig(step_timescales=SATURATING_STEP_TIMESCALES)

#: ``LONG_HORIZON_FEATURES`` plus where the run is (the fraction done, ``progress_scales``): for learned optimizers
#: told the run's length (``total_steps=``), as a learning-rate schedule is.
RUN_LENGTH_FEATURES = FeatureConfig(step_timescales=SATURATING_STEP_TIMESCALES, progress_scales=(1, 3, 10, 30))


class FeatureState(NamedTuple):
    """Running statistics behind the features; leaves have the parameters' shapes (momenta: + (len(betas),))."""

    count: jax.Array
    momenta: object
    second_moment: object


def init_feature_state(params, config: FeatureConfig) -> FeatureState:
    """Zero momenta and second moment for ``params``.

    Example:
      >>> state = init_feature_state(params, FeatureConfig())
    """
    nb = len(config.betas)
    return FeatureState(
        count=jnp.zeros([], jnp.int32),
        momenta=jax.tree.map(lambda p: jnp.zeros(p.shape + (nb,), jnp.float32), params),
        second_moment=jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params),
    )


def update_feature_state(state: FeatureState, grads, config: FeatureConfig) -> FeatureState:
    """Folds this step's gradients into the momenta and second moment.

    Example:
      >>> state = update_feature_state(state, grads, config)
    """
    betas = jnp.asarray(config.betas, jnp.float32)
    b2 = config.second_moment_beta

    def momentum(m, g):
        return betas * m + (1.0 - betas) * g.astype(jnp.float32)[..., None]

    def second(v, g):
        return b2 * v + (1.0 - b2) * jnp.square(g.astype(jnp.float32))

    return FeatureState(
        count=state.count + 1,
        momenta=jax.tree.map(momentum, state.momenta, grads),
        second_moment=jax.tree.map(second, state.second_moment, grads),
    )


def log_sign(g: jax.Array, p: float) -> tuple[jax.Array, jax.Array]:
    """Andrychowicz et al. (2016) gradient preprocessing: (log|g|/p, sign g), or (-1, e^p g) for tiny |g|.

    Example:
      >>> log_sign(jnp.array([1e-6, 0.5]), 10.0)
    """
    big = jnp.abs(g) >= jnp.exp(-p)
    safe = jnp.where(big, jnp.abs(g), 1.0)
    return jnp.where(big, jnp.log(safe) / p, -1.0), jnp.where(big, jnp.sign(g), jnp.exp(p) * g)


def _bias_corrected_rms(state: FeatureState, v, config: FeatureConfig):
    correction = 1.0 - config.second_moment_beta ** state.count.astype(jnp.float32)
    return jnp.sqrt(v / jnp.maximum(correction, 1e-12)) + config.eps


def adam_direction(state: FeatureState, config: FeatureConfig, beta_index: int | None = None):
    """Bias-corrected ``m / sqrt(v)`` with the momentum at ``betas[beta_index]``: Adam's step.

    ``beta_index=None`` takes the momentum whose beta is closest to Adam's 0.9, so any ``betas`` works.

    Example:
      >>> direction = adam_direction(state, config)
    """
    if not config.betas:
        raise ValueError("FeatureConfig.betas is empty; the 'adam' output base needs at least one momentum.")
    if beta_index is None:
        beta_index = min(range(len(config.betas)), key=lambda i: abs(config.betas[i] - 0.9))
    if not 0 <= beta_index < len(config.betas):
        raise ValueError(f"beta_index {beta_index} is out of range for FeatureConfig.betas={config.betas}.")
    beta = config.betas[beta_index]
    correction = 1.0 - beta ** state.count.astype(jnp.float32)

    def direction(m, v):
        return m[..., beta_index] / jnp.maximum(correction, 1e-12) / _bias_corrected_rms(state, v, config)

    return jax.tree.map(direction, state.momenta, state.second_moment)


def parameter_features(params, grads, state: FeatureState, config: FeatureConfig):
    """The per-parameter feature stack: a pytree like ``params`` whose leaves gain a trailing channel axis.

    ``state`` must already include ``grads`` (call ``update_feature_state`` first).

    Returns:
      A pytree with leaves of shape ``param.shape + (config.num_parameter_features,)``, float32.

    Example:
      >>> feats = parameter_features(params, grads, state, FeatureConfig())
    """

    def per_leaf(p, g, m, v):
        g = g.astype(jnp.float32)
        scale = _bias_corrected_rms(state, v, config) if config.normalize else 1.0
        log_g, sign_g = log_sign(g, config.log_sign_p)
        channels = [p.astype(jnp.float32), g, log_g, sign_g, g / scale]
        return jnp.concatenate([jnp.stack(channels, -1), m / jnp.asarray(scale)[..., None]], -1)

    return jax.tree.map(per_leaf, params, grads, state.momenta, state.second_moment)


def global_features(count: jax.Array, value, config: FeatureConfig, total_steps=None) -> jax.Array:
    """Step embedding, progress embedding (when ``config.progress_scales``; ``total_steps`` is then the run's
    length) and loss features, shape ``(config.num_global_features,)``.

    Example:
      >>> global_features(jnp.asarray(10), None, FeatureConfig()).shape
      (11,)
      >>> global_features(jnp.asarray(10), None, FeatureConfig(progress_scales=(1, 3)), total_steps=100).shape
      (13,)
    """
    t = count.astype(jnp.float32)
    steps = jnp.tanh(t / jnp.asarray(config.step_timescales, jnp.float32))
    if config.progress_scales:
        if total_steps is None:
            raise ValueError("FeatureConfig.progress_scales needs total_steps, the length of the training run.")
        fraction = jnp.clip(t / jnp.maximum(jnp.asarray(total_steps, jnp.float32), 1.0), 0.0, 1.0)
        steps = jnp.concatenate([steps, jnp.tanh(fraction * jnp.asarray(config.progress_scales, jnp.float32))])
    if value is None:
        loss = jnp.zeros((2,), jnp.float32)
    else:
        value = jnp.asarray(value, jnp.float32)
        loss = jnp.stack([jnp.log1p(jnp.maximum(value, 0.0)), jnp.ones([], jnp.float32)])
    return jnp.concatenate([steps, loss])


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Learned probe inputs (Kofinas et al. 2024): ``count`` inputs of the optimizee, meta-learned, whose
    activations become per-neuron features of graph learned optimizers.

    Attributes:
      count: number of probe inputs; every neuron gains this many feature channels.
      input_shape: the shape of one optimizee input without the batch axis, e.g. ``(28, 28, 1)`` for a CNN or
        ``(784,)`` (or ``(28, 28, 1)``, flattened) for an MLP.
      init_scale: standard deviation of the probes' random initialisation.

    Example:
      >>> config = GraphL2O(probes=ProbeConfig(count=8, input_shape=(8, 8, 1)))
    """

    count: int = 8
    input_shape: tuple[int, ...] = ()
    init_scale: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        if self.count < 1:
            raise ValueError(f"ProbeConfig.count must be at least 1, got {self.count}.")
        if not self.input_shape or min(self.input_shape) < 1:
            raise ValueError(
                f"ProbeConfig.input_shape must be the shape of one optimizee input (no batch axis), e.g. "
                f"(28, 28, 1); got {self.input_shape}."
            )

    @property
    def input_size(self) -> int:
        """Scalars in one probe input."""
        return int(np.prod(self.input_shape))


def init_probes(key: jax.Array, config: ProbeConfig) -> jax.Array:
    """Fresh probe inputs, ``(count, *input_shape)`` float32, normal with std ``init_scale``.

    Example:
      >>> init_probes(jax.random.key(0), ProbeConfig(count=4, input_shape=(5,))).shape
      (4, 5)
    """
    return config.init_scale * jax.random.normal(key, (config.count, *config.input_shape), jnp.float32)


def check_probe_support(spec) -> None:
    """Raises a ValueError naming the parameter path if probes cannot run through the network of ``spec``.

    Probes run through ``l2o_jax.graphs.record_forward``: a chain of Dense and stride-1 same-padded
    conv layers (global average pooling between the last conv and the first Dense), each with a bias.

    Example:
      >>> check_probe_support(graph_spec(params))
    """
    for layer in spec.layers:
        if layer.activation not in ACTIVATIONS:
            raise ValueError(
                f"{layer.name}/kernel: probe features cannot run activation {layer.activation!r}; "
                f"supported: {tuple(ACTIVATIONS)}."
            )
        if layer.bias_leaf is None:
            raise ValueError(
                f"{layer.name}/bias: probe features run the optimizee's forward pass, which needs every layer to "
                "have a bias; this layer has none (disable probes for this network)."
            )


def probe_features(spec, params, probes: jax.Array) -> jax.Array:
    """Every neuron's activation on each probe input: ``(n_node, count)`` float32, nodes in ``spec`` order.

    Conv channels are neurons: their activations are averaged over the spatial positions. Input neurons carry
    the probe inputs themselves (flattened for a Dense first layer, channel means for a conv one).

    Args:
      spec: the optimizee's ``GraphSpec`` (its activations must be the network's, see ``graph_spec``).
      params: the parameters ``spec`` was built from.
      probes: ``(count, *input_shape)`` probe inputs.

    Raises:
      ValueError: naming the parameter path, when the network is not a chain ``record_forward`` can run or
        the probes do not fit its first layer.

    Example:
      >>> feats = probe_features(graph_spec(params), params, meta_params.arrays['probes'])
    """
    check_probe_support(spec)
    tape = record_forward(spec, params, probes)
    pooled = [a.astype(jnp.float32).mean(axis=tuple(range(1, a.ndim - 1))).T for a in tape.post]
    return jnp.concatenate(pooled)


def check_probe_forward(apply_fn, spec, params, probes: jax.Array, *, rtol: float = 1e-3) -> None:
    """Checks that the recorded forward pass is the user's network: ``apply_fn(params, probes)`` must equal the
    logits ``probe_features`` ran through. Skipped (shapes only) when ``params`` or ``probes`` are traced.

    Raises:
      ValueError: the outputs differ in shape or value (wrong ``activations=``/``order=``, strides, pooling, ...).

    Example:
      >>> check_probe_forward(model.apply, graph_spec(params), params, meta_params.arrays['probes'])
    """
    check_probe_support(spec)
    expected = jax.eval_shape(lambda p, x: record_forward(spec, p, x).logits, params, probes)
    got = jax.eval_shape(apply_fn, params, probes)
    if not hasattr(got, "shape") or tuple(got.shape) != tuple(expected.shape):
        raise ValueError(
            f"apply_fn(params, probes) returned {getattr(got, 'shape', type(got).__name__)}, but the neural graph's "
            f"forward pass gives logits of shape {tuple(expected.shape)}; apply_fn must map (params, inputs) to "
            "the network's outputs."
        )
    leaves = jax.tree.leaves((params, probes))
    if any(isinstance(x, jax.core.Tracer) for x in leaves):
        return
    expected = np.asarray(record_forward(spec, params, probes).logits, np.float32)
    got = np.asarray(apply_fn(params, probes), np.float32)
    scale = max(1.0, float(np.abs(expected).max()))
    error = float(np.abs(got - expected).max())
    if not error <= rtol * scale:
        raise ValueError(
            f"apply_fn(params, probes) differs from the forward pass the probe features record (max abs difference "
            f"{error:.3g} at output scale {scale:.3g}): the graph reads layers {[l.name for l in spec.layers]} with "
            f"activations {[l.activation for l in spec.layers]}. Pass the network's activations=/order=, or "
            "disable probes for networks that are not plain Dense/conv chains (strides, pooling, normalisation)."
        )
