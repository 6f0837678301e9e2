"""Optimizee tasks: datasets (tfds and embedded), Flax models, Task and TaskFamily."""

from l2o_jax.graphs import ACTIVATIONS
from l2o_jax.tasks.datasets import EMBEDDED_DATASETS
from l2o_jax.tasks.datasets import TFDS_DATASETS
from l2o_jax.tasks.datasets import Dataset
from l2o_jax.tasks.datasets import DatasetUnavailableError
from l2o_jax.tasks.datasets import load_dataset
from l2o_jax.tasks.datasets import prepare_datasets
from l2o_jax.tasks.datasets import principal_components
from l2o_jax.tasks.models import CNNClassifier
from l2o_jax.tasks.models import MLPClassifier
from l2o_jax.tasks.models import ResNetClassifier
from l2o_jax.tasks.models import TransformerClassifier
from l2o_jax.tasks.models import layer_activations
from l2o_jax.tasks.task import Task
from l2o_jax.tasks.task import TaskFamily
from l2o_jax.tasks.task import image_task

__all__ = [
    "ACTIVATIONS",
    "CNNClassifier",
    "Dataset",
    "DatasetUnavailableError",
    "EMBEDDED_DATASETS",
    "MLPClassifier",
    "ResNetClassifier",
    "TFDS_DATASETS",
    "Task",
    "TaskFamily",
    "TransformerClassifier",
    "image_task",
    "layer_activations",
    "load_dataset",
    "prepare_datasets",
    "principal_components",
]
