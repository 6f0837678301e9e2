"""Test-session setup: JAX's persistent compilation cache, and the tiny things several test files share.

Most of the suite's time is XLA compiling the same small programs again: in each pytest-xdist worker, in every
notebook kernel, on every CI rerun. With the cache on disk, a program compiled once is loaded afterwards (on 2
CPU cores, a GraphL2O init plus a short evaluation: ~30 s cold, ~7 s warm). The environment variables reach
the notebook kernels, which are separate processes; ``JAX_COMPILATION_CACHE_DIR`` set by the caller wins.
"""

import os
import pathlib

import jax
import jax.numpy as jnp
import pytest
from problems import TINY_FAMILY

from l2o_jax.policy_search import expected_reward

CACHE_DIR = os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", str(pathlib.Path.home() / ".cache" / "l2o_jax_tests" / "jax")
)
# Cache nearly every program: the tests' programs are small, and many small compiles add up.
MIN_COMPILE_SECONDS = os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")


def pytest_collection_modifyitems(config, items):
    """Runs the tests marked ``slow`` (end-to-end runs of a minute or more) first.

    pytest-xdist hands tests to its workers in collection order; a minute-long test collected last keeps one
    worker busy while the other idles. Longest first is the classic fix for that tail.
    """
    del config
    longest = ("test_paper_dry_run.py", "test_pretrained.py", "test_notebooks.py")  # measured, longest first

    def order(item):
        name = item.path.name
        return (item.get_closest_marker("slow") is None, longest.index(name) if name in longest else len(longest))

    items.sort(key=order)  # stable: the order within each group is kept


def pytest_configure(config):
    del config
    # jax may have been imported (reading the environment) before this file; set the options directly too.
    jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(MIN_COMPILE_SECONDS))


@pytest.fixture(scope="session")
def tiny_task():
    """The tiny family's one task (``problems.TINY_FAMILY``): digits, an MLP of width 8 and depth 2, batch 32."""
    return TINY_FAMILY.sample(jax.random.key(0))


@pytest.fixture(scope="session")
def held_out_reward(tiny_task):
    """``meta -> expected reward`` of a Li & Malik policy's mean over 20 steps on 4 fixed held-out optimizees of the
    tiny task (keys 10_000 to 10_003), compiled once for every policy-search test."""
    keys = jnp.stack([jax.random.key(10_000 + i) for i in range(4)])
    return jax.jit(lambda meta: expected_reward(meta, tiny_task, keys, 20))
