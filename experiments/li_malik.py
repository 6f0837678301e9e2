"""Li & Malik (2017): meta-train an optimizer policy by policy search on a 48-48-10 MLP, evaluate it elsewhere.

The policy (``l2o_jax.optimizers.li_malik``) is meta-trained on one task, a two-layer MLP with 48 inputs (the
inputs projected on their first 48 principal components, as the paper reduces MNIST to 48 dimensions), 48
hidden units and 10 outputs, by antithetic ES over its parameters and, separately, by REINFORCE with a baseline
over its Gaussian steps and by the paper's own guided policy search (``l2o_jax.gps``; REINFORCE and GPS run the
same number of optimizee steps per outer step). It is then run (its mean step) on other datasets against SGD,
momentum and Adam, whose learning rates are tuned on the meta-training task, and against the Andrychowicz
coordinatewise LSTM meta-trained on the same task with the same ES budget. Reported: the full-batch training
objective vs iteration, mean ± std over 5 held-out seeds.

    python experiments/li_malik.py --scale smoke                  # digits -> digits, mnist1d; CPU, minutes
    python experiments/li_malik.py --scale paper --data-dir DIR   # MNIST -> CIFAR-10, CIFAR-100 (tfds, prepared)
    python experiments/li_malik.py --scale paper --dry-run        # the paper's pipeline at a tiny size (seconds)

Writes ``li_malik_<scale>.json`` (the data and provenance), ``li_malik_<scale>.md`` (its page, rendered by
``experiments/report.py``) and ``li_malik_<scale>.png`` (curves) to ``--out``; meta-training runs (metrics,
checkpoints, curves) go to ``--workdir``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import jax.numpy as jnp
import numpy as np
import optax
import report

import l2o_jax
from l2o_jax.evaluation import evaluate
from l2o_jax.gps import GuidedPolicySearch
from l2o_jax.meta import AntitheticES
from l2o_jax.meta import MetaTrainConfig
from l2o_jax.meta import meta_train
from l2o_jax.optimizers.li_malik import LiMalikL2O
from l2o_jax.optimizers.li_malik import li_malik_l2o
from l2o_jax.policy_search import Reinforce
from l2o_jax.tasks import Dataset
from l2o_jax.tasks import DatasetUnavailableError
from l2o_jax.tasks import image_task
from l2o_jax.tasks import load_dataset

INPUT_DIMS = 48
# Per coordinate's 50-step trajectory. On digits-pca48 from a fresh policy, the local controllers alone reach a mean
# objective of 2.14 / 1.56 / 0.70 / 0.29 over 50 steps at 1 / 10 / 100 / 1000 (1e5 diverges), and 30 GPS steps
# train the policy to 1.80 at 10, 0.60 at 1000.
GPS_KL_BOUND = 1000.0
EVAL_SEEDS = tuple(range(1000, 1005))
TUNING_SEEDS = (0, 1)
LEARNING_RATES = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)


@dataclasses.dataclass(frozen=True)
class Scale:
    """One experiment size. ``hidden`` is the policy's LSTM width (the paper: 128)."""

    train_dataset: str
    eval_datasets: tuple[str, ...]
    hidden: int
    unroll: int
    es_steps: int
    es_pairs: int
    reinforce_steps: int
    gps_steps: int
    lstm_steps: int
    meta_lr: float
    eval_steps: int
    batch_size: int = 128
    learning_rates: tuple[float, ...] = LEARNING_RATES
    eval_seeds: tuple[int, ...] = EVAL_SEEDS


SCALES = {
    "smoke": Scale(
        train_dataset="digits",
        eval_datasets=("digits", "mnist1d"),
        hidden=32,
        unroll=50,
        es_steps=80,
        es_pairs=8,
        reinforce_steps=30,
        gps_steps=30,
        lstm_steps=80,
        meta_lr=0.03,
        eval_steps=200,
    ),
    "paper": Scale(
        train_dataset="mnist",
        eval_datasets=("cifar10", "cifar100"),
        hidden=128,
        unroll=100,
        es_steps=2000,
        es_pairs=32,
        reinforce_steps=1000,
        gps_steps=1000,
        lstm_steps=2000,
        meta_lr=3e-3,
        eval_steps=1000,
    ),
}


def dry_run_scale(scale: Scale) -> Scale:
    """``scale``'s datasets and stages at a tiny size: seconds on a CPU, for checking the pipeline end to end."""
    return dataclasses.replace(
        scale,
        hidden=8,
        unroll=3,
        es_steps=2,
        es_pairs=2,
        reinforce_steps=2,
        gps_steps=2,
        lstm_steps=2,
        eval_steps=10,
        batch_size=8,
        learning_rates=(0.1,),
        eval_seeds=EVAL_SEEDS[:2],
    )


BASELINES = {"SGD": lambda lr: optax.sgd(lr), "momentum": lambda lr: optax.sgd(lr, momentum=0.9), "Adam": optax.adam}


class SingleTask:
    """A task family of one task (``meta_train`` samples from a family)."""

    def __init__(self, task):
        self.task = task

    def sample(self, key):
        del key
        return self.task

    def __repr__(self):
        return f"SingleTask({self.task.name!r})"


def reduce_inputs(data: Dataset, dims: int = INPUT_DIMS) -> Dataset:
    """``data`` with its inputs projected on the first ``dims`` principal components of its training split.

    Datasets with at most ``dims`` input values are returned unchanged.

    Example:
      >>> reduce_inputs(load_dataset('digits')).input_shape
      (48,)
    """
    flat = lambda x: np.asarray(x, np.float32).reshape(len(x), -1)
    train = flat(data.train_x)
    if train.shape[1] <= dims:
        return data
    center = train.mean(0)
    centered = train - center
    _, vectors = np.linalg.eigh(centered.T @ centered)  # eigenvalues ascending: the last columns lead
    components = vectors[:, ::-1][:, :dims]
    project = lambda x: (flat(x) - center) @ components
    projected = project(data.train_x)
    return Dataset(
        train_x=jnp.asarray(projected),
        train_y=data.train_y,
        val_x=jnp.asarray(project(data.val_x)),
        val_y=data.val_y,
        test_x=jnp.asarray(project(data.test_x)),
        test_y=data.test_y,
        mean=jnp.asarray(projected.mean(0)),
        std=jnp.asarray(np.maximum(projected.std(0), 1e-6)),
        name=f"{data.name}-pca{dims}",
        num_classes=data.num_classes,
        input_shape=(dims,),
    )


def mlp_task(name: str, scale: Scale, data_dir: str | None):
    """The paper's optimizee, a 48-48-10 MLP (hidden width 48; inputs reduced to 48 where there are more)."""
    data = reduce_inputs(load_dataset(name, data_dir=data_dir))
    return image_task(data, model="mlp", width=48, depth=2, batch_size=scale.batch_size)


def train_policy(learned_optimizer, estimator, steps: int, scale: Scale, task, workdir: str, seed: int = 0):
    """Meta-trains with ``meta_train``; returns the final meta-parameters and the wall time."""
    config = MetaTrainConfig(
        learned_optimizer,
        SingleTask(task),
        estimator,
        outer_steps=steps,
        meta_lr=scale.meta_lr,
        checkpoint_every=steps,
        seed=seed,
    )
    started = time.perf_counter()
    result = meta_train(config, workdir, progress=False)
    return result.meta_params, time.perf_counter() - started


def objective(tx, task, steps: int, seeds, name: str):
    """The full-batch training objective (first 2048 training examples) every 10 steps, over seeds."""
    return evaluate(tx, task, steps, seeds, name=name, eval_every=10, split="train")


def tune_learning_rate(name: str, task, steps: int, learning_rates=LEARNING_RATES) -> float:
    """The learning rate of a baseline with the lowest mean objective over the run, on ``TUNING_SEEDS``."""
    scores = {}
    for lr in learning_rates:
        curve = objective(BASELINES[name](lr), task, steps, TUNING_SEEDS, name).eval_loss
        scores[lr] = float(np.mean(curve)) if np.all(np.isfinite(curve)) else np.inf
    return min(scores, key=scores.get)


def plot(results: dict[str, list], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, (dataset, runs) in zip(axes[0], results.items()):
        for r in runs:
            mean, std = r.eval_loss.mean(0), r.eval_loss.std(0)
            ax.plot(r.eval_steps, mean, label=r.name)
            ax.fill_between(r.eval_steps, np.maximum(mean - std, 1e-4), mean + std, alpha=0.2)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("training objective (full batch)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(scale_name: str, out: str, workdir: str, data_dir: str | None, dry_run: bool = False) -> str:
    """Meta-trains, tunes, evaluates and writes the result's JSON and page (``experiments/report.py``);
    ``dry_run`` shrinks the scale (:func:`dry_run_scale`) and names the outputs ``li_malik_<scale>_dry_run.*``."""
    started = time.perf_counter()
    scale = dry_run_scale(SCALES[scale_name]) if dry_run else SCALES[scale_name]
    scale_name = f"{scale_name}_dry_run" if dry_run else scale_name
    train_task = mlp_task(scale.train_dataset, scale, data_dir)
    eval_tasks = {name: mlp_task(name, scale, data_dir) for name in scale.eval_datasets}
    es = AntitheticES(length=scale.unroll, num_pairs=scale.es_pairs, sigma=0.01)
    policy = LiMalikL2O(hidden=scale.hidden)
    seconds = {}
    trained, seconds["Li & Malik (ES)"] = train_policy(
        policy, es, scale.es_steps, scale, train_task, os.path.join(workdir, "li_malik_es")
    )
    reinforce = Reinforce(length=scale.unroll, num_tasks=2, rollouts_per_task=4)
    reinforced, seconds["Li & Malik (REINFORCE)"] = train_policy(
        policy, reinforce, scale.reinforce_steps, scale, train_task, os.path.join(workdir, "li_malik_reinforce")
    )
    gps = GuidedPolicySearch(length=scale.unroll, num_trajectories=8, kl_bound=GPS_KL_BOUND)
    guided, seconds["Li & Malik (GPS)"] = train_policy(
        policy, gps, scale.gps_steps, scale, train_task, os.path.join(workdir, "li_malik_gps")
    )
    lstm, seconds["LSTM (Andrychowicz, ES)"] = train_policy(
        l2o_jax.LSTML2O(), es, scale.lstm_steps, scale, train_task, os.path.join(workdir, "lstm_es")
    )
    rates = {name: tune_learning_rate(name, train_task, scale.eval_steps, scale.learning_rates) for name in BASELINES}
    optimizers = {
        "Li & Malik (ES)": li_malik_l2o(trained),
        "Li & Malik (REINFORCE)": li_malik_l2o(reinforced),
        "Li & Malik (GPS)": li_malik_l2o(guided),
        "LSTM (Andrychowicz, ES)": l2o_jax.lstm_l2o(lstm),
        **{f"{name} (lr {lr:g})": BASELINES[name](lr) for name, lr in rates.items()},
    }
    results = {
        task.name: [objective(tx, task, scale.eval_steps, scale.eval_seeds, name) for name, tx in optimizers.items()]
        for task in eval_tasks.values()
    }
    os.makedirs(out, exist_ok=True)
    stem = os.path.join(out, f"li_malik_{scale_name}")
    plot(results, stem + ".png")
    data = {
        "kind": "li_malik",
        "title": f"Li & Malik (2017), {scale_name} scale",
        "setup": {
            "train_task": train_task.name,
            "unroll": scale.unroll,
            "hidden": scale.hidden,
            "meta_training_seconds": {k: round(v, 1) for k, v in seconds.items()},
        },
        "tuning": {
            "task": train_task.name,
            "steps": scale.eval_steps,
            "seeds": len(TUNING_SEEDS),
            "rule": "lowest mean training objective over the run",
            "learning_rates": rates,
        },
        "marks": [m for m in (10, 50, 100, 200, 500, 1000) if m <= scale.eval_steps],
        "tasks": {name: [r.to_json() for r in runs] for name, runs in results.items()},
        "figure": os.path.basename(stem) + ".png",
        "provenance": report.provenance(started),
    }
    with open(report.save(data, stem + ".json")) as f:
        return f.read()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="smoke")
    parser.add_argument("--out", help="result directory (default: docs/results; runs/dry_run with --dry-run)")
    parser.add_argument("--workdir", default="runs/li_malik")
    parser.add_argument("--data-dir", default=None, help="tfds data directory (paper scale)")
    parser.add_argument("--dry-run", action="store_true", help="the scale's pipeline at a tiny size (seconds, CPU)")
    args = parser.parse_args(argv)
    try:
        out = args.out or ("runs/dry_run" if args.dry_run else "docs/results")
        print(run(args.scale, out, os.path.join(args.workdir, args.scale), args.data_dir, args.dry_run))
    except DatasetUnavailableError as error:
        sys.exit(f"li_malik --scale {args.scale}: {error}")


if __name__ == "__main__":
    main()
