"""`seqpt vocab train --corpus DIR --size N --out PATH`: a SentencePiece vocabulary for the corpus."""

from __future__ import annotations

import argparse

from seqpt_jax.data import mixing, records, vocab


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="seqpt vocab", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    t = sub.add_parser("train", help="train a unigram SentencePiece model with byte fallback and "
                       "100 sentinels at the top of the vocabulary (mT5 conventions)")
    t.add_argument("--corpus", default=str(records.DEFAULT_CORPUS), help="corpus directory")
    t.add_argument("--size", type=int, default=32000,
                   help="SentencePiece pieces; the vocabulary adds 100 sentinels on top")
    t.add_argument("--out", required=True, help="output .model file")
    t.add_argument("--langs", nargs="*", help="languages (default: all in the corpus)")
    t.add_argument("--alpha", type=float, default=mixing.DEFAULT_ALPHA,
                   help="language temperature for the training text (default 0.3, as mT5)")
    t.add_argument("--max-chars", type=int, default=20_000_000,
                   help="characters of training text sampled in all")
    t.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    voc = vocab.train(args.corpus, args.size, args.out, langs=args.langs, alpha=args.alpha,
                      max_chars=args.max_chars, seed=args.seed)
    langs = args.langs or records.languages(args.corpus)
    print(f"wrote {args.out}: {voc.vocab_size} ids ({voc.vocab_size - vocab.EXTRA_IDS} pieces + "
          f"{vocab.EXTRA_IDS} sentinels at the top)")
    print(f"{'lang':<8} {'tokens/char':>11}")
    for lang, tpc in vocab.tokens_per_char(voc, args.corpus, langs).items():
        print(f"{lang:<8} {tpc:>11.3f}")
    return 0
