"""`seqpt grow`: a checkpoint grown into a larger model (bert2BERT: FPI / AKI, StackBERT, ...).

    seqpt grow --src small/ --dst-preset bert-base --method aki --out big/

The source's config comes from its model.json (or --src-preset); the target is the named
preset with the source's vocabulary size, then any --dst-override KEY=VALUE.
"""

from __future__ import annotations

import argparse
import dataclasses

import jax

from seqpt_jax import mappings, models, params_io
from seqpt_jax.data import vocab_record
from seqpt_jax.errors import UserError


def parse_overrides(items: list[str] | None, base: models.TransformerConfig) -> dict:
    """`["d_ff=4096", "tie_embeddings=false"]` -> typed field values of `base`."""
    out = {}
    fields = {f.name for f in dataclasses.fields(base)}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise UserError(f"override {item!r} is not KEY=VALUE with KEY a TransformerConfig field "
                            f"({', '.join(sorted(fields))}).")
        kind = type(getattr(base, key))
        try:
            if kind is bool:
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                out[key] = value.lower() in ("true", "1")
            else:
                out[key] = kind(value)
        except ValueError:
            raise UserError(f"override {item!r}: {value!r} is not a valid {kind.__name__}.") from None
    return out


def target_config(preset: str | None, overrides: list[str] | None, like: models.TransformerConfig):
    """The preset (default: `like`) with `like`'s vocabulary size, then the overrides."""
    base = like if preset is None else models.preset(preset, vocab_size=like.vocab_size)
    return base.replace(**parse_overrides(overrides, base))


def load_source(path: str, preset: str | None = None, overrides: list[str] | None = None):
    """(kind, config, params) of a param checkpoint or a `seqpt train` MODEL_DIR (latest good
    step); --src-preset/overrides replace its model.json."""
    kind, cfg, params = params_io.load(path)
    if preset is not None or overrides:
        cfg = target_config(preset, overrides, cfg)
    return kind, cfg, params


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output checkpoint directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of unit maps and fresh weights")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def report(what: str, src_cfg, src_params, dst_cfg, dst_params, out: str) -> None:
    print(f"{what}: {models.count_params(src_params):,} -> {models.count_params(dst_params):,} params "
          f"(d_model {src_cfg.d_model}->{dst_cfg.d_model}, layers {src_cfg.num_encoder_layers}->"
          f"{dst_cfg.num_encoder_layers}); wrote {out}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="seqpt grow", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="source checkpoint (seqpt convert/train output)")
    parser.add_argument("--src-preset", help="source config preset (default: the checkpoint's model.json)")
    parser.add_argument("--src-override", action="append", metavar="KEY=VALUE")
    parser.add_argument("--dst-preset", help="target preset (default: the source's config)")
    parser.add_argument("--dst-override", action="append", metavar="KEY=VALUE",
                        help="target field, e.g. num_encoder_layers=24 (repeatable)")
    parser.add_argument("--method", default="aki", choices=mappings.METHODS)
    parser.add_argument("--unit-map", default="random", choices=mappings.UNIT_MAPS)
    parser.add_argument("--depth", default="stack", choices=mappings.DEPTHS,
                        help="depth growth after width growth (fpi/aki/direct_copy)")
    add_common(parser)
    args = parser.parse_args(argv)
    kind, src_cfg, params = load_source(args.src, args.src_preset, args.src_override)
    dst_cfg = target_config(args.dst_preset, args.dst_override, src_cfg)
    grown = mappings.grow(params, src_cfg, dst_cfg, method=args.method, rng=jax.random.key(args.seed),
                          unit_map=args.unit_map, depth=args.depth)
    out = params_io.save_params(args.out, kind, dst_cfg, grown, overwrite=args.overwrite)
    vocab_record.inherit(args.src, out)  # export and finetune find the vocabulary
    report(f"grew {kind} by {args.method}", src_cfg, params, dst_cfg, grown, out)
    return 0
