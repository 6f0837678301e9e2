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

SHIPPED = ("ng-gnn-digits", "lstm-digits")


def test_the_promised_entries_ship_with_their_records():
    assert set(SHIPPED) <= set(pretrained.available())
    for name in pretrained.available():
        record = pretrained.info(name)
        assert record["name"] == name
        assert record["command"].startswith("python experiments/")
        assert record["meta_training"]["outer_steps"] > 0
        assert 0.0 < record["evaluation"]["learned"]["final_accuracy"] <= 1.0
        meta_params = pretrained.load(name)
        assert meta_params.config == l2o_jax.io.config_from_dict(record["config"])
        assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(meta_params.arrays))


def test_unknown_name_lists_what_is_available_and_wrong_family_is_clear():
    with pytest.raises(ValueError, match="ng-gnn-digits"):
        l2o_jax.graph_l2o("ng-gnn-imagenet")
    with pytest.raises(TypeError, match="LSTML2O"):
        l2o_jax.graph_l2o("lstm-digits")


def test_only_the_top_level_factories_take_names():
    assert l2o_jax.lstm_l2o("lstm-digits").init is not None and l2o_jax.recurrent_graph_l2o("recurrent-gnn-digits")
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


def test_pretrained_gnn_beats_default_adam_on_a_held_out_wider_network():
    # Meta-trained on digits CNN-16 (train split); judged on a 3x wider CNN's test split, 5 seeds.
    task = image_task("digits", model="cnn", width=48, depth=2, batch_size=64)
    tx = optax.chain(optax.clip_by_global_norm(1.0), l2o_jax.graph_l2o("ng-gnn-digits", activations=task.activations))
    steps, seeds = 100, 5
    learned = evaluation.evaluate(tx, task, steps, seeds, name="ng-gnn-digits", eval_every=steps)
    adam = evaluation.evaluate(optax.adam(1e-3), task, steps, seeds, name="adam", eval_every=steps)
    (learned_acc, learned_std), (adam_acc, _) = learned.final_accuracy, adam.final_accuracy
    assert learned_acc > adam_acc + 0.05, (learned_acc, adam_acc)
    assert learned_std < 0.1


def test_cli_lists_the_shipped_entries(capsys):
    from l2o_jax import cli

    assert cli.main(["pretrained"]) == 0
    printed = capsys.readouterr().out
    for name in pretrained.available():
        assert name in printed and pretrained.info(name)["command"] in printed
