"""One learned optimizer for any model: NG-GNN meta-trained on a mix of MLPs, CNNs and ResNets, judged on a wider
ResNet and on a transformer it never saw.

    python -m experiments.any_model --workdir runs/any_model_smoke        # the smoke study (CPU, embedded data)
    python -m experiments.any_model --workdir runs/a --scale tiny         # the pipeline in a minute

The graph is read from each model's computation (residual connections, LayerNorm scales and shifts, attention and
embeddings; issue 16), so one set of meta-parameters steps all of them. Meta-training uses the long-horizon recipe
(``long_horizon_estimator``: PES on the log mean validation loss over staggered truncations of log-uniformly drawn
run lengths), each outer step on an architecture drawn from the family; every architecture keeps its own
persistent optimizees. The protocol is ``experiments/horizon.py``'s: ``meta_seeds`` independent meta-runs, each
run's checkpoint picked on the meta-training ResNet's validation loss before any held-out number exists, Adam and
warmup-cosine Adam tuned on the fine grid for every reported horizon, claims from bootstrap intervals over meta-runs
x seeds. The result is ``<out>/any_model_<scale>.json`` and its page (kind ``horizon``).
"""

from __future__ import annotations

from experiments import horizon
from l2o_jax.features import RUN_LENGTH_FEATURES
from l2o_jax.meta import MetaTrainConfig
from l2o_jax.meta import long_horizon_estimator
from l2o_jax.optimizers import RUN_LENGTH_OUTPUT
from l2o_jax.optimizers import GraphL2O
from l2o_jax.study import HeldOutTask
from l2o_jax.study import StudyConfig
from l2o_jax.tasks import TaskFamily

MODELS = ("mlp", "cnn", "resnet")  # meta-training's mix; the transformer stays held out


def smoke_study() -> StudyConfig:
    """CPU, embedded digits: meta-trained on MLP-8, CNN-8 and ResNet-8 (depth 2), judged over 1000 steps on a
    ResNet-16 and a transformer."""
    resnet = dict(dataset="digits", model="resnet", width=8, depth=2, batch_size=64)
    family = TaskFamily(datasets=("digits",), models=MODELS, widths=(8,), depths=(2,), batch_size=64)
    meta = MetaTrainConfig(
        GraphL2O(hidden=16, layers=2, features=RUN_LENGTH_FEATURES, output=RUN_LENGTH_OUTPUT),
        family,
        long_horizon_estimator(low=100, high=1000, num_tasks=8),
        outer_steps=60,  # an outer step: 5 s on a ResNet-8, < 1 s on the others (loaded 2 cores), 2-3 min to compile
        meta_lr=1e-3,
        checkpoint_every=30,
    )
    transformer = dict(dataset="digits", model="transformer", width=16, depth=2, batch_size=64)
    return StudyConfig(
        meta=meta,
        learned={"NG-GNN": meta.learned_optimizer},
        meta_seeds=3,
        selection_task=resnet,
        selection_length=1000,
        selection_seeds=3,
        eval_task={**resnet, "width": 16},
        eval_steps=1000,
        held_out=(
            HeldOutTask("digits ResNet-16", {**resnet, "width": 16}, 1000, "2x wider ResNet"),
            HeldOutTask("digits transformer-16", transformer, 1000, "a transformer: attention and embeddings"),
        ),
        seeds=5,
        eval_every=50,
        compare_at=(100,),
        speedup_step=1000,
        baselines=("adam", "adam_cosine"),
        weight_decays=(0.0,),
    )


def tiny_study() -> StudyConfig:
    """Every stage at the smallest size: for tests and for trying the pipeline."""
    resnet = dict(dataset="digits", model="resnet", width=4, depth=1, batch_size=16)
    family = TaskFamily(datasets=("digits",), models=MODELS, widths=(4,), depths=(1,), batch_size=16)
    estimator = long_horizon_estimator(truncation_length=3, low=4, high=12, num_tasks=2)
    meta = MetaTrainConfig(
        GraphL2O(hidden=8, layers=1, features=RUN_LENGTH_FEATURES, output=RUN_LENGTH_OUTPUT),
        family,
        estimator,
        outer_steps=1,
        meta_lr=1e-3,
        checkpoint_every=1,
    )
    transformer = dict(dataset="digits", model="transformer", width=4, depth=1, batch_size=16)
    return StudyConfig(
        meta=meta,
        learned={"NG-GNN": meta.learned_optimizer},
        meta_seeds=1,
        selection_task=resnet,
        selection_length=10,
        selection_seeds=1,
        eval_task={**resnet, "width": 8},
        eval_steps=20,
        held_out=(
            HeldOutTask("digits ResNet-8", {**resnet, "width": 8}, 20, "2x wider ResNet"),
            HeldOutTask("digits transformer-4", transformer, 20, "a transformer"),
        ),
        seeds=2,
        eval_every=10,
        speedup_step=20,
        baselines=("adam",),
        learning_rates=(1e-3, 1e-2),
        weight_decays=(0.0,),
        widen_edges=0,
        tuning_seeds=1,
    )


STUDIES = {"smoke": smoke_study, "tiny": tiny_study}


def main(argv=None) -> dict:
    return horizon.main(
        argv,
        studies=STUDIES,
        name="any_model",
        title="One learned optimizer for MLPs, CNNs, ResNets and a transformer ({scale} scale)",
        description=__doc__.split("\n\n")[0],
    )


if __name__ == "__main__":
    main()
