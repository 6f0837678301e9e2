"""The experiment scripts of Sbicego et al., end to end at the smallest settings."""

import importlib
import os

import jax
import numpy as np
import pytest

import l2o_jax
from l2o_jax import study
from l2o_jax.evaluation.stats import VERDICTS

pytestmark = pytest.mark.slow  # end-to-end runs: scheduled first (tests/conftest.py)

EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments")

#: replicate.py --scale smoke, shrunk to what shows the pipeline works: one outer step, tiny nets, 2 seeds.
TINY = (
    "--scale smoke --model mlp --meta-seeds 2 --outer-steps 1 --inner-steps 5 --num-tasks 2 --train-width 4 "
    "--eval-width 8 --hidden 8 --layers 1 --batch-size 16 --eval-steps 10 --eval-every 5 --seeds 2 "
    "--learning-rates 1e-2 --weight-decays 0 --no-progress"
).split()


@pytest.fixture
def unoptimized():
    """Compiles without XLA's slow optimisation passes (every program here runs once)."""
    previous = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


@pytest.fixture
def experiments(monkeypatch, unoptimized):
    """The scripts as modules."""
    monkeypatch.syspath_prepend(EXPERIMENTS)
    return importlib.import_module("replicate"), importlib.import_module("common")


def test_replicate_smoke_writes_finite_results_for_every_optimizer(experiments, tmp_path):
    replicate, common = experiments
    # Sbicego et al.'s four and one with Kofinas et al.'s step (NG-GNN's differs from it only in its output).
    optimizers = [name for name in replicate.OPTIMIZERS if name != "NG-GNN (base none)"]
    argv = [*TINY, "--workdir", str(tmp_path), "--out", str(tmp_path / "out"), "--optimizers", *optimizers]
    data = replicate.main(argv)
    ((label, task),) = data["tasks"].items()
    assert list(task["curves"]["learned"]) == optimizers == list(data["selection"])
    assert "LSTM (base none)" in optimizers
    assert list(task["curves"]["baselines"]) == ["adam", "rmsprop"]
    for name, runs in task["curves"]["learned"].items():
        assert len(runs) == 2 and all(np.isfinite(r["eval_loss"]).all() for r in runs), name  # 2 meta-seeds
        assert (tmp_path / study.slug(name) / "seed0" / "metrics.jsonl").exists(), name
    assert {c["verdict"] for c in [c["eval_accuracy"] for c in task["comparisons"]]} <= set(VERDICTS)
    page = (tmp_path / "out" / "replication_smoke.md").read_text()
    assert "| 10 | NG-GNN | adam" in page and "## Provenance" in page


def test_command_line_overrides_reach_the_protocol(experiments):
    _, common = experiments
    args = common.build_parser("x", ("NG-GNN",)).parse_args([*TINY, "--workdir", "w", "--eval-dataset", "mnist1d"])
    scale, protocol = common.configure(args)
    assert protocol.meta.outer_steps == 1 and protocol.meta.estimator.lengths == (5,)
    assert protocol.meta.task_family.widths == (4,) and protocol.selection_task["width"] == 4
    assert protocol.eval_task["dataset"] == "mnist1d" and protocol.eval_task["model"] == "mlp"
    assert protocol.learning_rates == (1e-2,) and protocol.seeds == 2
    assert common.variable_lengths(100, 8) == tuple(range(75, 251, 25))  # Sbicego et al.'s GNN-variable
    learned = common.learned_configs(["NG-GNN", "GNN-variable"], scale)
    variable = learned["GNN-variable"].estimator.lengths
    assert min(variable) < 5 < max(variable) and protocol.meta.estimator.lengths == (5,)
    assert isinstance(learned["NG-GNN"], l2o_jax.GraphL2O)


def test_paper_scale_is_seed_000s_protocol(experiments):
    _, common = experiments
    scale, protocol = common.configure(
        common.build_parser("x", ("NG-GNN",)).parse_args(["--scale", "paper", "--workdir", "w"])
    )
    meta = protocol.meta
    assert (meta.task_family.datasets, meta.task_family.widths, meta.task_family.depths) == (
        ("fashion_mnist",),
        (32,),
        (3,),
    )
    assert (meta.outer_steps, meta.meta_lr, meta.schedule, meta.checkpoint_every) == (1000, 3e-4, "cosine", 100)
    assert meta.estimator.lengths == (100,) and protocol.selection_task["dataset"] == "fashion_mnist"
    assert (protocol.eval_task["dataset"], protocol.eval_task["width"], protocol.eval_steps, protocol.seeds) == (
        "cifar10",
        64,
        1000,
        5,
    )
    assert {"adam", "rmsprop"} <= set(protocol.baselines)  # Sbicego et al.'s, beside the practitioner's baselines
    assert common.learned_configs(["GNN-variable"], scale)["GNN-variable"].estimator.lengths == tuple(
        range(75, 251, 25)
    )


def test_any_model_tiny_judges_a_wider_resnet_and_a_transformer_on_a_page_the_report_writes(
    monkeypatch, unoptimized, tmp_path
):
    monkeypatch.syspath_prepend(os.path.dirname(EXPERIMENTS))
    any_model, report = importlib.import_module("experiments.any_model"), importlib.import_module("experiments.report")
    out = tmp_path / "out"
    args = ["--scale", "tiny", "--workdir", str(tmp_path), "--out", str(out), "--no-progress", "--note", "a note"]
    data = any_model.main(args)
    assert data["protocol"]["meta_training"]["task_family"]["models"] == ["mlp", "cnn", "resnet"]
    assert [t["task"]["model"] for t in data["tasks"].values()] == ["resnet", "transformer"] and not data["not_run"]
    for label, task in data["tasks"].items():
        assert sorted({(c["step"], c["baseline"]) for c in task["comparisons"]}) == [(20, "adam")], label
        for comparison in task["comparisons"]:
            assert {comparison[k]["verdict"] for k in ("eval_loss", "eval_accuracy")} <= set(VERDICTS), label
            assert np.isfinite(comparison["eval_loss"]["learned"]).all(), label  # 1 meta-run x 2 seeds
        assert (out / task["figure"]).exists(), label
    ((name, saved),) = report.load_results(str(out)).items()
    assert name == "any_model_tiny.json" and saved["kind"] == "horizon"
    page = (out / "any_model_tiny.md").read_text()
    assert report.render(saved) == page and "digits transformer-4" in page and "- Note: a note" in page
    # the study's selected run ships as a pretrained entry, with its record and a long run on the first task
    export = importlib.import_module("experiments.export_pretrained")
    args = ["--study", str(out / name), "--workdir", str(tmp_path), "--long-steps", "20", "NG-GNN=tiny-entry"]
    assert export.main([*args, "--directory", str(tmp_path / "entries")]) == ["tiny-entry"]
    record = l2o_jax.pretrained.info("tiny-entry", tmp_path / "entries")
    assert record["long_run"]["finite"] and record["long_run"]["steps"] == 20
    assert record["evaluation"]["task_args"]["model"] == "resnet" and record["meta_training"]["meta_seed"] == 0
