"""`seqpt convert`: Hugging Face model directory <-> seqpt_jax model.

    seqpt convert --to-hf RUN_OR_CKPT --out HF_DIR    # weights + tokenizer + model card
    seqpt convert --from-hf HF_DIR --out CKPT_DIR     # weights (+ the SentencePiece vocabulary)

--to-hf takes a `seqpt train` MODEL_DIR (its latest good checkpoint) or a params checkpoint and
writes a directory that loads as it is:

    tokenizer = AutoTokenizer.from_pretrained(HF_DIR)
    model = AutoModelForMaskedLM.from_pretrained(HF_DIR)     # or AutoModelForSeq2SeqLM

The vocabulary is the one the run recorded (MODEL_DIR/vocab.json), so no --vocab is needed;
a --vocab whose content differs from the record is refused. README.md states the recipe
lineage, corpus, languages, tokens, training FLOPs and validation loss from the run's records.
--from-hf writes the HF directory's SentencePiece model in as CKPT_DIR/vocab.model and records
it: T5/mT5's as it is, XLM-R's renumbered as the model's embedding rows (<s> 0, <pad> 1, </s> 2,
<unk> 3, ..., <mask> last). Continued pre-training (runs/continue_pretraining.gin) and
fine-tuning find it. A tokenizer that is not SentencePiece (WordPiece, byte-level BPE) is
refused in one line, exit 2; --weights-only converts the weights alone. Local directories
only; nothing is downloaded.
"""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    from seqpt_jax.convert import export

    parser = argparse.ArgumentParser(prog="seqpt convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-hf", metavar="HF_DIR", help="local transformers model directory to import")
    source.add_argument("--to-hf", metavar="RUN_OR_CKPT",
                        help="seqpt train MODEL_DIR or params checkpoint to export")
    parser.add_argument("--out", required=True, help="directory to write (must not exist yet)")
    parser.add_argument("--vocab", metavar="SPM_MODEL",
                        help="--to-hf: the SentencePiece model (default: the one the run recorded)")
    parser.add_argument("--weights-only", action="store_true",
                        help="--to-hf: config.json + model.safetensors only (no tokenizer, no model card); "
                             "--from-hf: the weights alone, no vocabulary")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    if args.from_hf:
        path, info = export.import_hf(args.from_hf, args.out, overwrite=args.overwrite,
                                      weights_only=args.weights_only)
        print(f"wrote {path}: {info['cfg'].family} {info['kind']}, {info['params']:,} parameters")
        print(info["note"])
    else:
        path, arch, info = export.export(args.to_hf, args.out, vocab=args.vocab, overwrite=args.overwrite,
                                         weights_only=args.weights_only)
        held = "weights only" if args.weights_only else f"tokenizer {info['vocab']}, README.md"
        print(f"wrote {path}: {info['cfg'].family} {info['kind']} as {arch}, {info['params']:,} parameters; {held}")
    return 0
