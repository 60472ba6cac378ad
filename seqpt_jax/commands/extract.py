"""`seqpt extract`: the encoder of a seq2seq checkpoint, with an MLM head: the checkpoint's
encoder MLM head when it was trained with one (seq2seq_masked_encoder.gin), else a fresh one.

    seqpt extract --seq2seq s2s/ --out enc/ [--kind encoder_mlm|encoder]
"""

from __future__ import annotations

import argparse

import jax

from seqpt_jax import mappings, params_io
from seqpt_jax.data import vocab_record
from seqpt_jax.commands.grow import add_common, load_source, report
from seqpt_jax.mappings.extract import KINDS


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="seqpt extract", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq2seq", required=True, help="encoder-decoder checkpoint")
    parser.add_argument("--kind", default="encoder_mlm", choices=KINDS,
                        help="encoder_mlm (for continue_mlm.gin; the checkpoint's encoder MLM head "
                             "when it has one, else a fresh one) or encoder")
    add_common(parser)
    args = parser.parse_args(argv)
    _, cfg, params = load_source(args.seq2seq)
    enc = mappings.seq2seq_to_encoder(params, cfg, cfg, rng=jax.random.key(args.seed), kind=args.kind)
    out = params_io.save_params(args.out, args.kind, cfg, enc, overwrite=args.overwrite)
    vocab_record.inherit(args.seq2seq, out)  # export and finetune find the vocabulary
    report(f"extracted the encoder ({args.kind})", cfg, params, cfg, enc, out)
    return 0
