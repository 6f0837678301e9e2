"""One persistence format: every family's meta-parameters and config round-trip through l2o_jax.io, and the one
config encoding rebuilds families, their nested configs and meta-training runs."""

import dataclasses
import json

import chex
import jax
import pytest
from problems import randomized

import l2o_jax
from l2o_jax import io
from l2o_jax.amortized import ScaleGMN
from l2o_jax.backward import LearnedBackward
from l2o_jax.meta import LogUniformHorizon
from l2o_jax.meta import MetaTrainConfig
from l2o_jax.meta import TruncatedBPTT
from l2o_jax.optimizers import config_from_dict
from l2o_jax.optimizers import config_to_dict
from l2o_jax.optimizers import families
from l2o_jax.optimizers import register_family
from l2o_jax.tasks import MLPClassifier
from l2o_jax.tasks import TaskFamily

TINY = {
    "GraphL2O": l2o_jax.GraphL2O(
        hidden=4, layers=1, probes=l2o_jax.ProbeConfig(count=2, input_shape=(3,)), degree_delta=1.5, cell_positions=True
    ),
    "TransformerL2O": l2o_jax.TransformerL2O(hidden=4, layers=1, heads=1),
    "RecurrentGraphL2O": l2o_jax.RecurrentGraphL2O(hidden=4, layers=1, lstm_hidden=2),
    "LSTML2O": l2o_jax.LSTML2O(hidden=2, num_layers=1),
    "MLPL2O": l2o_jax.MLPL2O(hidden=(2,), output=l2o_jax.OutputConfig(base="none", init_lr=1e-2)),
    "LiMalikL2O": l2o_jax.LiMalikL2O(hidden=2),
    "ScaleGMN": ScaleGMN(activation="tanh", hidden=2, layers=1),
    "ScaleGraphL2O": l2o_jax.ScaleGraphL2O(symmetry="scale", hidden=2, layers=1),
    "LearnedBackward": LearnedBackward(hidden=2, layers=1),
}


def _init(config):
    if isinstance(config, ScaleGMN):  # initialised from an example network, whose shape it records
        model = MLPClassifier(hidden=(3,), num_classes=2, activation="tanh")
        example = model.init(jax.random.key(1), jax.numpy.ones((1, 4)))
        return config.init(jax.random.key(0), example)
    return config.init(jax.random.key(0))


def test_every_family_of_l2o_jax_is_registered():
    assert set(TINY) <= set(families())


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_family_round_trips_through_both_containers(name, tmp_path):
    meta_params = randomized(_init(TINY[name]))  # not the init values: loading must not re-initialise
    loaded = io.load_meta_params(io.save_meta_params(tmp_path / "orbax", meta_params, metadata={"note": name}))
    assert loaded.config == meta_params.config
    chex.assert_trees_all_equal(loaded.arrays, meta_params.arrays)
    assert io.load_info(tmp_path / "orbax")["metadata"] == {"note": name}
    io.save_archive(tmp_path / "archive", meta_params, {"command": "test"})
    unpacked = io.load_archive(tmp_path / "archive")
    assert unpacked.config == meta_params.config
    chex.assert_trees_all_equal(unpacked.arrays, meta_params.arrays)


def test_config_encoding_is_json_and_names_every_nested_config():
    config = TINY["GraphL2O"]
    data = json.loads(json.dumps(config_to_dict(config)))
    assert (data["type"], data["features"]["type"], data["probes"]["type"]) == (
        "GraphL2O",
        "FeatureConfig",
        "ProbeConfig",
    )
    assert config_from_dict(data) == config


def test_decoding_errors_name_the_type_or_field():
    data = config_to_dict(TINY["LSTML2O"])
    with pytest.raises(ValueError, match="unknown config type 'NoSuchL2O'.*register_family"):
        config_from_dict({**data, "type": "NoSuchL2O"})
    with pytest.raises(ValueError, match=r"LSTML2O has no fields \['width'\]"):
        config_from_dict({**data, "width": 3})
    with pytest.raises(ValueError, match="config.output: OutputConfig has no fields"):
        config_from_dict({**data, "output": {**data["output"], "scale": 2}})


def test_a_value_json_cannot_hold_is_named_at_save_time():
    @dataclasses.dataclass(frozen=True)
    class Holder:
        schedule: object = print

    with pytest.raises(TypeError, match=r"Holder\.schedule"):
        config_to_dict(Holder())


@dataclasses.dataclass(frozen=True)
class StepSizeOnly:
    """A learned optimizer defined outside l2o_jax: SGD with a learned step size."""

    init_lr: float = 0.1

    def init(self, key):
        del key
        return l2o_jax.MetaParams(arrays={"log_lr": jax.numpy.log(jax.numpy.float32(self.init_lr))}, config=self)


def test_a_family_defined_elsewhere_loads_once_registered(tmp_path):
    path = io.save_meta_params(tmp_path / "mine", StepSizeOnly(0.5).init(None))
    if "StepSizeOnly" not in families():  # registration lasts for the process
        with pytest.raises(ValueError, match="unknown config type 'StepSizeOnly'"):
            io.load_meta_params(path)
        register_family(StepSizeOnly)
    assert io.load_meta_params(path).config == StepSizeOnly(0.5)


def test_meta_training_config_round_trips_and_unencodable_parts_are_reported():
    config = MetaTrainConfig(
        TINY["RecurrentGraphL2O"],
        TaskFamily(widths=(8, 16), data_dir="/data"),
        TruncatedBPTT(truncation_length=5, horizon=LogUniformHorizon(10, 100)),
        seed=3,
    )
    assert MetaTrainConfig.from_json(config.to_json()) == config
    custom = dataclasses.replace(config, task_family=object())  # any object with sample(key) is a task family
    data = json.loads(custom.to_json())
    assert config_from_dict(data["learned_optimizer"]) == config.learned_optimizer
    with pytest.raises(ValueError, match="config.task_family was saved as"):
        MetaTrainConfig.from_json(custom.to_json())


def test_cached_stages_are_computed_once_and_their_compute_time_adds_up(tmp_path, monkeypatch):
    clock = iter([10.0, 12.5, 20.0, 20.5])  # two stages' start and end on a fake clock: 2.5 s and 0.5 s
    monkeypatch.setattr(io.time, "perf_counter", lambda: next(clock))
    calls = []

    def stage(value):
        calls.append(value)
        return {"value": value}

    for _ in range(2):  # the second pass only reads the stages back
        assert io.cached_json(tmp_path / "a.json", lambda: stage(1)) == {"value": 1}
        assert io.cached_json(tmp_path / "sub" / "b.json", lambda: stage(2)) == {"value": 2}
    assert calls == [1, 2]
    assert io.stage_seconds(tmp_path) == 3.0
    assert io.stage_seconds(tmp_path / "sub") == 0.5
    assert io.stage_seconds(tmp_path, prefixes=("b",)) == 0.5


def test_compilation_cache_is_set_once_and_an_existing_one_wins(tmp_path):
    before = jax.config.jax_compilation_cache_dir
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        assert io.use_compilation_cache(tmp_path / "a") == str(tmp_path / "a")
        assert io.use_compilation_cache(tmp_path / "b") == str(tmp_path / "a")
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
