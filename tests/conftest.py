"""Test-wide setup, done before jax is imported anywhere.

- Eight fake CPU devices, so sharded code runs on real meshes.
- XLA's CPU backend without LLVM's expensive optimisation passes: the suite is dominated by
  compiling many tiny models, and this cuts its CPU time by about a third (measured on
  tests/test_train.py: 147 s -> 91 s) without changing what is computed. Subprocesses the
  tests start inherit it.
"""

import os

_FLAGS = ("--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
          "--xla_llvm_disable_expensive_passes=true")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAGS).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
