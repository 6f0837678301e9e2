"""ScaleGraph L2O: updates that transform like the parameters under hidden-neuron permutations, sign flips (tanh)
and positive rescalings (ReLU); a working optax transform on CNNs and MLPs; clear errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from problems import classification_problem
from problems import randomized

import l2o_jax
from l2o_jax import graphs

ACTIVATION = {"sign": "tanh", "scale": "relu"}


class SmallCNN(nn.Module):
    activation: str

    @nn.compact
    def __call__(self, x):
        act = graphs.get_activation(self.activation)
        x = act(nn.Conv(4, (3, 3))(x))
        x = act(nn.Conv(5, (3, 3))(x))
        x = act(nn.Dense(6)(x.mean(axis=(1, 2))))
        return nn.Dense(3)(x)


def _two_steps(tx, loss_fn):
    @jax.jit
    def run(params):
        state = tx.init(params)
        for _ in range(2):  # the second step also sees momenta
            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, state = tx.update(grads, state, params, value=loss)
            params = optax.apply_updates(params, updates)
        return updates

    return run


def _relative_error(expected, got) -> float:
    scale = max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(expected))
    return max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got))) / scale


@pytest.mark.parametrize("symmetry", ["sign", "scale"])
def test_updates_transform_like_the_parameters(symmetry):
    """update(T θ) = T update(θ) for T a permutation, a sign flip (tanh) or a positive rescaling (ReLU) of one
    hidden layer's neurons: an incoming weight's and a bias's update scale by q, an outgoing weight's by 1/q.

    Checked for the network's step alone (output base 'none') and with Adam's base (in the scale-normalised
    units for ReLU). In float64, so the check sees the construction, not float32 rounding (about 1e-5 relative
    with these randomised meta-parameters); the feature statistics stay float32, hence 1e-5, not 1e-12.
    """
    activation = ACTIVATION[symmetry]
    f64 = lambda tree: jax.tree.map(lambda x: x.astype(jnp.float64), tree)
    with jax.enable_x64(True):
        params, loss_fn = classification_problem(SmallCNN(activation), (8, 6, 6, 2))
        params = f64(params)
        spec = graphs.graph_spec(params, activations=activation)
        adam = _two_steps(optax.adam(1e-2), loss_fn)
        for base in ("none", "adam"):
            config = l2o_jax.ScaleGraphL2O(
                symmetry=symmetry, hidden=4, layers=1, output=l2o_jax.OutputConfig(base=base)
            )
            meta = randomized(config.init(jax.random.key(0)))
            learned = _two_steps(
                l2o_jax.scale_graph_l2o(meta.replace(arrays=f64(meta.arrays)), activations=activation), loss_fn
            )
            updates = learned(params)
            for layer, (permute, rescale) in zip((1, 2, 3), [(True, False), (False, True), (True, True)]):
                rng = np.random.default_rng(layer + 1)
                width = spec.widths[layer]
                perm = rng.permutation(width) if permute else np.arange(width)
                q = np.ones(width)
                if rescale:
                    q = rng.choice([-1.0, 1.0], width) if symmetry == "sign" else rng.uniform(0.25, 4.0, width)

                def transform(tree, perm=perm, q=q, layer=layer):
                    scaled = graphs.scale_hidden_neurons(tree, spec, layer, q)
                    return graphs.permute_hidden_neurons(scaled, spec, layer, perm)

                moved = learned(transform(params))
                assert _relative_error(transform(updates), moved) < 1e-5, (base, layer, permute, rescale)
                assert _relative_error(updates, moved) > 1e-2  # the transform moved the updates: the check could fail
                if rescale and base == "adam":
                    # Adam commutes with sign flips (its step flips with the gradient) but not with rescalings.
                    adam_error = _relative_error(transform(adam(params)), adam(transform(params)))
                    assert (adam_error < 1e-5) == (symmetry == "sign"), adam_error


@pytest.mark.parametrize("symmetry", ["sign", "scale"])
def test_in_optax_chain_finite_and_descends_on_a_cnn_and_an_mlp(symmetry):
    activation = ACTIVATION[symmetry]
    meta = l2o_jax.ScaleGraphL2O(symmetry=symmetry, hidden=4, layers=1).init(jax.random.key(0))
    tx = optax.chain(
        optax.clip_by_global_norm(1.0),
        l2o_jax.scale_graph_l2o(meta, activations=activation),
        optax.add_decayed_weights(1e-4),
    )
    act = graphs.get_activation(activation)
    for model, shape in [
        (SmallCNN(activation), (16, 6, 6, 1)),
        (nn.Sequential([nn.Dense(12), act, nn.Dense(3)]), (16, 5)),
    ]:
        params, loss_fn = classification_problem(model, shape)

        def step(carry, _):
            p, s = carry
            loss, grads = jax.value_and_grad(loss_fn)(p)
            updates, s = tx.update(grads, s, p, value=loss)
            return (optax.apply_updates(p, updates), s), loss

        (final, _), losses = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), None, length=100))(params)
        assert np.all(np.isfinite(losses)) and all(np.isfinite(x).all() for x in jax.tree.leaves(final))
        assert float(loss_fn(final)) < 0.9 * float(losses[0])


def test_activation_without_the_symmetry_or_unknown_symmetry_is_a_clear_error():
    meta = l2o_jax.ScaleGraphL2O(symmetry="sign", hidden=2, layers=1).init(jax.random.key(0))
    params, loss_fn = classification_problem(nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(3)]), (4, 5))
    tx = l2o_jax.scale_graph_l2o(meta, activations="relu")
    with pytest.raises(ValueError, match=r"layers_0: activation 'relu' has no sign symmetry"):
        tx.update(jax.grad(loss_fn)(params), tx.init(params), params)
    with pytest.raises(ValueError, match="symmetry must be one of"):
        l2o_jax.ScaleGraphL2O(symmetry="rotation")
    with pytest.raises(TypeError, match="GraphL2O"):
        l2o_jax.scale_graph_l2o(l2o_jax.GraphL2O(hidden=2, layers=1).init(jax.random.key(0)))
