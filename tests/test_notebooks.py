"""The Colab notebooks run top to bottom on CPU (nbclient) and show what they claim."""

import pathlib

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"


def _text(cell) -> str:
    return "".join(o.get("text", "") or "".join(o.get("data", {}).get("text/plain", ""))
                   for o in cell.get("outputs", []))


def test_grow_pytree_notebook_runs_and_shows_preservation():
    nb = nbformat.read(NOTEBOOKS / "grow_pytree.ipynb", as_version=4)
    NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    key = next(c for c in nb.cells if "preservation" in c.get("metadata", {}).get("tags", []))
    assert "FPI tile preserved: True" in _text(key), _text(key)
    assert any(o.get("data", {}).get("image/png") for c in nb.cells for o in c.get("outputs", []))
    assert "AKI layer 0 new columns == FPI layer 1 new columns: True" in _text(nb.cells[-1])
