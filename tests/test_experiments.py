"""The experiment scripts of Sbicego et al., end to end at the smallest settings."""

import importlib
import json
import math
import os

import jax
import pytest

pytestmark = pytest.mark.slow  # end-to-end runs: scheduled first (tests/conftest.py)

EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments")

#: replicate.py --scale smoke, shrunk to what shows the pipeline works: one outer step, tiny nets, 2 seeds.
TINY = (
    "--scale smoke --model mlp --outer-steps 1 --inner-steps 5 --num-tasks 2 --train-width 4 --eval-width 8 "
    "--hidden 8 --layers 1 --batch-size 16 --eval-steps 10 --eval-every 5 --seeds 2 --learning-rates 1e-2 "
    "--weight-decays 0 --no-progress"
).split()


@pytest.fixture
def experiments(monkeypatch):
    """The scripts as modules, compiled without XLA's slow optimisation passes (every program here runs once)."""
    monkeypatch.syspath_prepend(EXPERIMENTS)
    previous = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    yield importlib.import_module("replicate"), importlib.import_module("common")
    jax.config.update("jax_disable_most_optimizations", previous)


def test_replicate_smoke_writes_finite_results_for_every_optimizer(experiments, tmp_path):
    replicate, common = experiments
    summary = replicate.main([*TINY, "--workdir", str(tmp_path)])

    names = [r["name"] for r in summary["results"]]
    assert names[:4] == list(replicate.OPTIMIZERS)
    assert [n.split(" ")[0] for n in names[4:]] == ["adam", "rmsprop"]
    for r in summary["results"]:
        assert r["finite"] and math.isfinite(r["final_accuracy"]) and math.isfinite(r["final_loss"]), r
    curves = json.loads((tmp_path / "results.json").read_text())
    assert [c["name"] for c in curves] == names and all(len(c["eval_accuracy"]) == 2 for c in curves)
    for name in ("configs.json", "summary.json", "summary.md", "figure1_accuracy.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    for name in replicate.OPTIMIZERS:
        run = tmp_path / common.slug(name)
        assert (run / "metrics.jsonl").exists() and (run / "best_meta_params").is_dir(), name
        assert summary["learned"][name]["outer_step"] == 1
    assert "| NG-GNN |" in (tmp_path / "summary.md").read_text()


def test_command_line_overrides_reach_the_protocol(experiments):
    _, common = experiments
    args = common.build_parser("x", ("NG-GNN",)).parse_args([*TINY, "--workdir", "w", "--eval-dataset", "mnist1d"])
    scale, protocol = common.configure(args)
    assert protocol.meta.outer_steps == 1 and protocol.meta.estimator.lengths == (5,)
    assert protocol.meta.task_family.widths == (4,) and protocol.selection_task["width"] == 4
    assert protocol.eval_task["dataset"] == "mnist1d" and protocol.eval_task["model"] == "mlp"
    assert protocol.learning_rates == (1e-2,) and protocol.seeds == 2
    assert common.variable_lengths(100, 8) == tuple(range(75, 251, 25))  # Sbicego et al.'s GNN-variable
    variable = common.learned_study("GNN-variable", scale).meta.estimator.lengths
    assert min(variable) < 5 < max(variable) and common.learned_study("NG-GNN", scale).meta.estimator.lengths == (5,)


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
    assert common.learned_study("GNN-variable", scale).meta.estimator.lengths == tuple(range(75, 251, 25))
