"""No TensorFlow autograph sources left in the temp dir, even by a process killed before its atexit handlers."""

import os
import subprocess
import sys

from seqpt_jax.data.tf_tempfiles import PREFIX

# A tf.data map of a Python function with control flow: autograph converts it and writes the
# generated module to the temp dir. The process then ends without its atexit handlers, as a killed one does.
_CHILD = r"""
import os, sys
import tensorflow as tf
def plus_one(x):
    if x > 2:
        return x + 1
    return x
if sys.argv[1] == "clean":
    from seqpt_jax.data.tf_tempfiles import delete_autograph_sources
    assert delete_autograph_sources()
assert list(tf.data.Dataset.range(4).map(plus_one).as_numpy_iterator()) == [0, 1, 2, 4]
sys.stdout.flush()
os._exit(0)
"""


def _leftovers(tmp_path, mode: str) -> list[str]:
    tmp = tmp_path / mode
    tmp.mkdir()
    script = tmp_path / "child.py"  # a file: autograph converts only functions whose source it can read
    script.write_text(_CHILD)
    env = dict(os.environ, TMPDIR=str(tmp), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [name for name in os.listdir(tmp) if name.startswith(PREFIX)]


def test_autograph_sources_are_gone_even_when_atexit_never_runs(tmp_path):
    assert _leftovers(tmp_path, "keep")   # what TensorFlow alone leaves behind
    assert _leftovers(tmp_path, "clean") == []
