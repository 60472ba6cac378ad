"""Imported first by the tests' training subprocesses (worker scripts put tests/ on sys.path):
drops two per-process start-up costs that no assertion there depends on, about 8 s of CPU each.

- The CPU peak FLOP/s that MFU is reported against is measured with a jax and a torch matmul
  benchmark (importing torch); a fixed figure stands in.
- The TensorBoard writer's tensorboard.compat.tf imports TensorFlow when it is installed; the
  `notf` marker makes it use tensorboard's own stub (the event files are still written).
"""

import sys
import types

sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))

from seqpt_jax.train import perf  # noqa: E402

perf.matmul_throughput = lambda *args, **kwargs: {"jax": 1e11}
