"""`seqpt finetune`: fine-tune a checkpoint on a downstream task and score it per language.

  seqpt finetune --task classification --init CKPT --vocab spm.model --train t.jsonl --test e.jsonl --out DIR
  seqpt finetune --task section --init CKPT --vocab spm.model --corpus ~/.cache/seqpt_jax/corpus --out DIR
  seqpt finetune --task xnli --init CKPT --vocab spm.model --data ~/data/xnli --out DIR
  seqpt finetune --task wikiann --init CKPT --reinit --vocab spm.model --tfds ~/tensorflow_datasets --out DIR

Tasks are user files (classification | tagging | generation with --train/--validation/--test),
the corpus's cross-lingual tasks (section | ui_tagging | translation | synopsis | ja_ner), or
XTREME's (xnli | pawsx | wikiann | udpos; accuracy, accuracy, entity F1, token accuracy) from
the datasets' own files (--data DIR) or prepared TFDS datasets (--tfds DATA_DIR): fine-tuned on
English and tested zero-shot on every language, plus in-language runs where a language has
training data (Options.in_language). Nothing is downloaded.

Defaults (Options in seqpt_jax/evaluate/finetune.py; BERT's fine-tuning recipe): AdamW, lr 1e-4
with 10% linear warmup and linear decay, batch 32, 3 epochs, max_length 128, seed 0. With a
validation split in the training language, the epoch with the best validation score is kept
(select_on_validation; patience=N stops after N epochs without a gain). The same seed gives the
same numbers. Bind other values with --gin_file / --gin.Options.epochs=5.
Writes DIR/results.json, DIR/results.md, DIR/scores.png and the fine-tuned model DIR/model.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from seqpt_jax import gin_config, paths
from seqpt_jax.errors import UserError

_OPTIONS = None


def add_task_args(parser: argparse.ArgumentParser) -> None:
    from seqpt_jax.evaluate import tasks

    parser.add_argument("--task", required=True,
                        help=f"{' | '.join(tasks.USER_KINDS)} (user files), {' | '.join(tasks.CORPUS_TASKS)} "
                             f"(corpus) or {' | '.join(tasks.XTREME_TASKS)} (XTREME: --data or --tfds)")
    parser.add_argument("--train", help="training file (user tasks)")
    parser.add_argument("--validation", help="validation file (user tasks)")
    parser.add_argument("--test", help="test file (user tasks)")
    parser.add_argument("--corpus", help="corpus directory (corpus tasks; default: $SEQPT_DATA_DIR/corpus or "
                                            "~/.cache/seqpt_jax/corpus)")
    parser.add_argument("--data", help="XTREME tasks: directory holding the dataset's own files (docs/experiments.md)")
    parser.add_argument("--tfds", help="XTREME tasks: TFDS data_dir where the datasets are prepared")
    parser.add_argument("--langs", help="comma-separated languages to use (corpus and XTREME tasks)")
    parser.add_argument("--vocab", help="SentencePiece model (default: the one CKPT records or CKPT/vocab.model, else an exported "
                                        "--corpus's own)")
    parser.add_argument("--gin_file", action="append", default=[], help="gin file binding Options.*")
    parser.add_argument("--out", required=True, help="output directory")


def split_gin_bindings(argv: list[str]) -> tuple[list[str], list[str]]:
    """T5X-style `--gin.NAME=VALUE` flags out of argv (argparse cannot declare them)."""
    return gin_config.split_gin_args(argv)


def options(gin_files: list[str], bindings: list[str]):
    """`Options` with the gin files and bindings applied (gin stays out of library code)."""
    import gin

    from seqpt_jax.evaluate.finetune import Options

    for path in gin_files:
        if not os.path.isfile(path):
            raise UserError(f"gin file {path} not found; pass an existing --gin_file.")
    global _OPTIONS
    with gin.unlock_config():  # a `seqpt train` earlier in this process locked the config
        gin.clear_config()
        if _OPTIONS is None:  # register once per process (tests call main repeatedly)
            _OPTIONS = gin.external_configurable(Options, name="Options")
        try:
            gin.parse_config_files_and_bindings(gin_files, bindings)
        except (ValueError, KeyError, SyntaxError) as e:
            raise UserError(f"bad gin binding: {str(e).splitlines()[0]}; bind fields of Options, "
                            "e.g. --gin.Options.epochs=5.") from None
    return _OPTIONS()


def resolve_task(args):
    from seqpt_jax.evaluate import tasks

    if args.train or args.test or args.validation:
        return tasks.from_files(args.task, args.train, args.validation, args.test)
    langs = args.langs.split(",") if args.langs else None
    if args.task in tasks.XTREME_TASKS:
        return tasks.from_xtreme(args.task, args.data, args.tfds, langs)
    return tasks.from_corpus(args.task, args.corpus or str(paths.corpus_dir()), langs)


def load_vocab(path: str | None, ckpt: str | None):
    """--vocab, or the vocabulary the checkpoint records (data.vocab_record); a --vocab whose
    content differs from the recorded one is refused."""
    from seqpt_jax.data import vocab as vocab_lib, vocab_record

    if ckpt and os.path.isdir(ckpt):
        path = vocab_record.resolve(ckpt, path)
    if path is None:
        raise UserError("--vocab SPM_MODEL is required (the vocabulary the checkpoint was trained with).")
    if vocab_lib.own_mask(vocab_lib.processor(path)) is not None:  # evaluate/ encodes with pad 0, eos 1
        raise UserError(f"vocabulary {path} numbers its ids as XLM-R (<pad> 1, </s> 2); `seqpt finetune` supports "
                        f"T5-numbered vocabularies only so far: fine-tune the `--to-hf` export in transformers.")
    return vocab_lib.load(path)


def write_results(results: dict, out: str) -> None:
    from seqpt_jax.evaluate import report

    paths = report.write(results, out)
    print(report.markdown(results))
    print(f"wrote {paths['results.json']}, {paths['results.md']}, {paths['scores.png']}")


def starting_point(init: str | None, preset: str | None, reinit: bool, vocab_size: int, seed: int):
    """(kind, config, params) fine-tuning starts from: the checkpoint `init`; with `reinit`, fresh
    weights of its shape from `seed` (an encoder, or the whole seq2seq model, as fine-tuning takes
    only those subtrees); or fresh weights of `preset`."""
    import jax

    from seqpt_jax import models, params_io

    if init and not reinit:
        return params_io.load(init)
    if init:
        kind, cfg = params_io.read_model(init)  # the shape only: no weights are read
        kind = "encoder_decoder" if kind == "encoder_decoder" else "encoder"
    else:
        kind, cfg = "encoder", models.preset(preset, vocab_size=vocab_size)
    return kind, cfg, models.init(models.build(kind, cfg), jax.random.key(seed))


def main(argv: list[str]) -> int:
    argv, bindings = split_gin_bindings(argv)
    parser = argparse.ArgumentParser(prog="seqpt finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_task_args(parser)
    init = parser.add_mutually_exclusive_group(required=True)
    init.add_argument("--init", help="pre-trained model: a `seqpt train` MODEL_DIR, a params checkpoint (seqpt convert/grow/"
                           "warmstart/extract) or a fine-tuned model")
    init.add_argument("--preset", help="start from random weights of this preset (a from-scratch baseline)")
    parser.add_argument("--reinit", action="store_true",
                        help="with --init: keep the checkpoint's shape, re-initialise its weights from the seed "
                             "(the random-init baseline of any checkpoint)")
    args = parser.parse_args(argv)
    if args.reinit and not args.init:
        raise UserError("--reinit re-initialises the checkpoint named by --init; pass --init DIR (or drop --reinit).")

    from seqpt_jax.evaluate import protocol

    opts = options(args.gin_file, bindings)
    args.corpus = args.corpus or str(paths.corpus_dir())
    task = resolve_task(args)
    from seqpt_jax.data import exported
    corpus_vocab = None if args.vocab or not exported.is_export(args.corpus) else exported.check_vocab(args.corpus, None)
    vocab = load_vocab(args.vocab or corpus_vocab, args.init)  # an exported corpus brings its vocabulary
    kind, cfg, params = starting_point(args.init, args.preset, args.reinit, vocab.vocab_size, opts.seed)
    results = protocol.run(task, kind, cfg, params, vocab, opts, save_dir=os.path.join(args.out, "model"))
    results["init"] = (f"random:{args.init}" if args.reinit else args.init) or f"scratch:{args.preset}"
    results["options"] = dataclasses.asdict(opts)
    write_results(results, args.out)
    return 0
