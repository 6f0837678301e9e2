"""Small optimizee problems and meta-parameter perturbations shared by the learned-optimizer tests."""

import jax
import optax

from l2o_jax.tasks import TaskFamily

#: The tiny family: digits, an MLP of width 8 and depth 2, batch 32. One architecture, so every sample is the
#: same task (``tiny_task`` in conftest.py): meta-training on it trains on one task.
TINY_FAMILY = TaskFamily(models=("mlp",), widths=(8,), depths=(2,), batch_size=32)


def classification_problem(model, shape, key=0):
    """``(params, loss_fn)`` of ``model`` on a fixed random batch of inputs ``shape`` with 3 classes."""
    k1, k2, k3 = jax.random.split(jax.random.key(key), 3)
    x = jax.random.normal(k1, shape)
    y = jax.random.randint(k2, (shape[0],), 0, 3)
    params = model.init(k3, x[:1])
    loss_fn = lambda p: optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()
    return params, loss_fn


def randomized(meta_params, scale=0.3):
    """Meta-parameters far from initialisation, so the network (not Adam's base step) shapes the update."""
    leaves, treedef = jax.tree.flatten(meta_params.arrays)
    keys = jax.random.split(jax.random.key(42), len(leaves))
    noisy = [x + scale * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]
    return meta_params.replace(arrays=jax.tree.unflatten(treedef, noisy))
