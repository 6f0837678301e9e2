"""Li & Malik (2017): one optimizer policy, four trainers (GPS, ES, PES, REINFORCE), judged on other datasets.

The policy (``l2o_jax.optimizers.li_malik``, an LSTM over averaged recent iterates, gradients and objective values)
is meta-trained on the paper's optimizee, a 48-48-10 MLP over the first 48 principal components of one dataset
(``image_task(..., pca_dims=48)``, fitted on the training split), by each trainer ``meta_seeds`` times with the
same budget of optimizee steps per meta-run and the same seeds: the paper's own guided policy search
(``l2o_jax.gps``; also with MDGPS's adaptive KL bound, and with the next gradient in its cost), antithetic ES and
PES over the policy's parameters (``l2o_jax.meta``) and REINFORCE over its Gaussian steps
(``l2o_jax.policy_search``). The final meta-parameters of every run are kept (a rule fixed before
any evaluation). Every meta-run then trains the same MLP on each evaluation dataset (its own principal components)
for 10x the meta-training unroll, over ``seeds`` evaluation seeds, beside SGD, momentum, Adam, AdaGrad and RMSProp
tuned on that dataset's validation split on the x2 learning-rate grid, separately for the unroll's horizon and for
10x it (``l2o_jax.evaluation.tune_baseline``). At both horizons each trainer meets the best tuned baseline (lowest
validation loss) on test loss and accuracy, with a 95 % bootstrap interval over meta-runs x seeds
(``l2o_jax.evaluation.compare``).

    python -m experiments.li_malik                                  # smoke: digits -> mnist1d (CPU)
    python -m experiments.li_malik --scale paper --data-dir DIR     # MNIST -> CIFAR-10, CIFAR-100 (tfds, prepared)
    python -m experiments.li_malik --scale paper --dry-run          # the paper's pipeline at a tiny size (minutes)

Every stage (meta-run, tuning, curve) is cached under ``--workdir``, so a killed study resumes. The result is
``<out>/li_malik_<scale>.json``, its page (``experiments/pages/li_malik.py``) and ``li_malik_<scale>.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import numpy as np

from experiments import report
from l2o_jax import evaluation
from l2o_jax import io
from l2o_jax.gps import GuidedPolicySearch
from l2o_jax.meta import PES
from l2o_jax.meta import AntitheticES
from l2o_jax.meta import MetaTrainConfig
from l2o_jax.meta import meta_train
from l2o_jax.optimizers.li_malik import LiMalikL2O
from l2o_jax.optimizers.li_malik import li_malik_l2o
from l2o_jax.policy_search import Reinforce
from l2o_jax.study import compare_curves
from l2o_jax.tasks import DatasetUnavailableError
from l2o_jax.tasks import TaskFamily
from l2o_jax.tasks import image_task

#: The tuned baselines (keys of ``l2o_jax.evaluation.BASELINES``) by the names the paper's figures use.
BASELINES = {"SGD": "sgd", "momentum": "sgd_momentum", "Adam": "adam", "AdaGrad": "adagrad", "RMSProp": "rmsprop"}
#: The fine x2 grid, continued up to ~0.8: plain SGD and AdaGrad on a small MLP want large rates.
LEARNING_RATES = tuple(1e-4 * 2.0**k for k in range(14))


@dataclasses.dataclass(frozen=True)
class Study:
    """The whole protocol as data.

    Attributes:
      train_dataset, eval_datasets: the meta-training data and the datasets every policy is judged on.
      pca_dims, width, batch_size: the optimizee, an MLP ``pca_dims``-``width``-classes on batches of ``batch_size``.
      hidden: the policy's LSTM width (the paper: 128).
      unroll: inner steps of a meta-training run (the horizon); evaluation runs ``longer`` times as long.
      trainers: label -> estimator (each with ``unroll``-step runs or truncations).
      budget: optimizee steps per meta-run, the same for every trainer.
      meta_lr, meta_seeds: the meta-optimizer's learning rate (Adam, cosine) and independent meta-runs per trainer.
      seeds, eval_every: evaluation seeds and the curves' resolution.
      learning_rates, tuning_seeds: the baselines' grid and the runs per grid point.
    """

    train_dataset: str
    eval_datasets: tuple[str, ...]
    hidden: int
    unroll: int
    trainers: dict
    budget: int
    meta_lr: float
    meta_seeds: int = 3
    longer: int = 10
    pca_dims: int = 48
    width: int = 48
    batch_size: int = 128
    seeds: tuple[int, ...] = tuple(range(1000, 1005))
    eval_every: int = 10
    learning_rates: tuple[float, ...] = LEARNING_RATES
    tuning_seeds: int = 3
    data_dir: str | None = None

    @property
    def horizons(self) -> tuple[int, int]:
        return self.unroll, self.longer * self.unroll

    def task(self, dataset: str):
        return image_task(dataset, **self.task_arguments())

    def task_arguments(self) -> dict:
        return dict(
            model="mlp",
            width=self.width,
            depth=2,
            batch_size=self.batch_size,
            pca_dims=self.pca_dims,
            data_dir=self.data_dir,
        )

    def meta_config(self, label: str, seed: int) -> MetaTrainConfig:
        estimator = self.trainers[label]
        family = TaskFamily(
            datasets=(self.train_dataset,),
            models=("mlp",),
            widths=(self.width,),
            depths=(2,),
            batch_size=self.batch_size,
            data_dir=self.data_dir,
            pca_dims=self.pca_dims,
        )
        outer_steps = max(1, self.budget // optimizee_steps(estimator))
        return MetaTrainConfig(
            LiMalikL2O(hidden=self.hidden),
            family,
            estimator,
            outer_steps=outer_steps,
            meta_lr=self.meta_lr,
            checkpoint_every=max(1, outer_steps // 4),
            seed=seed,
        )


def optimizee_steps(estimator) -> int:
    """Optimizee steps one outer step of ``estimator`` takes (forward runs; backward passes not counted)."""
    if isinstance(estimator, AntitheticES):
        return 2 * estimator.num_pairs * estimator.length
    if isinstance(estimator, PES):
        return 2 * estimator.num_pairs * estimator.truncation_length
    if isinstance(estimator, Reinforce):
        return estimator.num_tasks * estimator.rollouts_per_task * estimator.length
    if isinstance(estimator, GuidedPolicySearch):
        return estimator.num_trajectories * estimator.length
    raise TypeError(f"no optimizee-step count for estimator {type(estimator).__name__}.")


def trainers(unroll: int, gps_kl_bound: float = 1000.0) -> dict:
    """The four trainers, each spending 8 unrolls' worth of optimizee steps per outer step (PES: 8 truncations of
    ``unroll // 5``, so it makes 5x as many meta-updates on the same budget), and GPS twice more: with its KL bound
    adapted by MDGPS's rule (from ``gps_kl_bound``, within 1-10⁴), and with each step's decrease read from the
    next gradient (``cost_gradient='next'``)."""
    gps = GuidedPolicySearch(length=unroll, num_trajectories=8, kl_bound=gps_kl_bound)
    return {
        "GPS": gps,
        "GPS, adaptive KL bound": dataclasses.replace(gps, adapt_kl_bound=True),
        "GPS, next-gradient cost": dataclasses.replace(gps, cost_gradient="next"),
        "ES": AntitheticES(length=unroll, num_pairs=4, sigma=0.01),
        "PES": PES(truncation_length=max(1, unroll // 5), horizon=unroll, num_pairs=4, sigma=0.01),
        "REINFORCE": Reinforce(length=unroll, num_tasks=2, rollouts_per_task=4),
    }


def smoke_study() -> Study:
    """CPU, embedded data: meta-trained on digits (64 -> 48 components), judged on MNIST-1D (all its 40
    components); LSTM-16, 50-step unrolls, 12k optimizee steps per meta-run."""
    return Study(
        train_dataset="digits",
        eval_datasets=("mnist1d",),
        hidden=16,
        unroll=50,
        trainers=trainers(50),
        budget=12_000,
        meta_lr=0.03,
    )


def paper_study(data_dir: str | None = None) -> Study:
    """The paper's setting (GPU): MNIST -> CIFAR-10 and CIFAR-100, LSTM-128, 100-step unrolls."""
    return Study(
        train_dataset="mnist",
        eval_datasets=("cifar10", "cifar100"),
        hidden=128,
        unroll=100,
        trainers=trainers(100),
        budget=1_000_000,
        meta_lr=3e-3,
        data_dir=data_dir,
    )


def dry_run(study: Study) -> Study:
    """``study``'s datasets and stages at a tiny size: seconds on a CPU, for checking the pipeline end to end."""
    return dataclasses.replace(
        study,
        hidden=8,
        unroll=4,
        trainers=trainers(4),
        budget=64,
        meta_seeds=1,
        batch_size=8,
        seeds=study.seeds[:2],
        eval_every=2,
        learning_rates=(0.1,),
        tuning_seeds=1,
    )


def meta_train_all(study: Study, workdir: str, log=print) -> dict:
    """Every trainer's ``meta_seeds`` runs; ``{label: [record per meta-run]}``, meta-parameters in ``<run>/final``."""
    records = {}
    for label in study.trainers:
        records[label] = []
        for seed in range(study.meta_seeds):
            run = os.path.join(workdir, report.slug(label), f"seed{seed}")

            def train(run=run, config=study.meta_config(label, seed)):
                log(f"meta-training {label}, meta-seed {config.seed}: {config.outer_steps} outer steps -> {run}")
                started = time.perf_counter()
                result = meta_train(config, run, progress=False)
                io.save_meta_params(os.path.join(run, "final"), result.meta_params)
                losses = [m["meta_loss"] for m in result.metrics]
                return {
                    "meta_seed": config.seed,
                    "outer_steps": config.outer_steps,
                    "optimizee_steps": config.outer_steps * optimizee_steps(config.estimator),
                    "first_meta_loss": losses[0],
                    "last_meta_loss": float(np.mean(losses[-max(1, len(losses) // 10) :])),
                    "skipped_steps": result.skipped_steps,
                    "seconds": round(time.perf_counter() - started, 1),
                }

            records[label].append(io.cached_json(os.path.join(run, "record.json"), train))
    return records


def tune_baselines(study: Study, dataset: str, workdir: str, log=print) -> dict:
    """``{baseline: {horizon: TuningResult as a dict}}`` on ``dataset``'s validation split."""
    task = study.task(dataset)
    tuned = {}
    for label, name in BASELINES.items():
        tuned[label] = {}
        for horizon in study.horizons:

            def tune(name=name, horizon=horizon):
                log(f"tuning {name} on {task.name} for {horizon} steps")
                result = evaluation.tune_baseline(
                    name,
                    task,
                    horizon,
                    seeds=study.tuning_seeds,
                    learning_rates=study.learning_rates,
                    weight_decays=(0.0,),
                )
                return dataclasses.asdict(result)

            path = os.path.join(workdir, "tuning", dataset, f"{name}-{horizon}.json")
            tuned[label][str(horizon)] = io.cached_json(path, tune)
    return tuned


def _curve(result: evaluation.EvalResult) -> dict:
    """Test loss and accuracy ``[seeds, evals]`` and the minibatch training loss ``[seeds, evals]`` (mean of the
    ``eval_every`` steps before each evaluation; NaN at step 0)."""
    losses = result.train_loss.reshape(result.train_loss.shape[0], -1, result.eval_steps[1] - result.eval_steps[0])
    train = np.concatenate([np.full((losses.shape[0], 1), np.nan), losses.mean(-1)], 1)
    return {
        "eval_steps": result.eval_steps.tolist(),
        "eval_loss": _rounded(result.eval_loss),
        "eval_accuracy": _rounded(result.eval_accuracy),
        "train_loss": _rounded(train),
    }


def _rounded(values: np.ndarray) -> list:
    """``values`` as nested lists of 5 significant digits (the page's precision), non-finite values as None."""
    return [[float(f"{v:.5g}") if np.isfinite(v) else None for v in row] for row in np.asarray(values, np.float64)]


def evaluate_dataset(study: Study, dataset: str, tuned: dict, workdir: str, log=print) -> dict:
    """Test curves: ``{'learned': {label: [curve per meta-run]}, 'baselines': {label: {horizon: curve}}}``; the same
    evaluation seeds give every optimizer the same initialisations and batches."""
    task = study.task(dataset)
    cache = os.path.join(workdir, "curves", dataset)

    def run(tx, steps, name):
        every = min(study.eval_every, steps)
        return _curve(evaluation.evaluate(tx, task, steps, study.seeds, name=name, eval_every=every))

    learned = {}
    for label in study.trainers:
        learned[label] = []
        for seed in range(study.meta_seeds):
            meta = io.load_meta_params(os.path.join(workdir, report.slug(label), f"seed{seed}", "final"))
            path = os.path.join(cache, f"{report.slug(label)}-seed{seed}.json")
            log(f"evaluating {label} (meta-seed {seed}) on {task.name} for {study.horizons[1]} steps")
            learned[label].append(io.cached_json(path, lambda m=meta: run(li_malik_l2o(m), study.horizons[1], label)))
    baselines = {}
    for label, by_horizon in tuned.items():
        baselines[label] = {}
        for horizon, t in by_horizon.items():
            tx = evaluation.baseline(t["name"], t["learning_rate"], t["weight_decay"], steps=int(horizon))
            path = os.path.join(cache, f"{t['name']}-{horizon}.json")
            log(f"evaluating {label} tuned for {horizon} steps on {task.name}")
            baselines[label][horizon] = io.cached_json(path, lambda tx=tx, h=int(horizon): run(tx, h, label))
    return {"learned": learned, "baselines": baselines}


def best_baseline(tuned: dict, horizon: int) -> str:
    """The tuned baseline with the lowest validation loss at ``horizon`` (chosen on validation, never on test)."""

    def validation_loss(label):
        t = tuned[label][str(horizon)]
        return next(s["val_loss"] for s in t["scores"] if s["learning_rate"] == t["learning_rate"])

    return min(tuned, key=validation_loss)


def compare_at_horizons(study: Study, tuned: dict, curves: dict) -> list[dict]:
    """Every trainer against the best tuned baseline at each horizon, on test accuracy and loss."""
    rows = []
    for horizon in study.horizons:
        best = best_baseline(tuned, horizon)
        base = curves["baselines"][best][str(horizon)]
        for label, runs in curves["learned"].items():
            rows.append({"trainer": label, "baseline": best, "step": horizon, **compare_curves(runs, base, horizon)})
    return rows


def plot(study: Study, curves_by_dataset: dict, path: str) -> str:
    """Test accuracy and loss against steps (log x) per dataset: each trainer's mean over meta-runs x seeds with
    the range across meta-runs, and each baseline tuned for the longer horizon (dashed)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.8 * len(curves_by_dataset)))
    axes = fig.subplots(len(curves_by_dataset), 2, squeeze=False)
    for row, (dataset, curves) in zip(axes, curves_by_dataset.items()):
        for ax, key, ylabel in ((row[0], "eval_accuracy", "test accuracy"), (row[1], "eval_loss", "test loss")):
            for label, runs in curves["learned"].items():
                steps = np.asarray(runs[0]["eval_steps"])[1:]
                per_run = np.stack([np.asarray(r[key], np.float64).mean(0)[1:] for r in runs])
                line = ax.plot(steps, per_run.mean(0), lw=2, label=f"{label} ({len(runs)} meta-runs)")[0]
                ax.fill_between(steps, per_run.min(0), per_run.max(0), color=line.get_color(), alpha=0.2)
            for label, by_horizon in curves["baselines"].items():
                base = by_horizon[str(study.horizons[1])]
                steps = np.asarray(base["eval_steps"])[1:]
                ax.plot(steps, np.asarray(base[key], np.float64).mean(0)[1:], "--", lw=1, label=f"{label} (tuned)")
            ax.axvline(study.unroll, color="grey", lw=0.8, ls=":")
            ax.set_xscale("log")
            ax.set_xlabel("step (dotted: the meta-training unroll)")
            ax.set_ylabel(ylabel)
            if key == "eval_loss":
                ax.set_yscale("log")
            ax.set_title(dataset)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _protocol(study: Study) -> dict:
    first = study.meta_config(next(iter(study.trainers)), 0)
    return {
        "train_task": study.task(study.train_dataset).name,
        "policy": io.config_to_dict(first.learned_optimizer),
        "unroll": study.unroll,
        "horizons": list(study.horizons),
        "budget": study.budget,
        "meta_lr": study.meta_lr,
        "schedule": first.schedule,
        "meta_seeds": study.meta_seeds,
        "selection_rule": "the final meta-parameters of every meta-run (fixed before any evaluation)",
        "trainers": {
            label: {
                "estimator": repr(estimator),
                "optimizee_steps_per_outer_step": optimizee_steps(estimator),
                "outer_steps": study.meta_config(label, 0).outer_steps,
            }
            for label, estimator in study.trainers.items()
        },
        "seeds": list(study.seeds),
        "baselines": dict(BASELINES),
        "learning_rates": list(study.learning_rates),
        "tuning_seeds": study.tuning_seeds,
    }


def run(study: Study, workdir: str, out: str, name: str, log=print) -> dict:
    """The whole study; returns the result's data, also written with its page and figure to ``out`` (after every
    dataset, so a study cut short has a page for the datasets it finished)."""
    started = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    data = {
        "kind": "li_malik",
        "title": f"Li & Malik (2017): GPS, ES, PES and REINFORCE on one policy ({name})",
        "protocol": _protocol(study),
        "meta_training": meta_train_all(study, workdir, log),
        "datasets": {},
        "figure": f"li_malik_{name}.png",
    }
    curves_by_dataset = {}
    for dataset in study.eval_datasets:
        tuned = tune_baselines(study, dataset, workdir, log)
        curves_by_dataset[dataset] = curves = evaluate_dataset(study, dataset, tuned, workdir, log)
        data["datasets"][dataset] = {
            "task": study.task(dataset).name,
            "held_out": dataset != study.train_dataset,
            "tuned": tuned,
            "comparisons": compare_at_horizons(study, tuned, curves),
            "curves": curves,
        }
        plot(study, curves_by_dataset, os.path.join(out, data["figure"]))
        data["not_run"] = [d for d in study.eval_datasets if d not in data["datasets"]]
        data["provenance"] = report.provenance(started, workdir=workdir)
        report.save(data, os.path.join(out, f"li_malik_{name}.json"))
    return data


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("smoke", "paper"), default="smoke")
    parser.add_argument("--out", help="result directory (default: docs/results; runs/dry_run with --dry-run)")
    parser.add_argument("--workdir", default=None, help="cached stages (default: runs/li_malik/<scale>)")
    parser.add_argument("--data-dir", default=None, help="tfds data directory (paper scale)")
    parser.add_argument("--dry-run", action="store_true", help="the scale's pipeline at a tiny size (seconds, CPU)")
    parser.add_argument("--no-progress", action="store_true", help="accepted for a uniform command line; no bars")
    args = parser.parse_args(argv)
    study = smoke_study() if args.scale == "smoke" else paper_study(args.data_dir)
    name = f"{args.scale}_dry_run" if args.dry_run else args.scale
    study = dry_run(study) if args.dry_run else study
    out = args.out or ("runs/dry_run" if args.dry_run else report.RESULTS)
    workdir = args.workdir or os.path.join("runs", "li_malik", name)
    try:
        return run(study, workdir, out, name)
    except DatasetUnavailableError as error:
        sys.exit(f"li_malik --scale {args.scale}: {error}")


if __name__ == "__main__":
    main()
