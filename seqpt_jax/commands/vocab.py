"""SentencePiece vocabularies for the corpus.

    seqpt vocab train --corpus DIR --size N --out PATH
    seqpt vocab extend --model CKPT --vocab OLD.model --corpus DIR --langs el --out DIR
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

from seqpt_jax import paths
from seqpt_jax.data import mixing, records, vocab

EXTENDED_VOCAB = "vocab.model"  # the extended vocabulary, inside the --out checkpoint


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="seqpt vocab", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    t = sub.add_parser("train", help="train a unigram SentencePiece model with byte fallback and "
                       "100 sentinels at the top of the vocabulary (mT5 conventions)")
    t.add_argument("--corpus", help="corpus directory (default: $SEQPT_DATA_DIR/corpus or "
                                     "~/.cache/seqpt_jax/corpus)")
    t.add_argument("--size", type=int, default=32000,
                   help="SentencePiece pieces; the vocabulary adds 100 sentinels on top")
    t.add_argument("--out", required=True, help="output .model file")
    t.add_argument("--langs", nargs="*", help="languages (default: all in the corpus)")
    t.add_argument("--alpha", type=float, default=mixing.DEFAULT_ALPHA,
                   help="language temperature for the training text (default 0.3, as mT5)")
    t.add_argument("--max-chars", type=int, default=20_000_000,
                   help="characters of training text sampled in all")
    t.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("extend", help="add pieces for new languages to a trained model's vocabulary "
                       "and grow its vocabulary-sized tensors (old ids and rows unchanged)")
    e.add_argument("--model", required=True,
                   help="trained model: a `seqpt train` MODEL_DIR or a param checkpoint")
    e.add_argument("--vocab", required=True, help="the model's SentencePiece .model")
    e.add_argument("--corpus", help="corpus directory (default: $SEQPT_DATA_DIR/corpus or "
                                     "~/.cache/seqpt_jax/corpus)")
    e.add_argument("--langs", nargs="+", required=True, help="the new languages (corpus codes)")
    e.add_argument("--pieces", type=int, default=4000,
                   help="most pieces to add (fewer when the text supports fewer)")
    e.add_argument("--method", default="mean", choices=("mean", "ngram", "random"),
                   help="new rows: mean of the old pieces the new piece tokenizes into, a "
                   "trigram-similarity mix of old pieces, or random (baseline); a piece the old "
                   "vocabulary spells only in bytes gets a random row under every method")
    e.add_argument("--out", required=True, help="output param checkpoint directory (model.json, "
                   f"params/, and the new vocabulary as {EXTENDED_VOCAB})")
    e.add_argument("--seed", type=int, default=0, help="seed of the text sample and random rows")
    e.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    args.corpus = args.corpus or str(paths.corpus_dir())
    if args.action == "extend":
        return extend(args)

    voc = vocab.train(args.corpus, args.size, args.out, langs=args.langs, alpha=args.alpha,
                      max_chars=args.max_chars, seed=args.seed)
    langs = args.langs or records.languages(args.corpus)
    print(f"wrote {args.out}: {voc.vocab_size} ids ({voc.vocab_size - vocab.EXTRA_IDS} pieces + "
          f"{vocab.EXTRA_IDS} sentinels at the top)")
    print(f"{'lang':<8} {'tokens/char':>11}")
    for lang, tpc in vocab.tokens_per_char(voc, args.corpus, langs).items():
        print(f"{lang:<8} {tpc:>11.3f}")
    return 0


def extend(args) -> int:
    from seqpt_jax import mappings, params_io
    from seqpt_jax.data import vocab_record
    from seqpt_jax.errors import UserError

    out = os.path.abspath(args.out)
    if os.path.exists(out) and not args.overwrite:
        raise UserError(f"{out} already exists; choose another --out or pass --overwrite.")
    old = vocab.load(args.vocab)
    kind, cfg, params = params_io.load(args.model)
    if cfg.vocab_size != old.vocab_size:  # fail before training pieces
        raise UserError(f"{args.model} has vocab_size {cfg.vocab_size} but {args.vocab} gives "
                        f"{old.vocab_size} ids; pass the vocabulary the model was trained with.")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(out)) as tmp:
        new_path = os.path.join(tmp, EXTENDED_VOCAB)
        new = vocab.extend(args.vocab, args.corpus, args.langs, args.pieces, new_path, seed=args.seed)
        ext, ext_cfg = mappings.extend_vocab(params, cfg, old, new, method=args.method, seed=args.seed)
        params_io.save_params(out, kind, ext_cfg, ext, overwrite=args.overwrite)
        shutil.move(new_path, os.path.join(out, EXTENDED_VOCAB))
    vocab_record.write_record(out, os.path.join(out, EXTENDED_VOCAB))  # convert/finetune find it
    before = vocab.tokens_per_char(old, args.corpus, args.langs)
    after = vocab.tokens_per_char(os.path.join(out, EXTENDED_VOCAB), args.corpus, args.langs)
    added = ext_cfg.vocab_size - cfg.vocab_size
    print(f"extended {kind} by {added} pieces ({args.method}): vocab_size {cfg.vocab_size} -> "
          f"{ext_cfg.vocab_size}, sentinels {cfg.vocab_size - vocab.EXTRA_IDS}.. -> "
          f"{ext_cfg.vocab_size - vocab.EXTRA_IDS}..; wrote {out} and {out}/{EXTENDED_VOCAB}")
    print(f"{'lang':<8} {'tokens/char before':>18} {'after':>8}")
    for lang in args.langs:
        print(f"{lang:<8} {before[lang]:>18.3f} {after[lang]:>8.3f}")
    return 0
