#!/usr/bin/env bash
# The device check, as-is on a machine with a GPU (or TPU): is the accelerator used, what the learned optimizers
# cost as ratios to Adam, and a short slice of seed 000's paper protocol; each piece under 10 minutes.
# Writes docs/results/gpu.json and its page docs/results/gpu.md. Extra arguments go to the Python module, e.g.
#   bash experiments/device_check.sh --data-dir ~/tensorflow_datasets --pieces accelerator step_overhead
# The paper slice reads FashionMNIST and CIFAR10; prepare them once with: l2o-jax data prepare fashion_mnist cifar10
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m experiments.device_check --out docs/results/gpu.json "$@"
