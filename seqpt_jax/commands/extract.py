"""`seqpt extract`: the encoder of a seq2seq checkpoint, with an MLM head: the checkpoint's
encoder MLM head when it was trained with one (seq2seq_masked_encoder.gin), else a fresh one;
or the discriminator of an ELECTRA run (runs/pretrain_electra.gin) with a fresh MLM head.

    seqpt extract --seq2seq s2s/ --out enc/ [--kind encoder_mlm|encoder]
    seqpt extract --electra electra/ --out disc/ [--kind encoder_mlm|encoder]
"""

from __future__ import annotations

import argparse

import jax

from seqpt_jax import mappings, params_io
from seqpt_jax.data import vocab_record
from seqpt_jax.errors import UserError
from seqpt_jax.commands.grow import add_common, load_source, report
from seqpt_jax.mappings.extract import KINDS


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="seqpt extract", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--seq2seq", help="encoder-decoder checkpoint")
    source.add_argument("--electra", help="ELECTRA MODEL_DIR or checkpoint: its discriminator is extracted")
    parser.add_argument("--kind", default="encoder_mlm", choices=KINDS,
                        help="encoder_mlm (for continue_mlm.gin; the checkpoint's encoder MLM head "
                             "when it has one, else a fresh one) or encoder")
    add_common(parser)
    args = parser.parse_args(argv)
    src = args.seq2seq or args.electra
    kind, cfg, params = load_source(src)
    if args.electra:
        if kind != "electra":
            raise UserError(f"--electra {src} is a {kind} model, not an ELECTRA one; use --seq2seq for seq2seq.")
        enc = mappings.electra_to_encoder(params, cfg, rng=jax.random.key(args.seed), kind=args.kind)
    else:
        enc = mappings.seq2seq_to_encoder(params, cfg, cfg, rng=jax.random.key(args.seed), kind=args.kind)
    out = params_io.save_params(args.out, args.kind, cfg, enc, overwrite=args.overwrite)
    vocab_record.inherit(src, out)  # export and finetune find the vocabulary
    what = "the discriminator" if args.electra else "the encoder"
    report(f"extracted {what} ({args.kind})", cfg, params, cfg, enc, out)
    return 0
