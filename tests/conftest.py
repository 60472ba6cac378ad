"""Test-wide setup, done before jax is imported anywhere.

- Eight fake CPU devices, so sharded code runs on real meshes.
- XLA's CPU backend without LLVM's expensive optimisation passes: the suite is dominated by
  compiling many tiny models, and this cuts its CPU time by about a third (measured on
  tests/test_train.py: 147 s -> 91 s) without changing what is computed. Subprocesses the
  tests start inherit it.
- One persistent compilation cache for the whole run (pytest-xdist's workers and the tests'
  subprocesses inherit it), every compile cached: many tests build the same tiny models
  (arms of one shape, fine-tunings of several encoders), so later ones load executables instead
  of compiling them; tests/test_experiment.py: 180 s -> 133 s CPU. Removed when the run ends.
"""

import atexit
import os
import shutil
import tempfile

_FLAGS = ("--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
          "--xla_llvm_disable_expensive_passes=true")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAGS).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # set here in xdist's controller, inherited after
    _cache = tempfile.mkdtemp(prefix="seqpt-tests-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)


def pytest_collection_modifyitems(session, config, items):
    """Modules with a `slow` test run first (each module kept whole, so its module fixtures are
    built once). pytest-xdist's worksteal hands each worker a contiguous share and lets the
    first one idle steal from the end of the other's: with the minute-long runs at the front,
    the end is short tests that split evenly, not one long run while the other worker waits."""
    slow = {item.module.__name__ for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module.__name__ not in slow)  # stable: the order within stays
