"""Local paths and remote URIs (gs://...) side by side: which is which, and one-line errors;
and where the project keeps its data (`corpus_dir`: one rule for every command).

Remote paths go through etils epath (TensorFlow's gfile or fsspec underneath); local ones are
made absolute. `remote_error` turns whatever a storage client raised into one line.
"""

from __future__ import annotations

import os
from pathlib import Path

from seqpt_jax.errors import UserError

DATA_DIR_ENV = "SEQPT_DATA_DIR"


def data_dir() -> Path:
    """$SEQPT_DATA_DIR if set, else ~/.cache/seqpt_jax (read at call time, so a test or a job
    script can set it after import)."""
    base = os.environ.get(DATA_DIR_ENV)
    return Path(base).expanduser() if base else Path.home() / ".cache" / "seqpt_jax"


def corpus_dir() -> Path:
    """The default corpus location of every command: data_dir()/corpus."""
    return data_dir() / "corpus"


def is_remote(path) -> bool:
    """gs://... and other URIs; a file:// URI is a local path."""
    return "://" in str(path) and not str(path).startswith("file://")


def local(path) -> str:
    """A local path without its file:// scheme."""
    return str(path)[len("file://"):] if str(path).startswith("file://") else str(path)


def resolve(path) -> str:
    """An absolute local path, or a URI unchanged (os.path would turn gs://b into gs:/b)."""
    return str(path) if is_remote(path) else os.path.abspath(os.path.expanduser(local(path)))


def remote_error(path, error: Exception, what: str) -> UserError:
    """One line naming an unreachable remote path and the first line of the cause."""
    cause = next((s.strip() for s in str(error).splitlines() if s.strip()), "")
    return UserError(f"{what} {path} cannot be reached ({type(error).__name__}{': ' + cause[:160] if cause else ''}); "
                     f"check the bucket name, network and credentials (`gcloud auth application-default "
                     f"login`), or use a local path.")
