"""`seqpt corpus`: build the embedded multilingual corpus from Debian packages, show its stats,
export a portable pre-tokenized copy of it (trains without TensorFlow: docs/experiments.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seqpt_jax.errors import UserError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seqpt corpus", description=__doc__)
    sub = p.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="fetch, clean, split and write the corpus (cached)")
    b.add_argument("--out", help="corpus directory (default: $SEQPT_DATA_DIR/corpus or "
                                 "~/.cache/seqpt_jax/corpus)")
    b.add_argument("--langs", nargs="+", help="language codes, space or comma separated "
                                              "(default: 15 languages); `seqpt corpus langs` "
                                              "lists them")
    b.add_argument("--max-mb", type=float, help="cap on the text size in MB, shared equally by "
                                                "the languages (default: everything)")
    b.add_argument("--cache", help="download cache (default: <out>/../downloads)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    s = sub.add_parser("stats", help="print a built corpus's sizes per language, script and task")
    s.add_argument("--out", help="corpus directory (default as for build)")
    sub.add_parser("langs", help="list the languages and their Debian packages")
    e = sub.add_parser("export", help="a portable pre-tokenized copy: token shards, vocabulary, task files, "
                                      "manifest (CORPUS_DIR for training without TensorFlow)")
    e.add_argument("--vocab", required=True, help="SentencePiece model to tokenize with (`seqpt vocab train`)")
    e.add_argument("--out", required=True, help="directory to write the exported corpus to")
    e.add_argument("--corpus", help="corpus directory to export (default as for build)")
    e.add_argument("--langs", nargs="+", help="language codes, space or comma separated (default: all)")
    e.add_argument("--max-tokens", type=int, help="at most N training tokens per language (validation and test: "
                                                  "N/10), whole documents chosen by hash (default: everything)")
    e.add_argument("--max-examples", type=int, help="at most N examples per task file, chosen by hash "
                                                    "(default: every one)")
    return p


def _summary(stats: dict) -> str:
    rows = [f"{'lang':<5} {'train docs':>10} {'train Mchar':>11} {'valid':>6} {'test':>6}  sources"]
    for lang, splits in stats["languages"].items():
        tr = splits["train"]
        srcs = ", ".join(f"{k} {v}" for k, v in stats.get("sources", {}).get(lang, {}).items())
        rows.append(f"{lang:<5} {tr['documents']:>10} {tr['characters'] / 1e6:>11.2f} "
                    f"{splits['validation']['documents']:>6} {splits['test']['documents']:>6}  {srcs}")
    scripts = ", ".join(f"{k} {v['characters'] / 1e6:.1f}M chars"
                        for k, v in sorted(stats["scripts"].items(), key=lambda kv: -kv[1]["characters"]))
    rows.append(f"scripts: {scripts}")
    rows.append(f"total: {stats['total_mb']} MB of text in {len(stats['languages'])} languages")
    for task, files in stats.get("tasks", {}).items():
        total = sum(files.values())
        rows.append(f"task {task}: {total} examples in {len(files)} files")
    return "\n".join(rows)


def _export(args, corpus: Path) -> int:
    from seqpt_jax.data import exported
    langs = ",".join(args.langs).split(",") if args.langs else None
    print(f"exporting {corpus} in the ids of {args.vocab}")
    found = exported.export(corpus, args.vocab, args.out, langs=langs, max_tokens=args.max_tokens,
                            max_examples=args.max_examples)
    train = sum(splits.get("train", 0) for splits in found["tokens"].values())
    print(f"wrote {args.out}: {len(found['languages'])} languages, {train:,} training tokens "
          f"({found['dtype']}), {len(found['tasks'])} tasks, {found['bytes'] / 1e6:.1f} MB; train with "
          f"--gin.CORPUS_DIR={args.out} --gin.VOCAB={Path(args.out) / exported.VOCAB_FILE}")
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from seqpt_jax.data.corpus import default_dir
    if args.action == "export":
        return _export(args, Path(args.corpus).expanduser() if args.corpus else default_dir())
    out = Path(args.out).expanduser() if getattr(args, "out", None) else default_dir()
    if args.action == "langs":
        from seqpt_jax.data.corpus.languages import DEFAULT_LANGS, LANGUAGES
        for l in LANGUAGES.values():
            mark = "*" if l.code in DEFAULT_LANGS else " "
            print(f"{mark} {l.code:<3} {l.name:<22} {l.script:<11} ddtp={l.ddtp} "
                  f"manpages={l.manpages} help={l.help} fortunes={l.fortunes}")
        return 0
    if args.action == "stats":
        path = out / "stats.json"
        if not (out / "COMPLETE").is_file():
            raise UserError(f"no complete corpus at {out}; build it with `seqpt corpus build "
                            f"--out {out}`.")
        print(_summary(json.loads(path.read_text())))
        return 0
    from seqpt_jax.data.corpus.build import build
    before = (out / "COMPLETE").is_file()
    langs = ",".join(args.langs).split(",") if args.langs else None
    build(out, langs=langs, max_mb=args.max_mb, cache_dir=args.cache,
          progress=not args.no_progress)
    if not before:
        print(_summary(json.loads((out / "stats.json").read_text())))
        print(f"corpus written to {out}")
    return 0
