"""Shipped pretrained learned optimizers: loading by name, clear errors, atomic entries, and that they work."""

import json

import jax
import numpy as np
import optax
import pytest

import l2o_jax
from l2o_jax import evaluation
from l2o_jax import pretrained
from l2o_jax.tasks import image_task

SHIPPED = ("ng-gnn-digits",)


def test_the_promised_entries_ship_with_their_records():
    assert set(SHIPPED) <= set(pretrained.available())
    for name in pretrained.available():
        record = pretrained.info(name)
        assert record["name"] == name
        assert record["command"].startswith("python -m experiments.horizon")
        assert record["export_command"].startswith("python -m experiments.export_pretrained")
        assert (
            record["meta_training"]["outer_steps"] > 0
            and record["meta_training"]["estimator"]["horizon"]["high"] >= 1000
        )
        steps = {c["step"] for c in record["evaluation"]["comparisons"]}
        assert {100, 1000} <= steps and all(
            0.0 < c["learned_accuracy"] <= 1.0 for c in record["evaluation"]["comparisons"]
        )
        assert record["long_run"]["steps"] >= 5000 and record["long_run"]["finite"]
        meta_params = pretrained.load(name)
        assert meta_params.config == l2o_jax.io.config_from_dict(record["config"])
        assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(meta_params.arrays))


def test_unknown_name_lists_what_is_available_and_wrong_family_is_clear():
    with pytest.raises(ValueError, match="ng-gnn-digits"):
        l2o_jax.graph_l2o("ng-gnn-imagenet")
    with pytest.raises(TypeError, match="GraphL2O"):
        l2o_jax.lstm_l2o("ng-gnn-digits")


def test_only_the_top_level_factories_take_names():
    assert l2o_jax.graph_l2o("ng-gnn-digits").init is not None
    with pytest.raises(TypeError, match=r"l2o_jax\.graph_l2o\('ng-gnn-digits'\)"):
        l2o_jax.optimizers.graph_l2o("ng-gnn-digits")


def test_save_load_round_trip_and_mismatch_is_named(tmp_path):
    meta_params = l2o_jax.MLPL2O(hidden=(4,)).init(jax.random.key(3))
    pretrained.save("tiny", meta_params, {"command": "python experiments/x.py"}, directory=tmp_path)
    assert pretrained.available(tmp_path) == ["tiny"]
    assert not list(tmp_path.glob("*.tmp"))
    loaded = pretrained.load("tiny", tmp_path)
    jax.tree.map(np.testing.assert_array_equal, loaded.arrays, meta_params.arrays)
    record = json.loads((tmp_path / "tiny.json").read_text())
    record["config"]["hidden"] = [5]
    (tmp_path / "tiny.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="tiny.*shape"):
        pretrained.load("tiny", tmp_path)
    with pytest.raises(ValueError, match="letters"):
        pretrained.save("../escape", meta_params, {}, directory=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", pretrained.available())
def test_shipped_entry_never_diverges_over_5000_steps_on_its_held_out_task(name):
    # The bar for every shipped entry: 5000 steps on a task the meta-training never saw (a 2x wider CNN),
    # no NaN, and test accuracy never more than 5 pp below its own best so far, on every seed.
    record = pretrained.info(name)
    task = image_task(**record["evaluation"]["task_args"])
    tx = optax.chain(
        optax.clip_by_global_norm(1.0), l2o_jax.graph_l2o(name, activations=task.activations, total_steps=5000)
    )
    result = evaluation.evaluate(tx, task, 5000, seeds=2, eval_every=250)
    assert np.isfinite(result.train_loss).all() and np.isfinite(result.eval_loss).all()
    accuracy = result.eval_accuracy  # [seeds, evals]
    drop = np.maximum.accumulate(accuracy, axis=1) - accuracy
    assert drop.max() <= 0.05, (drop.max(), accuracy[:, -1])
    assert accuracy[:, -1].min() > 0.5  # it trained: 10 classes, chance is 0.1


def test_cli_lists_the_shipped_entries(capsys):
    from l2o_jax import cli

    assert cli.main(["pretrained"]) == 0
    printed = capsys.readouterr().out
    for name in pretrained.available():
        assert name in printed and pretrained.info(name)["command"] in printed
