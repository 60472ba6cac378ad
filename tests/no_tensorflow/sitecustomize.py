"""Put this folder on PYTHONPATH and TensorFlow, seqio and TFDS are not installed, as far as the
process can tell: importing them raises ModuleNotFoundError and `importlib.util.find_spec`
finds nothing, as on a GPU image that has JAX but none of them (tests/test_no_tensorflow.py)."""

import sys

HIDDEN = ("tensorflow", "seqio", "tensorflow_datasets", "tensorflow_text")


class _Hiding:
    """A meta-path finder that finds nothing under HIDDEN and defers everything else."""

    def __init__(self, finder):
        self._finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            return None
        find = getattr(self._finder, "find_spec", None)
        return find(name, path, target) if find else None

    def __getattr__(self, attr):  # invalidate_caches, find_distributions, ...
        return getattr(self._finder, attr)


sys.meta_path[:] = [_Hiding(finder) for finder in sys.meta_path]
