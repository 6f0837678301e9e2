"""Every paper-scale experiment end to end at a tiny size (``--scale paper --dry-run``), through the real tfds
code path: ``tfds.testing.mock_data`` stands in for the prepared datasets (right shapes, random pixels) and
the network is switched off."""

import dataclasses
import importlib
import json
import math
import os
import socket

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from l2o_jax import study
from l2o_jax.tasks import datasets

pytestmark = pytest.mark.slow  # end-to-end runs: scheduled first (tests/conftest.py)

EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments")
PAPER_DRY_RUN = ["--scale", "paper", "--dry-run", "--no-progress"]


@pytest.fixture
def offline_tfds(monkeypatch):
    """Mock tfds data sources (40 examples per split), no network, loading caches cleared on both sides."""

    def no_network(*args, **kwargs):
        raise OSError("tests run without a network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    datasets._load_cached.cache_clear()
    with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
        yield
    datasets._load_cached.cache_clear()


@pytest.fixture
def scripts(monkeypatch, offline_tfds):
    """Imports an experiment script by name, compiled without XLA's slow passes (every program runs once)."""
    monkeypatch.syspath_prepend(EXPERIMENTS)
    previous = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    yield importlib.import_module
    jax.config.update("jax_disable_most_optimizations", previous)


def finite(results):
    return all(r["finite"] and math.isfinite(r["final_accuracy"]) and math.isfinite(r["final_loss"]) for r in results)


def test_replicate_and_generalization_meta_train_on_fashion_mnist_and_judge_on_cifar10(scripts, tmp_path):
    """Sbicego et al.'s protocol: FashionMNIST CNN meta-training, CIFAR10 CNN evaluation; generalization reuses the
    runs. Dry runs here train NG-GNN over one meta-seed and tune Adam only (the other optimizers and baselines are
    the same code path; several meta-seeds: tests/test_experiments.py and the command line's paper preset below)."""
    workdir, out = tmp_path / "work", tmp_path / "out"
    common = ["--workdir", str(workdir), "--out", str(out), "--optimizers", "NG-GNN", "--baselines", "adam"]
    common += ["--meta-seeds", "1"]
    data = scripts("replicate").main([*PAPER_DRY_RUN, *common])
    ((label, task),) = data["tasks"].items()
    assert task["task"]["dataset"] == "cifar10" and "input 28x28x1 -> 32x32x3" in task["changes"]
    (run,) = data["selection"]["NG-GNN"]  # one meta-seed
    assert data["dry_run"] and run["selected_step"] <= 2 and str(run["selected_step"]) in run["validation_loss"]
    assert all(math.isfinite(v) for c in task["comparisons"] for v in np.ravel(c["eval_loss"]["learned"]))
    family = data["protocol"]["meta_training"]["task_family"]
    assert family["datasets"] == ["fashion_mnist"] and family["models"] == ["cnn"] and family["depths"] == [3]
    page = (out / "replication_paper_dry_run.md").read_text()
    assert "input 28x28x1 -> 32x32x3" in page and (out / f"replication_paper_dry_run_{study.slug(label)}.png").exists()

    argv = [*PAPER_DRY_RUN, *common, "--widths", "8", "--depths", "2"]
    data = scripts("generalization").main(argv)
    assert [(t["task"]["width"], t["task"]["depth"]) for t in data["tasks"].values()] == [(8, 3), (4, 2)]
    assert (workdir / "ng-gnn" / "seed0" / "selection.json").exists()  # reused
    assert (out / "generalization_paper_dry_run_width.png").exists() and "Advantage along width" in (
        out / "generalization_paper_dry_run.md"
    ).read_text()


def test_improvements_meta_trains_recurrent_gnn(scripts, tmp_path):
    """RecurrentGNN only, one meta-seed: GNN-variable is NG-GNN (trained above) with a drawn unroll length
    (tests/test_meta.py)."""
    argv = ["--workdir", str(tmp_path), "--out", str(tmp_path), "--optimizers", "RecurrentGNN", "--baselines", "adam"]
    argv += ["--meta-seeds", "1"]
    data = scripts("improvements").main([*PAPER_DRY_RUN, *argv])
    assert list(data["protocol"]["learned"]) == ["RecurrentGNN"] and not data["not_run"]
    ((task,),) = [list(data["tasks"].values())]
    (run,) = task["curves"]["learned"]["RecurrentGNN"]
    assert all(math.isfinite(v) for v in np.ravel(run["eval_loss"]))
    assert (tmp_path / "improvements_paper_dry_run.md").exists()


def test_li_malik_meta_trains_on_mnist_and_runs_on_cifar10(scripts, tmp_path, monkeypatch):
    """All the trainers (one meta-seed each), judged on CIFAR-10 only: CIFAR-100 is the same per-dataset stage on
    other data (its tfds loading and principal components: tests/test_tasks.py). Adam is the only tuned baseline
    here (SGD, momentum, AdaGrad and RMSProp are the same tuning and evaluation code)."""
    li_malik = scripts("li_malik")
    monkeypatch.setattr(li_malik, "BASELINES", {"Adam": "adam"})
    dry_run = li_malik.dry_run
    monkeypatch.setattr(li_malik, "dry_run", lambda s: dataclasses.replace(dry_run(s), eval_datasets=("cifar10",)))
    li_malik.main(["--scale", "paper", "--dry-run", "--out", str(tmp_path), "--workdir", str(tmp_path / "w")])
    data = json.loads((tmp_path / "li_malik_paper_dry_run.json").read_text())
    assert data["protocol"]["train_task"].startswith("mnist-pca48/mlp-w48")
    assert list(data["datasets"]) == ["cifar10"] and data["not_run"] == []
    for entry in data["datasets"].values():
        assert entry["task"].startswith("cifar10-pca48/") and entry["held_out"]
        learned = entry["curves"]["learned"]
        assert list(learned) == ["GPS", "GPS, adaptive KL bound", "GPS, next-gradient cost", "ES", "PES", "REINFORCE"]
        assert all(len(runs) == 1 for runs in learned.values())
        assert all(math.isfinite(v) for runs in learned.values() for r in runs for row in r["eval_loss"] for v in row)
        assert {(c["trainer"], c["step"]) for c in entry["comparisons"]} == {(t, s) for t in learned for s in (4, 40)}
        assert all(c["eval_loss"]["verdict"] in ("beats", "loses to", "ties") for c in entry["comparisons"])
    assert (tmp_path / "li_malik_paper_dry_run.md").exists() and (tmp_path / "li_malik_paper_dry_run.png").exists()


def test_learned_backward_meta_trains_on_fashion_mnist_mlps_and_cnns(scripts, tmp_path):
    """Under SGD and Adam, 2 meta-runs each (the paper scale has 3), judged at the unroll and at 10x it with
    intervals over meta-runs x seeds; on the deeper CNN only (the dry run keeps one held-out task: the others are
    the same evaluation on other architectures)."""
    argv = ["--scale", "paper", "--dry-run", "--out", str(tmp_path), "--workdir", str(tmp_path / "w")]
    scripts("learned_backward").main([*argv, "--no-progress"])
    data = json.loads((tmp_path / "learned_backward_paper_dry_run.json").read_text())
    setup = data["setup"]
    assert setup["train_task"].startswith("fashion_mnist") and list(data["tasks"]) == ["CNN, deeper"]
    assert setup["eval_steps"] >= 10 * setup["unroll"] and "final meta-parameters" in setup["selection_rule"]
    assert {name: [r["meta_seed"] for r in runs] for name, runs in data["meta_training"].items()} == {
        "SGD": [0, 1],
        "Adam": [0, 1],
    }
    assert all(math.isfinite(r["after"]) for runs in data["meta_training"].values() for r in runs)
    task = data["tasks"]["CNN, deeper"]
    assert [len(runs) for runs in task["curves"]["learned"].values()] == [2, 2]  # every meta-run's curves
    assert all(list(by_steps) == [str(setup["eval_steps"])] for by_steps in task["curves"]["baselines"].values())
    steps = (setup["unroll"], setup["eval_steps"])
    assert [(c["baseline"].split()[0], c["step"]) for c in task["comparisons"]] == [
        (name, step) for name in ("SGD", "Adam") for step in steps
    ]
    for c in task["comparisons"]:
        acc = c["eval_accuracy"]
        assert np.shape(acc["learned"]) == (2, len(setup["eval_seeds"])) and np.shape(acc["baseline"]) == (5,)
        assert acc["verdict"] in ("beats", "loses to", "ties") and acc["low"] <= acc["mean_difference"] <= acc["high"]
    page = (tmp_path / "learned_backward_paper_dry_run.md").read_text()
    assert "Checkpoint rule, fixed before evaluation" in page and (tmp_path / task["figure"]).exists()


def test_amortized_trains_scalegmn_on_a_grey_cifar10_cnn_zoo(scripts, tmp_path):
    """One architecture and activation of the four (the others are the same stages on other zoos)."""
    argv = [*PAPER_DRY_RUN, "--out", str(tmp_path), "--workdir", str(tmp_path / "work"), "--models", "cnn"]
    assert scripts("amortized").main([*argv, "--activations", "relu"]) == 0
    data = json.loads((tmp_path / "amortized_paper_dry_run.json").read_text())
    (zoo,) = data["zoos"].values()
    assert data["dry_run"] and zoo["zoo"]["config"]["dataset"] == "cifar10_gray" and zoo["sparse"]["l1"] == 1e-4
    entries = [zoo[k] for k in ("initial", "scalegmn", "gmn", "sgd_same_time", "adam_same_time")]
    assert all(math.isfinite(e["accuracy"]) for e in entries) and len(zoo["gmn"]["per_seed"]) == 2
    assert (tmp_path / "amortized_paper_dry_run.md").read_text().count("ScaleGMN-B") > 3
    # Rescaled test members: ScaleGMN-B gives the same networks (the same accuracy), whatever GMN-B does.
    moved = zoo["reparametrised"]
    assert moved["group"] == "scale" and abs(moved["scalegmn"]["vs_original"]["mean_difference"]) < 1e-3
    assert math.isfinite(moved["gmn"]["accuracy"]) and moved["scalegmn_vs_gmn"]["verdict"] in (
        "beats",
        "ties",
        "loses to",
    )


def test_meta_train_paper_preset_dry_run_from_the_command_line(scripts, tmp_path, capsys):
    from l2o_jax import cli

    assert cli.main(["meta-train", "--config", "paper", "--dry-run", "--workdir", str(tmp_path), "--no-progress"]) == 0
    data = json.loads((tmp_path / "summary.json").read_text())
    ((task,),) = [list(data["tasks"].values())]
    assert task["task"]["dataset"] == "cifar10" and task["task"]["width"] == 8
    learned = task["curves"]["learned"]["GraphL2O"]
    assert len(learned) == 2 and list(task["curves"]["baselines"]) == ["adam"]  # 2 meta-seeds, Adam
    assert all(math.isfinite(v) for curve in learned for v in np.ravel(curve["eval_accuracy"]))
    assert (tmp_path / "best_meta_params").is_dir() and "cifar10" in capsys.readouterr().out
    assert study.load_config(str(tmp_path / "study.json")).meta_seeds == 2  # the run's config, readable back
