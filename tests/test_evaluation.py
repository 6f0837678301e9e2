"""Evaluation over seeds, baseline tuning, reports, and the end-to-end study behind `l2o-jax quickstart`."""

import dataclasses
import json
import os

import numpy as np
import optax
import pytest

import l2o_jax
from l2o_jax import evaluation
from l2o_jax import study
from l2o_jax.cli import main as cli_main
from l2o_jax.meta import FullUnrollBPTT
from l2o_jax.tasks import image_task


@pytest.fixture(scope="module")
def task():
    return image_task("digits", model="mlp", width=16, depth=2, batch_size=32)


def test_evaluate_records_curves_over_seeds(task):
    result = evaluation.evaluate(optax.adam(1e-2), task, steps=100, seeds=3, eval_every=20, name="adam")
    assert result.train_loss.shape == (3, 100)
    assert result.eval_accuracy.shape == (3, 6) and list(result.eval_steps) == [0, 20, 40, 60, 80, 100]
    assert np.isfinite(result.train_loss).all()
    assert result.eval_accuracy[:, -1].mean() > result.eval_accuracy[:, 0].mean() + 0.4  # learns from ~chance
    assert not np.allclose(result.train_loss[0], result.train_loss[1])  # seeds differ
    with pytest.raises(ValueError, match="multiple of eval_every"):
        evaluation.evaluate(optax.adam(1e-2), task, steps=15, seeds=1, eval_every=10)


def test_tuning_prefers_the_learning_rate_that_trains(task):
    tuned = evaluation.tune_baseline(
        "adam", task, steps=60, learning_rates=(1e-6, 1e-2), weight_decays=(0.0,), eval_every=20
    )
    assert tuned.learning_rate == 1e-2
    by_lr = {s["learning_rate"]: s["val_accuracy"] for s in tuned.scores}
    assert by_lr[1e-2] > by_lr[1e-6]
    with pytest.raises(ValueError, match="unknown baseline"):
        evaluation.tune_baseline("adagrad", task, steps=20)


def test_tables_and_plots(task, tmp_path):
    results = [
        evaluation.evaluate(evaluation.baseline(name, 1e-2), task, 40, 2, eval_every=20, name=name)
        for name in ("adam", "rmsprop")
    ]
    table = evaluation.results_table(results, "adam")
    assert "| rmsprop |" in table and "vs adam" in table
    png = evaluation.plot_curves(results, tmp_path / "curves.png")
    adv = evaluation.plot_advantage([16, 32], {"x": ([1.0, 2.0], [0.1, 0.2])}, tmp_path / "adv.png", xlabel="width")
    for path in (png, adv):
        assert os.path.getsize(path) > 1000
    saved = json.load(open(evaluation.save_results(results, tmp_path / "r.json")))
    assert saved[0]["name"] == "adam" and len(saved[0]["eval_accuracy"]) == 2


def test_quickstart_pipeline_end_to_end(tmp_path):
    config = study.preset("quickstart")
    family = dataclasses.replace(config.meta.task_family, models=("mlp",), widths=(8,), batch_size=32)
    meta = dataclasses.replace(
        config.meta,
        learned_optimizer=l2o_jax.GraphL2O(hidden=8, layers=1),
        task_family=family,
        estimator=FullUnrollBPTT(lengths=(10,), num_tasks=2),
    )
    tiny = dataclasses.replace(
        config,
        meta=meta,
        selection_task=dict(dataset="digits", model="mlp", width=8, depth=2),
        eval_task=dict(dataset="digits", model="mlp", width=16, depth=2, batch_size=32),
        selection_length=10,
        eval_steps=20,
        seeds=2,
        learning_rates=(1e-2, 1e-3),
        weight_decays=(0.0,),
    ).with_overrides(outer_steps=4)
    summary = study.run_study(tiny, tmp_path, progress=False, log=lambda *_: None)
    for name in ("results.md", "accuracy.png", "results.json", "summary.json", "metrics.jsonl", "meta_training.png"):
        assert (tmp_path / name).exists(), name
    assert all(r["finite"] for r in summary["results"])
    assert summary["best_checkpoint"] in (1, 2, 3, 4)
    loaded = l2o_jax.load_meta_params(tmp_path / "best_meta_params")
    assert isinstance(loaded.config, l2o_jax.GraphL2O)
    assert "GraphL2O (meta-trained)" in (tmp_path / "results.md").read_text()


def test_cli_rejects_unknown_preset(capsys):
    with pytest.raises(SystemExit):
        cli_main(["meta-train", "--config", "nope", "--workdir", "x"])
    assert "invalid choice" in capsys.readouterr().err
