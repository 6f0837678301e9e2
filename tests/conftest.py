"""Test-session setup: JAX's persistent compilation cache.

Most of the suite's time is XLA compiling the same small programs again: in each pytest-xdist worker, in every
notebook kernel, on every CI rerun. With the cache on disk, a program compiled once is loaded afterwards (on 2
CPU cores, a GraphL2O init plus a short evaluation: ~30 s cold, ~7 s warm). The environment variables reach
the notebook kernels, which are separate processes; ``JAX_COMPILATION_CACHE_DIR`` set by the caller wins.
"""

import os
import pathlib

import jax

CACHE_DIR = os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", str(pathlib.Path.home() / ".cache" / "l2o_jax_tests" / "jax")
)
# Cache nearly every program: the tests' programs are small, and many small compiles add up.
MIN_COMPILE_SECONDS = os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")


def pytest_configure(config):
    del config
    # jax may have been imported (reading the environment) before this file; set the options directly too.
    jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(MIN_COMPILE_SECONDS))
