"""`seqpt models [PRESET ...]`: parameter counts of the presets, beside the published counts."""

from __future__ import annotations

import argparse

from seqpt_jax import models


def _row(name: str, kind: str) -> tuple:
    cfg = models.preset(name)
    n = models.count_params(models.param_shapes(models.build(kind, cfg)))
    _, published, source = models.PRESETS[name]
    return name, kind, cfg.vocab_size, n, published, source


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="seqpt models", description=__doc__)
    parser.add_argument("presets", nargs="*", help="preset names (default: all)")
    args = parser.parse_args(argv)
    names = args.presets or list(models.PRESETS)
    for name in names:
        models.preset(name)  # validates the name with a clear error
    print(f"{'preset':<12} {'model':<16} {'vocab':>7} {'params':>15} {'published':>10}  source")
    for name in names:
        kind = "encoder_decoder" if models.preset(name).family == "t5" else "encoder_mlm"
        name, kind, vocab, n, published, source = _row(name, kind)
        pub = "-" if published is None else f"{published / 1e6:,.1f}M"
        print(f"{name:<12} {kind:<16} {vocab:>7} {n:>15,} {pub:>10}  {source or ''}")
    return 0
