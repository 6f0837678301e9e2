"""What a study is, as data: ``StudyConfig``, the presets, and configs read from files with dotted overrides."""

from __future__ import annotations

import dataclasses
import json
import os

from l2o_jax import evaluation
from l2o_jax.features import RUN_LENGTH_FEATURES
from l2o_jax.meta import FullUnrollBPTT
from l2o_jax.meta import MetaTrainConfig
from l2o_jax.meta import long_horizon_estimator
from l2o_jax.optimizers import RUN_LENGTH_OUTPUT
from l2o_jax.optimizers import GraphL2O
from l2o_jax.optimizers import config_from_dict
from l2o_jax.optimizers import config_to_dict
from l2o_jax.optimizers import override
from l2o_jax.optimizers import register_config
from l2o_jax.tasks import TaskFamily


@register_config
@dataclasses.dataclass(frozen=True)
class HeldOutTask:
    """A task the meta-training never saw, how long it is run, and what it changes (for the page).

    Example:
      >>> HeldOutTask("digits CNN-32", dict(dataset="digits", width=32, depth=2), 1000, "4x wider")
    """

    label: str
    task: dict
    steps: int
    changes: str = "held out"


@register_config
@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Learned optimizers meta-trained over several meta-seeds, each run's checkpoint picked by a rule fixed in
    advance, and all of them judged on held-out tasks against baselines tuned for every reported horizon.

    Attributes:
      meta: the meta-training run (task family, estimator, outer steps...); its ``learned_optimizer`` is the one
        studied unless ``learned`` names several.
      learned: optional ``{label: learned optimizer config or a whole MetaTrainConfig}``: several learned
        optimizers meta-trained the same way (a ``MetaTrainConfig`` value replaces ``meta`` for that label, e.g.
        a different estimator); empty means ``{family name: meta.learned_optimizer}``.
      meta_seeds: independent meta-training runs (meta-seeds ``meta.seed``, ``meta.seed + 1``, ...); each is
        selected and evaluated on its own, and tables show mean ± std across them.
      selection_task: ``image_task`` arguments of the task whose validation loss picks the checkpoint.
      selection_seeds: fresh optimizees whose mean validation loss scores a checkpoint.
      selection_length: inner steps of the selection runs. The presets use the evaluation horizon: a
        checkpoint picked after the 50 steps it was meta-trained on can be one that falls apart by step 100
        (measured on the quickstart run: 79.1 % vs 93.9 % held-out accuracy for the 50- and 100-step picks).
      eval_task, eval_steps: ``image_task`` arguments of the held-out task, and how long it runs (also the
        horizon of the speed-up and the longest comparison).
      held_out: several held-out tasks (``HeldOutTask``), each with its own length; given, they replace
        ``eval_task``.
      seeds, eval_every: evaluation seeds (the same for every optimizer) and the curves' resolution.
      baselines: hand-made optimizers (keys of ``evaluation.BASELINES``) tuned by grid search on each held-out
        task's validation split, once for every reported horizon.
      learning_rates, weight_decays: the grid (default: the fine grid; ``evaluation.KOFINAS_*`` is Sbicego et al.'s).
      tuning_seeds, tuning_select_by: the baselines' selection rule: runs per grid point, and ``'loss'`` (mean
        validation loss at ``eval_steps``, the rule checkpoints are selected by) or ``'accuracy'``.
      compare_at: earlier horizons (multiples of ``eval_every``) at which the runs are also compared, each against
        baselines tuned for that horizon; a task is compared at the horizons up to its own length and at ``eval_steps``.
      speedup_step: the speed-up is the first step at which a learned optimizer's mean test loss reaches each
        baseline's at this step (default ``eval_steps``).
      full_grid_until, zoom: horizons beyond ``full_grid_until`` search only the grid points within ``zoom`` of the
        previous horizon's pick (widened to the whole grid when the pick lands on that zoom's edge).
      widen_edges: a pick on the edge of the whole grid extends it by two more points beyond that edge, up to this
        many times (0: the pick stays on the edge and tables flag it).
    """

    meta: MetaTrainConfig
    selection_task: dict
    eval_task: dict
    selection_length: int = 100
    meta_seeds: int = 3
    selection_seeds: int = 3
    eval_steps: int = 1000
    seeds: int = 5
    eval_every: int = 10
    baselines: tuple[str, ...] = ("adam", "rmsprop", "sgd_momentum", "adam_cosine")
    learning_rates: tuple[float, ...] = evaluation.FINE_LEARNING_RATES
    weight_decays: tuple[float, ...] = evaluation.FINE_WEIGHT_DECAYS
    tuning_seeds: int = 3
    tuning_select_by: str = "loss"
    compare_at: tuple[int, ...] = ()
    learned: dict = dataclasses.field(default_factory=dict)
    held_out: tuple[HeldOutTask, ...] = ()
    speedup_step: int | None = None
    full_grid_until: int = 1000
    zoom: float = 4.0
    widen_edges: int = 2

    def learned_runs(self) -> dict[str, MetaTrainConfig]:
        """``{label: meta-training run}`` of every learned optimizer studied (seed: ``meta.seed``).

        Example:
          >>> list(preset('quickstart').learned_runs())
          ['GraphL2O']
        """
        learned = self.learned or {type(self.meta.learned_optimizer).__name__: self.meta.learned_optimizer}
        return {
            label: value
            if isinstance(value, MetaTrainConfig)
            else dataclasses.replace(self.meta, learned_optimizer=value)
            for label, value in learned.items()
        }

    def tasks(self) -> tuple[HeldOutTask, ...]:
        """Every held-out task: ``held_out``, or ``eval_task`` run for ``eval_steps``."""
        if self.held_out:
            return self.held_out
        name = ", ".join(f"{k}={v}" for k, v in self.eval_task.items())
        return (HeldOutTask(f"image_task({name})", self.eval_task, self.eval_steps),)

    def horizons(self, steps: int) -> tuple[int, ...]:
        """The horizons a task run for ``steps`` is compared at (baselines tuned for each)."""
        return tuple(sorted({h for h in (*self.compare_at, self.eval_steps) if h <= steps} | {steps}))

    def to_json(self) -> str:
        """The study as JSON (the config encoding of ``l2o_jax.optimizers.config_to_dict``): a file a user can edit
        and pass back as ``l2o-jax meta-train --config FILE``."""
        return json.dumps(config_to_dict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "StudyConfig":
        """Inverse of ``to_json``; anything else is a clear error naming what is wrong.

        Example:
          >>> StudyConfig.from_json(preset('quickstart').to_json()) == preset('quickstart')
          True
        """
        config = config_from_dict(json.loads(text))
        if not isinstance(config, cls):
            raise ValueError(f"the JSON holds a {type(config).__name__}, not a {cls.__name__}.")
        return config

    def with_overrides(self, **changes) -> "StudyConfig":
        """A copy with meta-training fields (``outer_steps``, ``meta_lr``, ``seed``...) or study fields replaced."""
        meta_fields = {f.name for f in dataclasses.fields(MetaTrainConfig)}
        meta_changes = {k: v for k, v in changes.items() if k in meta_fields and v is not None}
        own = {k: v for k, v in changes.items() if k not in meta_fields and v is not None}
        study = dataclasses.replace(self, meta=dataclasses.replace(self.meta, **meta_changes), **own)
        if "outer_steps" in meta_changes and "checkpoint_every" not in meta_changes:
            every = max(1, min(study.meta.checkpoint_every, study.meta.outer_steps // 5 or 1))
            study = dataclasses.replace(study, meta=dataclasses.replace(study.meta, checkpoint_every=every))
        return study


def quickstart_preset() -> StudyConfig:
    """CPU: NG-GNN told the run's length, meta-trained with the long-horizon recipe (PES over inner runs of
    100-3000 steps in 20-step truncations, validation objective) on digits CNN-8 tasks, judged over 1000 steps on
    a 2x wider CNN-16 against Adam and warmup-cosine Adam tuned for 100 and for 1000 steps; three meta-training
    runs."""
    family = TaskFamily(datasets=("digits",), models=("cnn",), widths=(8,), depths=(2,), batch_size=64)
    meta = MetaTrainConfig(
        GraphL2O(hidden=16, layers=2, features=RUN_LENGTH_FEATURES, output=RUN_LENGTH_OUTPUT),
        family,
        long_horizon_estimator(),
        outer_steps=150,
        meta_lr=1e-3,
        checkpoint_every=75,
    )
    return StudyConfig(
        meta=meta,
        selection_task=dict(dataset="digits", width=8, depth=2, batch_size=64),
        eval_task=dict(dataset="digits", width=16, depth=2, batch_size=64),
        selection_length=1000,  # the evaluation horizon, see StudyConfig
        eval_steps=1000,
        eval_every=50,
        compare_at=(100,),
        seeds=5,
        baselines=("adam", "adam_cosine"),
        weight_decays=(0.0,),
    )


def paper_preset() -> StudyConfig:
    """Sbicego et al.'s protocol (GPU): FashionMNIST CNN-32, K = 100, 1000 outer steps, Adam 3e-4 cosine; judged on
    CIFAR10 with a CNN-64 for 1000 steps over 5 seeds against tuned Adam and RMSProp."""
    family = TaskFamily(datasets=("fashion_mnist",), models=("cnn",), widths=(32,), depths=(3,), batch_size=128)
    meta = MetaTrainConfig(
        GraphL2O(hidden=32, layers=4),
        family,
        FullUnrollBPTT(lengths=(100,), num_tasks=8),
        outer_steps=1000,
        meta_lr=3e-4,
        checkpoint_every=100,
    )
    return StudyConfig(
        meta=meta,
        selection_task=dict(dataset="fashion_mnist", width=32, depth=3),
        eval_task=dict(dataset="cifar10", width=64, depth=3),
        selection_length=1000,  # the evaluation horizon, see StudyConfig
        eval_steps=1000,
        seeds=5,
    )


PRESETS = {"quickstart": quickstart_preset, "paper": paper_preset}


def preset(name: str) -> StudyConfig:
    """A named study configuration (``'quickstart'`` or ``'paper'``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {sorted(PRESETS)}.")
    return PRESETS[name]()


def load_config(name_or_path: str, settings: tuple[str, ...] | list[str] = ()) -> StudyConfig:
    """A preset by name or a JSON file written by ``StudyConfig.to_json``, with dotted overrides applied in order.

    A setting names a field of the study (``eval_steps=3000``) or of its meta-training run, with or without the
    ``meta.`` prefix (``outer_steps=300``, ``meta.estimator=pes``, ``learned_optimizer.hidden=32``); values are
    read as in ``l2o_jax.optimizers.override``.

    Example:
      >>> config = load_config('quickstart', ['outer_steps=300', 'estimator=pes', 'eval_task.width=32'])
    """
    if name_or_path in PRESETS:
        config = preset(name_or_path)
    elif os.path.isfile(name_or_path):
        with open(name_or_path) as f:
            try:
                config = StudyConfig.from_json(f.read())
            except (ValueError, TypeError) as error:
                raise ValueError(f"{name_or_path}: not a study configuration: {error}") from error
    else:
        raise ValueError(f"--config {name_or_path!r} is neither a preset ({sorted(PRESETS)}) nor a file.")
    return apply_settings(config, settings)


def apply_settings(config: StudyConfig, settings) -> StudyConfig:
    """``config`` with each ``'dotted.path=value'`` of ``settings`` applied (see ``load_config``).

    Example:
      >>> apply_settings(preset('quickstart'), ['meta_seeds=5']).meta_seeds
      5
    """
    study_fields = {f.name for f in dataclasses.fields(StudyConfig)}
    meta_fields = {f.name for f in dataclasses.fields(MetaTrainConfig)}
    for setting in settings:
        path = setting.partition("=")[0]
        head = path.split(".")[0]
        if head not in study_fields:
            if head not in meta_fields:
                raise ValueError(
                    f"cannot set {path!r}: neither the study ({sorted(study_fields)}) nor its meta-training run "
                    f"({sorted(meta_fields)}) has a field {head!r}."
                )
            setting = "meta." + setting
        config = override(config, setting)
    if config.meta.outer_steps % config.meta.checkpoint_every and not any(
        s.split("=")[0].endswith("checkpoint_every") for s in settings
    ):
        config = config.with_overrides(outer_steps=config.meta.outer_steps)  # checkpoints that divide the run
    return config


def selection_rule(study: StudyConfig) -> str:
    """The checkpoint selection rule in words, as pages state it."""
    task = ", ".join(f"{k}={v}" for k, v in study.selection_task.items())
    return (
        f"validation loss after {study.selection_length} steps on image_task({task}), on the whole validation "
        f"split (at most 2048 examples), mean over {study.selection_seeds} seeds; every checkpoint of each "
        "meta-run scored"
    )
