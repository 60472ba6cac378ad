"""`seqpt warmstart`: a seq2seq checkpoint whose encoder is an MLM/encoder checkpoint's.

    seqpt warmstart --encoder mlm/ --out s2s/ [--preset t5-small] [--override num_decoder_layers=4]

Encoder and embeddings are copied exactly (Soltan et al. 2023); the decoder is fresh
(--decoder-init random) or copied from the encoder's layers (--decoder-init encoder).
"""

from __future__ import annotations

import argparse

import jax

from seqpt_jax import mappings, params_io
from seqpt_jax.data import vocab_record
from seqpt_jax.commands.grow import add_common, load_source, report, target_config


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="seqpt warmstart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", required=True, help="encoder or MLM checkpoint")
    parser.add_argument("--preset", help="seq2seq preset (default: the encoder's config)")
    parser.add_argument("--override", action="append", metavar="KEY=VALUE",
                        help="seq2seq field, e.g. num_decoder_layers=2 (repeatable)")
    parser.add_argument("--decoder-init", default="random", choices=("random", "encoder"))
    add_common(parser)
    args = parser.parse_args(argv)
    _, enc_cfg, params = load_source(args.encoder)
    s2s_cfg = target_config(args.preset, args.override, enc_cfg)
    s2s = mappings.encoder_to_seq2seq(params, enc_cfg, s2s_cfg, rng=jax.random.key(args.seed),
                                      decoder_init=args.decoder_init)
    out = params_io.save_params(args.out, "encoder_decoder", s2s_cfg, s2s, overwrite=args.overwrite)
    vocab_record.inherit(args.encoder, out)  # export and finetune find the vocabulary
    report(f"warm-started a seq2seq model (decoder: {args.decoder_init})", enc_cfg, params, s2s_cfg, s2s, out)
    return 0
