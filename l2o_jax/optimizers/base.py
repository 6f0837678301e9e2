"""What every learned optimizer shares: meta-parameters that carry their config, the optax transform, the output.

A learned optimizer family is a frozen dataclass (its config) that builds a Flax meta-network. The network
maps a per-parameter feature pytree (``l2o_jax.features``) to two channels per parameter, a *direction* and a
*log-magnitude*; the step is

    update = -lr * exp(b * tanh(magnitude / b)) * (base + direction)

where ``lr = exp(log_lr)`` is itself a meta-parameter and ``base`` is Adam's direction ``m / sqrt(v)`` (or 0).
The network's last layer starts near zero, so at initialisation every learned optimizer makes a finite,
small, descent step (Adam's at ``init_lr``) and meta-training learns how to depart from it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from l2o_jax.features import FeatureConfig
from l2o_jax.features import FeatureState
from l2o_jax.features import adam_direction
from l2o_jax.features import global_features
from l2o_jax.features import init_feature_state
from l2o_jax.features import parameter_features
from l2o_jax.features import update_feature_state
from l2o_jax.optimizers.schedules import SCHEDULES
from l2o_jax.optimizers.schedules import WARMUP_FRACTION
from l2o_jax.optimizers.schedules import schedule_factor


@struct.dataclass
class MetaParams:
    """The trainable arrays of a learned optimizer, with its config as static pytree metadata.

    ``jax.grad``, ``jax.vmap`` and ES perturbations act on ``arrays`` alone; ``config`` rides along, so
    ``graph_l2o(meta_params)`` needs nothing else.

    Attributes:
      arrays: ``{'net': <Flax params of the meta-network>, 'log_lr': scalar}``, plus the family's
        ``extra_arrays`` (e.g. ``'probes'`` for graph families with probe features).
      config: the learned optimizer's frozen config (e.g. ``GraphL2O(...)``).
    """

    arrays: Any
    config: Any = struct.field(pytree_node=False)

    def transform(self, **options) -> optax.GradientTransformationExtraArgs:
        """Shorthand for ``self.config.transform(self, **options)``."""
        return self.config.transform(self, **options)

    @property
    def num_parameters(self) -> int:
        return int(sum(np.prod(x.shape) for x in jax.tree.leaves(self.arrays)))


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    """How the meta-network's two output channels become a step.

    Attributes:
      base: ``'adam'`` adds Adam's bias-corrected direction (the network learns a residual on it);
        ``'none'`` makes the network's direction the whole step.
      init_lr: initial ``lr = exp(log_lr)``; the step size a freshly initialised optimizer takes.
      magnitude_bound: ``b`` above: the network can scale a parameter's step by at most e^b either way.
      output_init_scale: standard deviation of the output layer's initial weights (small, not zero, so
        meta-gradients reach every meta-parameter from the first step).
      schedule: ``'constant'``; ``'cosine'``: every step is also multiplied by ``(1 + cos(pi t / T)) / 2``,
        ``T`` the run's ``total_steps`` (then a required argument of the optax transform); or
        ``'warmup_cosine'``: by ``warmup_cosine(t, T)``, a linear warmup over the first 5 % of the run, then that
        decay (the schedule practitioners put on Adam). The network learns the step around it.
      update_cap: ``None``, or ``c > 0``: the step of every weight tensor (two or more axes) is scaled down, when
        needed, so that its norm is at most ``c`` times the tensor's norm (a trust-ratio cap as in LARS/LAMB, but
        only an upper bound: it binds in unstable early steps and leaves the rest alone). Biases, normalisation
        parameters and all-zero tensors are never capped.
    """

    base: str = "adam"
    init_lr: float = 1e-3
    magnitude_bound: float = 3.0
    output_init_scale: float = 1e-3
    schedule: str = "constant"
    update_cap: float | None = None

    def describe(self) -> str:
        """How a step is formed, in words, for reports.

        Example:
          >>> OutputConfig().describe()
          "update = -lr * exp(b * tanh(m / b)) * (adam + d): Adam's bias-corrected direction ..."
        """
        scale = (
            f"scaled by a learned per-parameter magnitude m (at most e^{self.magnitude_bound:g} either way, "
            f"b = {self.magnitude_bound:g}) and a learned global step size lr (initially {self.init_lr:g})"
        )
        if self.schedule == "cosine":
            scale += ", times a cosine decay (1 + cos(pi t / T)) / 2 over the run's T steps"
        if self.schedule == "warmup_cosine":
            scale += (
                f", times a linear warmup over the first {100 * WARMUP_FRACTION:g} % of the run's T steps and a cosine "
                "decay to 0 at T"
            )
        if self.update_cap is not None:
            scale += (
                f"; each weight tensor's step is capped at {self.update_cap:g} times the tensor's norm (a trust-ratio "
                "cap)"
            )
        if self.base == "adam":
            return (
                "update = -lr * exp(b * tanh(m / b)) * (adam + d): Adam's bias-corrected direction plus a learned "
                f"correction d, {scale}."
            )
        return (
            "update = -lr * exp(b * tanh(m / b)) * d: the network's direction d is the whole step (Kofinas et al.'s "
            f"parameterisation), {scale}."
        )

    def __post_init__(self):
        if self.base not in ("adam", "none"):
            raise ValueError(f"OutputConfig.base must be 'adam' or 'none', got {self.base!r}.")
        if not self.init_lr > 0:
            raise ValueError(f"OutputConfig.init_lr must be positive, got {self.init_lr}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"OutputConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}.")
        if self.update_cap is not None and not self.update_cap > 0:
            raise ValueError(f"OutputConfig.update_cap must be None or positive, got {self.update_cap}.")


#: The output of learned optimizers told the run's length: they start as warmup-cosine Adam with a peak of 0.1 and
#: an update cap of 0.1, tuned on the long-horizon studies' meta-training task (digits CNN-8, validation split, 3
#: seeds). The peak: the lowest mean log validation loss over 100, 1000 and 3000-step runs, grid 0.0064-0.2048
#: (1.18 / 0.133 / 0.112 at 0.1024, against 1.46 / 0.158 / 0.078 at 0.0256). The cap: the lowest mean log
#: validation loss over 100 and 1000-step runs of the depth-2 and a depth-3 CNN-8, grid peak {0.0256, 0.0512,
#: 0.1024} x cap {none, 0.01, 0.03, 0.1}: -1.33 at (0.1024, 0.1) against -1.15 without a cap; uncapped, the peak of
#: 0.1 left the depth-3 net at 54 % validation accuracy after a 100-step run, capped 84 %, and the cap does not
#: bind in depth-2 1000-step runs. Meta-training starts from the optimizer a practitioner would have tuned on that
#: task and learns corrections. The first start, cosine-decayed Adam at 0.01, was 2-10x too small: it lost to tuned
#: Adam at 100 steps on every held-out task.
RUN_LENGTH_OUTPUT = OutputConfig(init_lr=0.1, schedule="warmup_cosine", update_cap=0.1)


def output_head(features: int, config: OutputConfig, name: str = "output") -> nn.Dense:
    """The final Dense layer of every meta-network: ``features`` channels, near-zero initial weights."""
    return nn.Dense(
        features,
        kernel_init=nn.initializers.normal(config.output_init_scale),
        bias_init=nn.initializers.zeros,
        name=name,
    )


class L2OState(NamedTuple):
    """Optimizer state of every learned optimizer: feature statistics, the meta-network's recurrent state and the
    run's length (``()`` when the optimizer does not use it)."""

    features: FeatureState
    recurrent: Any
    total_steps: Any = ()


def tiny_mlp_params(fan_in: int = 3, fan_out: int = 2) -> dict:
    """A ``fan_in``-4-``fan_out`` MLP's (zero) parameters: the stand-in optimizee that initialises meta-networks.

    Example:
      >>> graph_spec(tiny_mlp_params()).widths
      (3, 4, 2)
    """
    return {
        "params": {
            "Dense_0": {"kernel": jnp.zeros((fan_in, 4)), "bias": jnp.zeros(4)},
            "Dense_1": {"kernel": jnp.zeros((4, fan_out)), "bias": jnp.zeros(fan_out)},
        }
    }


@dataclasses.dataclass(frozen=True)
class LearnedOptimizer:
    """Base config of a learned optimizer family. Subclasses define ``network()`` (and may override
    ``initial_recurrent``, ``architecture_spec``, ``extra_arrays``, ``step_inputs``, ``stand_in_params``).

    Attributes:
      features: the per-parameter / global inputs.
      output: the step parametrisation.

    Class attribute ``reads_computation``: whether the family's ``transform`` takes ``apply_fn=`` and
    ``example_input=`` and reads the optimizee's computation from them (graph families: residual edges,
    normalisation, attention); ``meta.learned_transform_for`` passes them for models that are no plain chain.
    """

    features: FeatureConfig = FeatureConfig()
    output: OutputConfig = OutputConfig()

    reads_computation = False

    # -- to be provided by families ------------------------------------------------------------------
    def network(self) -> nn.Module:
        """The Flax meta-network: ``(feature_tree, globals, context, recurrent) -> (out_tree, recurrent)``."""
        raise NotImplementedError

    def architecture_spec(self, params, activations=None, order=None) -> Any:
        """Static per-architecture information the network needs (a GraphSpec for graph families).

        ``activations`` and ``order`` describe the optimizee as in ``l2o_jax.graphs.graph_spec``; families that
        do not look at the architecture ignore them.
        """
        del params, activations, order
        return None

    def initial_recurrent(self, params) -> Any:
        """The network's recurrent state for a freshly initialised optimizee (``()`` if stateless)."""
        del params
        return ()

    def extra_arrays(self, key: jax.Array) -> dict:
        """Meta-parameter arrays besides ``'net'`` and ``'log_lr'`` (graph families with probes: ``'probes'``)."""
        del key
        return {}

    def step_inputs(self, arrays, params, context) -> dict:
        """Extra keyword inputs of the network, computed each step from the meta-parameter ``arrays`` and the
        optimizee (graph families with probes: each neuron's probe activations). Default: none."""
        del arrays, params, context
        return {}

    def stand_in_params(self) -> Any:
        """The stand-in optimizee whose features initialise the meta-network (a tiny MLP)."""
        return tiny_mlp_params()

    def step_frame(self, params, context) -> Any:
        """Per-parameter positive units ``u`` (a pytree like ``params``) the meta-network works in, or ``None``.

        With units, the network sees ``params / u``, gradients and momenta times ``u`` (second moments times
        ``u**2``), and its step, Adam's base included, is multiplied by ``u``: the optimizer runs in the
        reparametrisation ``params = u * canonical`` (``scale_graph_l2o``'s scale-normalised network). Default:
        ``None``, the parameters' own units.
        """
        del params, context
        return None

    # -- shared ---------------------------------------------------------------------------------------
    @property
    def needs_total_steps(self) -> bool:
        """Whether the optax transform must be told the run's length (progress features or a schedule over the run)."""
        return bool(self.features.progress_scales) or self.output.schedule != "constant"

    def init(self, key: jax.Array) -> MetaParams:
        """Fresh meta-parameters for this learned optimizer.

        Example:
          >>> meta_params = l2o_jax.GraphL2O(hidden=16, layers=2).init(jax.random.key(0))
        """
        return MetaParams(arrays=_init_arrays(self, key), config=self)

    def transform(self, meta_params: MetaParams, **options) -> optax.GradientTransformationExtraArgs:
        """This learned optimizer as an optax transformation (see ``learned_transform``)."""
        return learned_transform(meta_params, **options)


@functools.partial(jax.jit, static_argnums=0)
def _init_arrays(config: LearnedOptimizer, key: jax.Array) -> dict:
    # Compiled once per config: initialising the meta-network op by op costs 15-25 s on a CPU, compiling it ~2 s.
    params = config.stand_in_params()
    state = init_feature_state(params, config.features)
    feats = parameter_features(params, params, update_feature_state(state, params, config.features), config.features)
    glob = global_features(state.count, None, config.features, total_steps=1)
    context = config.architecture_spec(params)
    extra = config.extra_arrays(key)
    inputs = config.step_inputs(extra, params, context)
    variables = config.network().init(key, feats, glob, context, config.initial_recurrent(params), **inputs)
    return {"net": variables["params"], "log_lr": jnp.log(jnp.float32(config.output.init_lr)), **extra}


def check_meta_params(meta_params, expected: type | None = None) -> MetaParams:
    """``meta_params`` checked against the family ``expected`` (any family when ``None``); a clear TypeError if not.

    Example:
      >>> meta_params = check_meta_params(meta_params, GraphL2O)
    """
    if isinstance(meta_params, str):
        raise TypeError(
            f"got the name {meta_params!r}: the factories of l2o_jax.optimizers take MetaParams; pretrained "
            f"entries are loaded by name with the top-level factories (e.g. l2o_jax.graph_l2o({meta_params!r})) or "
            f"l2o_jax.pretrained.load({meta_params!r})."
        )
    if not isinstance(meta_params, MetaParams):
        raise TypeError(
            f"expected l2o_jax MetaParams (from e.g. GraphL2O().init(key) or load_meta_params), got "
            f"{type(meta_params).__name__}."
        )
    if expected is not None and not isinstance(meta_params.config, expected):
        raise TypeError(
            f"these meta-parameters belong to {type(meta_params.config).__name__}, not "
            f"{expected.__name__}; use {type(meta_params.config).__name__}'s factory or "
            "meta_params.transform()."
        )
    return meta_params


def learned_transform(meta_params: MetaParams, *, total_steps=None, **options) -> optax.GradientTransformationExtraArgs:
    """Wraps a learned optimizer's meta-network as an ``optax.GradientTransformationExtraArgs``.

    Args:
      meta_params: from ``SomeL2O(...).init(key)`` or ``load_meta_params``.
      total_steps: the length of the training run, as for a learning-rate schedule; required by optimizers
        meta-trained to know it (``config.needs_total_steps``: progress features or a schedule over the run), ignored
        by the others. May be a traced array (meta-training draws one per inner run).
      **options: per-architecture options forwarded to the family's ``architecture_spec`` (graph families
        take ``activations=`` and ``order=`` as in ``l2o_jax.graphs.graph_spec``).

    Returns:
      A transform whose ``update(grads, state, params, *, value=None, **extra_args)`` needs ``params``,
      reads the loss from ``value`` when given, and ignores other extra args.

    Example:
      >>> tx = optax.chain(optax.clip_by_global_norm(1.0), learned_transform(meta_params))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state, params, value=loss)
    """
    meta_params = check_meta_params(meta_params)
    config: LearnedOptimizer = meta_params.config
    network = config.network()
    if isinstance(total_steps, (int, float)) and not total_steps >= 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}.")

    def init_fn(params):
        if config.needs_total_steps and total_steps is None:
            raise ValueError(
                f"these {type(config).__name__} meta-parameters were meta-trained to know the run's length "
                "(progress features or a schedule over the run): pass total_steps=, the number of steps you will "
                "train for."
            )
        return L2OState(
            features=init_feature_state(params, config.features),
            recurrent=config.initial_recurrent(params),
            total_steps=jnp.asarray(total_steps, jnp.float32) if config.needs_total_steps else (),
        )

    def update_fn(updates, state, params=None, *, value=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                f"{type(config).__name__}'s update needs the current parameters: call "
                "tx.update(grads, state, params) (learned optimizers read the weights)."
            )
        features = update_feature_state(state.features, updates, config.features)
        context = config.architecture_spec(params, **options)
        # Units are constants to differentiation, like the inner gradients: sqrt(v u^2) has no derivative where v = 0.
        units = jax.lax.stop_gradient(config.step_frame(params, context))
        seen_params, seen_grads, seen = (
            (params, updates, features) if units is None else _in_units(units, params, updates, features)
        )
        feats = parameter_features(seen_params, seen_grads, seen, config.features)
        total = state.total_steps if config.needs_total_steps else None
        glob = global_features(features.count, value, config.features, total)
        inputs = config.step_inputs(meta_params.arrays, params, context)
        out, recurrent = network.apply(
            {"params": meta_params.arrays["net"]}, feats, glob, context, state.recurrent, **inputs
        )
        base = adam_direction(seen, config.features) if config.output.base == "adam" else None
        step = _steps(out, base, meta_params.arrays["log_lr"], config.output, params)
        if config.output.schedule != "constant":
            factor = schedule_factor(config.output.schedule, features.count - 1, total)
            step = jax.tree.map(lambda s: (s * factor).astype(s.dtype), step)
        if units is not None:
            step = jax.tree.map(lambda s, u: (s * u).astype(s.dtype), step, units)
        if config.output.update_cap is not None:
            step = cap_relative_updates(step, params, config.output.update_cap)
        return step, L2OState(features=features, recurrent=recurrent, total_steps=state.total_steps)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def cap_relative_updates(updates, params, cap: float):
    """``updates`` with every weight tensor's (two or more axes) scaled down, where needed, to a norm of at most
    ``cap`` times its parameter's norm; other leaves, and tensors whose parameters are all zero, pass unchanged.

    Example:
      >>> params = {"kernel": jnp.ones((2, 2)), "bias": jnp.zeros(2)}
      >>> capped = cap_relative_updates({"kernel": jnp.full((2, 2), 10.0), "bias": jnp.ones(2)}, params, 0.1)
      >>> capped["kernel"]  # norm 0.2 = 0.1 x the kernel's norm 2; the bias's step is untouched
    """

    def one(update, param):
        if param.ndim < 2:
            return update
        # safe_norm: a finite derivative at zero (meta-gradients flow through the cap).
        param_norm = optax.safe_norm(param.astype(jnp.float32), 0.0)
        update_norm = optax.safe_norm(update.astype(jnp.float32), 1e-30)
        allowed = cap * param_norm
        factor = jnp.where((param_norm > 0) & (update_norm > allowed), allowed / update_norm, 1.0)
        return (update * factor).astype(update.dtype)

    return jax.tree.map(one, updates, params)


def relative_update_cap(cap: float | jax.Array) -> optax.GradientTransformation:
    """An optax transform that caps each weight tensor's step at ``cap`` times its parameter's norm
    (``cap_relative_updates``); put it last in a chain, after the learning rate. It gives a hand-made optimizer the
    update cap that ``OutputConfig(update_cap=...)`` gives the learned ones.

    Example:
      >>> tx = optax.chain(optax.adamw(1e-2), relative_update_cap(0.1))
    """
    if isinstance(cap, (int, float)) and not cap > 0:  # a traced cap (a tuning grid under vmap) is not checked
        raise ValueError(f"relative_update_cap: cap must be > 0, got {cap}.")

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("relative_update_cap needs the parameters: call update(updates, state, params).")
        return cap_relative_updates(updates, params, cap), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _in_units(units, params, grads, features: FeatureState):
    """Parameters, gradients and feature statistics in the units ``units`` (see ``LearnedOptimizer.step_frame``)."""
    times = lambda x, u: x * u.astype(jnp.float32)
    return (
        jax.tree.map(lambda p, u: p / u.astype(p.dtype), params, units),
        jax.tree.map(lambda g, u: g * u.astype(g.dtype), grads, units),
        features._replace(
            momenta=jax.tree.map(lambda m, u: times(m, u[..., None]), features.momenta, units),
            second_moment=jax.tree.map(lambda v, u: times(v, u * u), features.second_moment, units),
        ),
    )


def _steps(out, base, log_lr, config: OutputConfig, params):
    bound = config.magnitude_bound
    lr = jnp.exp(log_lr)

    def step(o, b, p):
        direction = o[..., 0] if b is None else b + o[..., 0]
        return (-lr * jnp.exp(bound * jnp.tanh(o[..., 1] / bound)) * direction).astype(p.dtype)

    if base is None:
        return jax.tree.map(lambda o, p: step(o, None, p), out, params)
    return jax.tree.map(step, out, base, params)


def flatten_features(tree) -> tuple[jax.Array, Any]:
    """Concatenates all leaves' parameters into rows: ``(num_params, channels)`` plus what ``unflatten`` needs."""
    leaves, treedef = jax.tree.flatten(tree)
    shapes = [leaf.shape[:-1] for leaf in leaves]
    flat = jnp.concatenate([leaf.reshape(-1, leaf.shape[-1]) for leaf in leaves])
    return flat, (treedef, shapes)


def unflatten_features(flat: jax.Array, how) -> Any:
    """Inverse of ``flatten_features`` for rows of any channel count."""
    treedef, shapes = how
    sizes = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]
    pieces = jnp.split(flat, sizes)
    return jax.tree.unflatten(treedef, [x.reshape(s + flat.shape[1:]) for x, s in zip(pieces, shapes)])


def num_coordinates(params) -> int:
    """Total number of scalar parameters."""
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))
