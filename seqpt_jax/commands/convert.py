"""`seqpt convert`: Hugging Face model directory <-> seqpt_jax parameter checkpoint.

    seqpt convert --from-hf HF_DIR --out CKPT_DIR     # config.json + model.safetensors -> ours
    seqpt convert --to-hf CKPT_DIR --out HF_DIR       # ours -> config.json + model.safetensors

Local directories only; nothing is downloaded.
"""

from __future__ import annotations

import argparse

from seqpt_jax import convert, params_io
from seqpt_jax.models import count_params


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="seqpt convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-hf", metavar="HF_DIR", help="local transformers model directory to import")
    source.add_argument("--to-hf", metavar="CKPT_DIR", help="seqpt_jax model to export (params checkpoint or `seqpt train` MODEL_DIR)")
    parser.add_argument("--out", required=True, help="directory to write (must not exist yet)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    if args.from_hf:
        kind, cfg, params = convert.from_hf(args.from_hf)
        path = params_io.save_params(args.out, kind, cfg, params, overwrite=args.overwrite)
    else:
        kind, cfg, params = params_io.load(args.to_hf)
        path = convert.to_hf(kind, cfg, params, args.out, overwrite=args.overwrite)
        kind = f"{kind} as {convert.hf_architecture(kind, cfg)}"
    print(f"wrote {path}: {cfg.family} {kind}, {count_params(params):,} parameters")
    return 0
