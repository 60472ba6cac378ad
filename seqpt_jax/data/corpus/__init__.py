"""The embedded multilingual corpus, built from Debian packages (DESIGN.md §4).

`ensure_corpus()` returns the path of a complete corpus, building it on first use;
`default_dir()` is where it lives. See output.py for the on-disk layout.
"""

from __future__ import annotations

from pathlib import Path

from seqpt_jax.data.corpus.languages import DEFAULT_LANGS, LANGUAGES
from seqpt_jax.paths import corpus_dir


def default_dir() -> Path:
    """$SEQPT_DATA_DIR/corpus if set, else ~/.cache/seqpt_jax/corpus (`paths.corpus_dir`)."""
    return corpus_dir()


def ensure_corpus(dir=None, langs=None, max_mb=None, progress: bool = True) -> Path:
    """The corpus directory, built first if it is not complete yet (needs apt and network)."""
    from seqpt_jax.data.corpus.build import build
    return build(dir or default_dir(), langs=langs, max_mb=max_mb, progress=progress)


__all__ = ["DEFAULT_LANGS", "LANGUAGES", "default_dir", "ensure_corpus"]
