"""The module graph a newcomer follows: no import circle anywhere in seqpt_jax (lazy imports
inside functions count too), and TensorFlow is imported only where a tf.data pipeline is built."""

import ast
import os
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "seqpt_jax"


def _graph() -> dict[str, set[str]]:
    files = {".".join(p.relative_to(PKG.parent).with_suffix("").parts): p for p in PKG.rglob("*.py")
             if p.name != "__init__.py"}
    graph = {}
    for name, path in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("seqpt_jax"):
                deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module
                         for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("seqpt_jax")}
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def test_no_import_circle():
    graph, cycles = _graph(), []

    def visit(node, path):
        for dep in graph[node]:
            if dep in path:
                cycles.append(path[path.index(dep):] + [dep])
            elif len(path) < 12:
                visit(dep, path + [dep])

    for start in graph:
        visit(start, [start])
    assert not cycles, cycles[0]


def test_tensorflow_only_where_tf_data_is_used():
    code = ("import sys\n"
            "import seqpt_jax.cli, seqpt_jax.train.loop, seqpt_jax.train.data, seqpt_jax.data.feeding\n"
            "import seqpt_jax.params_io, seqpt_jax.commands.train, seqpt_jax.commands.finetune\n"
            "import seqpt_jax.commands.grow, seqpt_jax.evaluate.finetune, seqpt_jax.mappings.init_hooks\n"
            "print(sorted(m for m in ('tensorflow', 'seqio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_tensorboard_events_are_written_and_read_without_tensorflow(tmp_path):
    """tensorboard's own EventFileWriter imports TensorFlow whenever it is installed (seconds per
    process, and device memory beside JAX on a GPU); the run's event files must not."""
    code = ("import sys\n"
            "from seqpt_jax.train import events, metrics\n"
            f"log = metrics.RunLog({str(tmp_path)!r}, 3, 0, progress=False)\n"
            "log.log(2, {'loss': 1.5}); log.close()\n"
            f"assert events.scalars({str(tmp_path / 'tb')!r}) == {{'train/loss': {{2: 1.5}}}}\n"
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
