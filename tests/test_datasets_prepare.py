"""`l2o-jax data prepare`: tfds datasets prepared in one command, one clear line when that cannot happen."""

import pytest
import tensorflow_datasets as tfds

from l2o_jax import cli
from l2o_jax.tasks import DatasetUnavailableError
from l2o_jax.tasks import datasets
from l2o_jax.tasks import prepare_datasets


class FakeBuilder:
    """What ``prepare_datasets`` uses of a tfds builder; ``fail`` is raised by ``download_and_prepare``."""

    def __init__(self, name, data_dir, file_format, *, prepared=False, urls=(), fail=None):
        self.name, self.data_dir, self.file_format = name, data_dir or "/tfds", file_format
        self.prepared, self.url_infos, self.fail = prepared, {u: None for u in urls}, fail
        self.download_configs = []

    def is_prepared(self):
        return self.prepared

    def download_and_prepare(self, download_config=None):
        self.download_configs.append(download_config)
        if self.fail:
            raise self.fail
        self.prepared = True


@pytest.fixture
def builders(monkeypatch):
    """Replaces ``tfds.builder``; set ``builders.options`` before a call; built builders land in the dict."""
    made = {}

    def builder(name, *, data_dir=None, file_format=None):
        made[name] = FakeBuilder(name, data_dir, file_format, **builders.options.get(name, {}))
        return made[name]

    builders = type("Builders", (), {"options": {}, "made": made})
    monkeypatch.setattr(tfds, "builder", builder)
    return builders


def test_prepares_tfds_datasets_as_array_record_and_skips_prepared_and_embedded(builders):
    builders.options = {"cifar10": {"prepared": True}}
    names = prepare_datasets(["fashion_mnist", "digits", "cifar10", "fashion_mnist"], data_dir="/d", progress=False)

    assert names == ["fashion_mnist", "cifar10"]
    assert sorted(builders.made) == ["cifar10", "fashion_mnist"]
    fashion = builders.made["fashion_mnist"]
    assert (fashion.file_format, fashion.data_dir, fashion.prepared) == ("array_record", "/d", True)
    assert [c.try_download_gcs for c in fashion.download_configs] == [False]
    assert builders.made["cifar10"].download_configs == []


def test_no_network_is_one_line_naming_the_dataset_and_the_offline_alternatives(builders, capsys):
    builders.options = {"cifar10": {"fail": tfds.download.DownloadError("Failed to get url https://x. HTTP code: 0.")}}
    with pytest.raises(DatasetUnavailableError) as error:
        prepare_datasets(["cifar10"], progress=False)
    message = str(error.value)
    assert "'cifar10'" in message and "'digits'" in message and "'mnist1d'" in message and "\n" not in message

    assert cli.main(["data", "prepare", "cifar10", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("l2o-jax data prepare: Cannot download 'cifar10'"), err


def test_unreachable_download_host_fails_fast_before_tfds_hangs(builders, monkeypatch):
    builders.options = {"mnist": {"urls": ["https://storage.example.invalid/mnist/train.gz"]}}

    def refuse(address, timeout=None):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(datasets.socket, "create_connection", refuse)
    with pytest.raises(DatasetUnavailableError, match=r"'mnist'.*storage\.example\.invalid.*'digits' or 'mnist1d'"):
        prepare_datasets(["mnist"], progress=False)
    assert builders.made["mnist"].download_configs == []  # tfds's download was never started


def test_missing_build_dependency_is_named(builders):
    builders.options = {"mnist": {"fail": ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")}}
    with pytest.raises(DatasetUnavailableError, match=r"'mnist'.*'tensorflow'.*l2o-jax\[data\]"):
        prepare_datasets(["mnist"], progress=False)


def test_unknown_dataset_is_a_clear_error_before_any_download(builders, capsys):
    with pytest.raises(ValueError, match=r"Unknown dataset 'imagenet'.*fashion_mnist"):
        prepare_datasets(["cifar10", "imagenet"], progress=False)
    assert builders.made == {}
    assert cli.main(["data", "prepare", "imagenet"]) == 1
    assert "Unknown dataset 'imagenet'" in capsys.readouterr().err


def test_loading_reads_tfds_data_sources_with_their_shapes(monkeypatch):
    datasets._load_cached.cache_clear()
    with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE):
        cifar = datasets.load_dataset("cifar10", data_dir="/nonexistent")
        fashion = datasets.load_dataset("fashion_mnist", data_dir="/nonexistent")
    datasets._load_cached.cache_clear()
    assert (cifar.input_shape, cifar.num_classes, cifar.train_x.shape[0], cifar.val_x.shape[0]) == (
        (32, 32, 3),
        10,
        18,
        2,
    )
    assert fashion.input_shape == (28, 28, 1) and fashion.test_x.shape == (20, 28, 28, 1)
