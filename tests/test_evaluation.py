"""Evaluation over seeds, baseline tuning, reports, and the end-to-end study behind `l2o-jax quickstart`."""

import dataclasses
import importlib
import json
import os

import numpy as np
import optax
import pytest

import l2o_jax
from l2o_jax import evaluation
from l2o_jax import study
from l2o_jax.cli import main as cli_main
from l2o_jax.features import RUN_LENGTH_FEATURES
from l2o_jax.meta import FullUnrollBPTT
from l2o_jax.optimizers import OutputConfig
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


def test_tuning_prefers_the_learning_rate_that_trains_and_records_its_rule(task, monkeypatch):
    tuned = evaluation.tune_baseline("adam", task, steps=60, learning_rates=(1e-6, 1e-2, 10.0), weight_decays=(0.0,))
    assert tuned.learning_rate == 1e-2 and not tuned.on_edge
    by_lr = {s["learning_rate"]: s for s in tuned.scores}
    assert (
        by_lr[1e-2]["val_loss"] < by_lr[1e-6]["val_loss"] and by_lr[1e-2]["val_accuracy"] > by_lr[1e-6]["val_accuracy"]
    )
    validation = task.data.split("validation")[0].shape[0]
    assert (tuned.steps, tuned.seeds, tuned.validation_examples, tuned.select_by) == (60, 3, validation, "loss")
    assert tuned.selection == f"validation loss at step 60, mean over 3 seeds, {validation} validation examples"
    edge = evaluation.tune_baseline("adam", task, steps=60, learning_rates=(1e-6, 1e-2), weight_decays=(0.0,), seeds=1)
    assert edge.learning_rate == 1e-2 and edge.on_edge and "on the grid's edge" in edge.label
    trained = []  # a widened search trains only its new point and keeps the earlier scores
    module = importlib.import_module("l2o_jax.evaluation.evaluate")  # (the package's `evaluate` is the function)
    grid_scores = module._grid_scores
    monkeypatch.setattr(module, "_grid_scores", lambda *a: trained.append(a[3]) or grid_scores(*a))
    wider = evaluation.tune_baseline(
        "adam", task, steps=60, learning_rates=(1e-2, 10.0), weight_decays=(0.0,), seeds=1, previous=edge
    )
    assert trained == [[(10.0, 0.0)]] and wider.learning_rate == 1e-2 and not wider.on_edge
    assert wider.scores[:2] == edge.scores and [s["learning_rate"] for s in wider.scores] == [1e-6, 1e-2, 10.0]
    with pytest.raises(ValueError, match=r"another search than this one: steps 60 \(previous\) vs 30\.$"):
        evaluation.tune_baseline("adam", task, steps=30, seeds=1, weight_decays=(0.0,), previous=edge)
    with pytest.raises(ValueError, match=r"weight decays \[0.0\] \(previous\) vs \[0.0, 0.001\]"):
        evaluation.tune_baseline("adam", task, steps=60, seeds=1, weight_decays=(0.0, 1e-3), previous=edge)
    with pytest.raises(ValueError, match="unknown baseline"):
        evaluation.tune_baseline("lamb", task, steps=20)
    with pytest.raises(ValueError, match="too few validation examples"):
        evaluation.tune_baseline("adam", task, steps=20, max_eval_examples=validation - 1)


def test_grids_are_fine_and_seed_000s_grid_is_kept_under_its_name():
    rates = np.asarray(evaluation.FINE_LEARNING_RATES)
    assert rates[0] == 1e-4 and rates[-1] >= 0.1 and np.allclose(rates[1:] / rates[:-1], 2.0)
    assert 0.0 in evaluation.FINE_WEIGHT_DECAYS and len(evaluation.FINE_WEIGHT_DECAYS) >= 2
    assert evaluation.KOFINAS_LEARNING_RATES == (0.05, 0.005, 0.002, 0.001, 0.0005)
    assert evaluation.KOFINAS_WEIGHT_DECAYS == (0.0, 1e-5, 1e-3)
    assert evaluation.PAPER_LEARNING_RATES == evaluation.KOFINAS_LEARNING_RATES
    assert study.StudyConfig.learning_rates == evaluation.FINE_LEARNING_RATES


def test_baselines_include_momentum_sgd_and_warmup_cosine_adam():
    expected = {"adam", "rmsprop", "sgd_momentum", "sgd", "adagrad", "adam_cosine", "adam_cosine_capped"}
    assert set(evaluation.BASELINES) == expected
    with pytest.raises(ValueError, match="pass steps="):
        evaluation.baseline("adam_cosine", 1e-2)
    steps, params = 40, {"w": np.ones(3, np.float32)}
    tx = evaluation.baseline("adam_cosine", 1e-2, steps=steps)
    state, sizes = tx.init(params), []
    for _ in range(steps + 1):
        updates, state = tx.update(params, state, params)
        sizes.append(float(np.abs(updates["w"]).max()))
    peak = int(np.argmax(sizes))
    assert sizes[0] == 0.0 and peak == round(0.05 * steps)  # linear warmup over 5 % of the horizon
    assert sizes[peak] == pytest.approx(1e-2, rel=1e-3) and sizes[-1] == pytest.approx(0.0, abs=1e-8)  # cosine to 0
    momentum = evaluation.baseline("sgd_momentum", 0.1)
    state = momentum.init(params)
    first, state = momentum.update(params, state, params)
    second, _ = momentum.update(params, state, params)
    np.testing.assert_allclose(second["w"], 1.9 * first["w"], rtol=1e-6)  # momentum 0.9


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
        learned_optimizer=l2o_jax.GraphL2O(
            hidden=8, layers=1, features=RUN_LENGTH_FEATURES, output=OutputConfig(init_lr=0.01, schedule="cosine")
        ),
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
        eval_every=10,
        compare_at=(10,),
        baselines=("adam",),
        seeds=2,
        learning_rates=(1e-2, 1e-3),
        weight_decays=(0.0,),
    ).with_overrides(outer_steps=4)
    data = study.run_study(dataclasses.replace(tiny, meta_seeds=2), tmp_path, progress=False, log=lambda *_: None)
    ((label, task),) = data["tasks"].items()
    for name in ("results.md", "summary.json", "study.json", f"{study.slug(label)}.png"):
        assert (tmp_path / name).exists(), name
    runs = data["selection"]["GraphL2O"]
    assert [r["meta_seed"] for r in runs] == [0, 1] and all(r["selected_step"] in (0, 1, 2, 3, 4) for r in runs)
    for index in (0, 1):  # one meta-training run per meta-seed, its checkpoint picked and saved
        assert (tmp_path / "graphl2o" / f"seed{index}" / "metrics.jsonl").exists()
    curves = task["curves"]["learned"]["GraphL2O"]
    assert curves[0]["eval_loss"] != curves[1]["eval_loss"]  # independent meta-training runs
    assert sorted(task["tuned"]["adam"]) == ["10", "20"]  # Adam tuned once for each horizon
    # told the run's length, the learned optimizer meets the 10-step baseline on a 10-step run of its own
    assert [len(c["eval_steps"]) for c in task["curves"]["learned_at"]["GraphL2O"]["10"]] == [2, 2]
    first = task["tuned"]["adam"]["10"]  # 1e-2, the grid's top, is too small for 10 steps: the grid widens
    assert max(s["learning_rate"] for s in first["scores"]) > 1e-2 and len(first["scores"]) > 2
    assert {(c["baseline"], c["step"]) for c in task["comparisons"]} == {("adam", 10), ("adam", 20)}
    for c in task["comparisons"]:
        accuracy = c["eval_accuracy"]
        assert accuracy["verdict"] in evaluation.stats.VERDICTS and accuracy["low"] <= accuracy["high"]
        assert np.shape(accuracy["learned"]) == (2, 2)  # meta-runs x seeds
    assert "mean over 3 seeds" in data["protocol"]["selection_rule"] and task["tuned"]["adam"]["20"]["seeds"] == 3
    assert task["speedups"][0]["baseline"] == "adam"
    loaded = l2o_jax.load_meta_params(tmp_path / "best_meta_params")
    assert isinstance(loaded.config, l2o_jax.GraphL2O)
    text = (tmp_path / "results.md").read_text()
    assert "95 % bootstrap interval" in text and "| 10 | GraphL2O | adam" in text and "| 20 | GraphL2O | adam" in text
    assert "Adam's bias-corrected direction" in text
    assert study.StudyConfig.from_json((tmp_path / "study.json").read_text()).meta_seeds == 2
    assert (study.StudyConfig.meta_seeds, study.StudyConfig.selection_seeds) == (3, 3)
    assert "whole validation split" in data["protocol"]["selection_rule"]
    # A study's cost counts its own stages only, not those of another study sharing the workdir.
    cost = study.study_stage_seconds(dataclasses.replace(tiny, meta_seeds=2), tmp_path)
    assert cost > 0 and cost == pytest.approx(l2o_jax.io.stage_seconds(tmp_path), abs=0.2)
    (tmp_path / "curves" / study.slug(label) / "other-seed0.json.seconds").write_text("100")
    assert study.study_stage_seconds(dataclasses.replace(tiny, meta_seeds=2), tmp_path) == cost

    # A checkpoint picked under another rule is picked again (from the same checkpoints), the old pick set aside.
    selection = tmp_path / "graphl2o" / "seed0" / "selection.json"
    old = {**json.loads(selection.read_text()), "rule": "an older rule", "selected_step": -1}
    selection.write_text(json.dumps(old))
    again = study.train_and_select(dataclasses.replace(tiny, meta_seeds=1), tmp_path, progress=False, log=print)
    assert again["GraphL2O"][0] == {**runs[0], "seconds": again["GraphL2O"][0]["seconds"]}
    assert json.loads((tmp_path / "graphl2o" / "seed0" / "selection.superseded0.json").read_text()) == old


def test_studies_are_data_a_user_can_print_edit_and_override(tmp_path, capsys):
    argv = ["meta-train", "--config", "quickstart", "--set", "outer_steps=300", "--set", "estimator=pes"]
    assert cli_main([*argv, "--set", "eval_task.width=64", "--print-config"]) == 0
    path = tmp_path / "study.json"
    path.write_text(capsys.readouterr().out)
    config = study.load_config(str(path), ["learned_optimizer.hidden=8", "learning_rates=[0.001, 0.01]"])
    truncated = study.preset("quickstart").meta.estimator
    assert type(config.meta.estimator).__name__ == "PES"
    assert (config.meta.estimator.truncation_length, config.meta.estimator.horizon) == (
        truncated.truncation_length,
        truncated.horizon,
    )
    assert (config.meta.outer_steps, config.eval_task["width"], config.meta.learned_optimizer.hidden) == (300, 64, 8)
    assert config.learning_rates == (0.001, 0.01) and config.meta.outer_steps % config.meta.checkpoint_every == 0
    assert study.StudyConfig.from_json(config.to_json()) == config
    for args, message in [
        (["--config", "nope"], "neither a preset"),
        (["--set", "nope=1"], "has a field 'nope'"),
        (["--set", "estimator=banana"], "no config class of that name"),
        (["--set", "outer_steps"], "dotted.path=value"),
        (["--set", "learned_optimizer.hidden.x=1"], "would be a field of a int"),
    ]:
        assert cli_main(["meta-train", *args, "--print-config"]) == 2
        assert message in capsys.readouterr().err
