"""Neural graphs: parameter pytrees of MLPs/CNNs (and, read from their computation, ResNets and transformers) as
``jraph.GraphsTuple`` s, and back; the forward pass through
a neural graph (``record_forward``) and the table of activations its layers may carry.

The only part of l2o_jax that imports jraph.
"""

from l2o_jax.graphs.activations import ACTIVATIONS
from l2o_jax.graphs.activations import get_activation
from l2o_jax.graphs.convert import batch_graphs
from l2o_jax.graphs.convert import cell_values
from l2o_jax.graphs.convert import cells_to_params
from l2o_jax.graphs.convert import graph_to_params
from l2o_jax.graphs.convert import neuron_param_values
from l2o_jax.graphs.convert import node_values
from l2o_jax.graphs.convert import params_to_graph
from l2o_jax.graphs.convert import stack_trees
from l2o_jax.graphs.convert import tree_to_graph_arrays
from l2o_jax.graphs.convert import unplaced_values
from l2o_jax.graphs.forward import Tape
from l2o_jax.graphs.forward import apply_layer
from l2o_jax.graphs.forward import conv_implementation
from l2o_jax.graphs.forward import neuron_axes
from l2o_jax.graphs.forward import record_forward
from l2o_jax.graphs.forward import shifted_matmul_conv
from l2o_jax.graphs.spec import ACTIVATION_CATEGORIES
from l2o_jax.graphs.spec import LAYER_KINDS
from l2o_jax.graphs.spec import ROLE_HIDDEN
from l2o_jax.graphs.spec import ROLE_INPUT
from l2o_jax.graphs.spec import ROLE_OUTPUT
from l2o_jax.graphs.spec import GraphSpec
from l2o_jax.graphs.spec import LayerSpec
from l2o_jax.graphs.spec import UnplacedParametersWarning
from l2o_jax.graphs.spec import graph_spec
from l2o_jax.graphs.symmetry import edge_permutation
from l2o_jax.graphs.symmetry import node_permutation
from l2o_jax.graphs.symmetry import permute_hidden_neurons
from l2o_jax.graphs.symmetry import random_hidden_scaling
from l2o_jax.graphs.symmetry import scale_hidden_neurons

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_CATEGORIES",
    "LAYER_KINDS",
    "ROLE_HIDDEN",
    "ROLE_INPUT",
    "ROLE_OUTPUT",
    "GraphSpec",
    "LayerSpec",
    "Tape",
    "UnplacedParametersWarning",
    "apply_layer",
    "batch_graphs",
    "cell_values",
    "cells_to_params",
    "conv_implementation",
    "edge_permutation",
    "get_activation",
    "graph_spec",
    "graph_to_params",
    "neuron_axes",
    "neuron_param_values",
    "node_values",
    "node_permutation",
    "params_to_graph",
    "permute_hidden_neurons",
    "random_hidden_scaling",
    "record_forward",
    "scale_hidden_neurons",
    "shifted_matmul_conv",
    "stack_trees",
    "tree_to_graph_arrays",
    "unplaced_values",
]
