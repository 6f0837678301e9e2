"""Guided policy search for Li & Malik's optimizer policy: mirror-descent GPS in its convolutional form.

Every coordinate of every sampled optimizee is one trajectory of a small system whose dynamics, cost and local
controllers are shared by all coordinates (Li & Malik's convolutional GPS), so the cost of a GPS iteration is
linear in the number of parameters and cubic only in the per-coordinate state's size. Per coordinate, the
state is ``x_t = (g_t, g_{t-1}, u_{t-1})`` (this step's and last step's minibatch gradient, last step) and the
action ``u_t`` is the step. One iteration (:meth:`GuidedPolicySearch.estimate`), on-policy as in MDGPS:

1. **Samples**: ``num_trajectories`` fresh optimizees trained by the global policy with Gaussian steps.
2. **Dynamics**: per step, ``x_{t+1} ~ N(A_t x_t + B_t u_t + c_t, Σ_t)`` by least squares over all coordinates
   of all trajectories, regularised towards the fit over all steps (``prior_strength``) and a small ridge
   (:func:`fit_linear_gaussian`). The global policy is linearised the same way,
   ``π̄_t(u | x) = N(K̄_t x + k̄_t, S̄_t)``, regressing its mean steps on the sampled states.
3. **Local controllers** ``p_t(u | x) = N(K_t x + k_t, S_t)``: ``min_p E_p[Σ_t ℓ_t] s.t. KL(p ‖ π̄) ≤ ε``. The
   cost is the second-order model of the objective's decrease by the step, weighted by the steps still to
   come, ``ℓ_t = w_t (g_t u_t + ½ b_t u_t²)`` with ``w_t = (T - t) / T`` (so ``Σ_t ℓ_t`` is the mean objective
   along the run, up to a constant) and ``b_t = max(∂g_{t+1}/∂u_t, curvature_floor)`` read off ``B_t``. For a
   Lagrange multiplier ``η``, the minimiser of ``E_p[Σ ℓ_t - η log π̄_t(u_t | x_t)] - η H(p)`` is found by LQR
   (:func:`kl_lqr`): with ``z = [x; u]``, ``ℓ_t(z) = ½ zᵀ C_t z + d_tᵀ z`` and ``V_T = 0, v_T = 0``, the backward
   Riccati recursion::

       Q_zz = C_t + η Mᵀ S̄_t⁻¹ M + F_tᵀ V_{t+1} F_t,   q_z = d_t - η Mᵀ S̄_t⁻¹ k̄_t + F_tᵀ (V_{t+1} f_t + v_{t+1})
       K_t = -Q_uu⁻¹ Q_ux,   k_t = -Q_uu⁻¹ q_u,   S_t = η Q_uu⁻¹
       V_t = Q_xx + Q_xu K_t,   v_t = q_x + Q_xu k_t

   with ``M = [-K̄_t, I]``, ``F_t = [A_t, B_t]``, ``f_t = c_t``. ``η`` is set by bisection on ``log η`` so that
   ``KL(p ‖ π̄)``, computed under the state distribution ``p`` induces (:func:`forward_pass`), meets ``ε``
   (``kl_bound``, per coordinate's trajectory) (:func:`kl_constrained_lqr`).
4. **Supervised step**: the gradient of ``E_{x_t ~ samples} KL(π_θ(u | history_t) ‖ p_t(u | x_t))`` in the
   LSTM's parameters, the policy re-run along the sampled histories (:func:`supervised_kl`). ``meta_train``'s
   optax meta-optimizer applies it, so each outer step is one C-step and one gradient of the S-step.

Simplifications against the papers: ``ε`` is fixed unless ``adapt_kl_bound`` (then MDGPS's rule from predicted
and actual improvement, with the sampled objective as the actual one: :func:`adapt_kl_bound`), samples come from
the global policy only, the S-step is one gradient per C-step, and ``σ`` is not fitted by default (``train_std``).

Everything is computed in units where each state and action dimension has unit root mean square (the KL does
not change; the cost is divided by a positive constant), so float32 serves gradients and steps of any scale.

References:
  Li and Malik, Learning to optimize neural nets, arXiv:1703.00441, 2017 (convolutional GPS for optimizers).
  Levine and Abbeel, Learning neural network policies with guided policy search under unknown dynamics,
  NeurIPS 2014 (fitted linear-Gaussian dynamics, LQR under a KL bound).
  Montgomery and Levine, Guided policy search via approximate mirror descent, NeurIPS 2016 (MDGPS).

Example:
  >>> from l2o_jax.meta import MetaTrainConfig, meta_train
  >>> config = MetaTrainConfig(LiMalikL2O(hidden=32), family, GuidedPolicySearch(length=50), meta_lr=1e-2)
  >>> result = meta_train(config, 'runs/li_malik_gps')
"""

from l2o_jax.gps.lqr import LinearGaussian
from l2o_jax.gps.lqr import QuadraticCost
from l2o_jax.gps.lqr import fit_linear_gaussian
from l2o_jax.gps.lqr import forward_pass
from l2o_jax.gps.lqr import kl_constrained_lqr
from l2o_jax.gps.lqr import kl_lqr
from l2o_jax.gps.search import STATE_DIM
from l2o_jax.gps.search import GuidedPolicySearch
from l2o_jax.gps.search import KLBoundState
from l2o_jax.gps.search import Trajectories
from l2o_jax.gps.search import adapt_kl_bound
from l2o_jax.gps.search import coordinate_states
from l2o_jax.gps.search import local_controllers
from l2o_jax.gps.search import recorded_rollout
from l2o_jax.gps.search import supervised_kl

__all__ = [
    "STATE_DIM",
    "GuidedPolicySearch",
    "KLBoundState",
    "LinearGaussian",
    "QuadraticCost",
    "Trajectories",
    "adapt_kl_bound",
    "coordinate_states",
    "fit_linear_gaussian",
    "forward_pass",
    "kl_constrained_lqr",
    "kl_lqr",
    "local_controllers",
    "recorded_rollout",
    "supervised_kl",
]
