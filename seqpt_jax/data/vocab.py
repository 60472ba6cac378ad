"""The SentencePiece vocabulary: training from the corpus, loading, and the token facts the
objectives need.

Conventions (mT5): pad=0, eos=1, unk=2, no bos; byte fallback so no text is ever <unk>;
`extra_ids` (100) sentinels appended at the TOP of the vocabulary, <extra_id_0> being the
highest id. Span corruption counts sentinels down from the top; MLM's [MASK] is the lowest
extra id (<extra_id_99>), which span corruption never reaches (it is capped at 99 spans).

An imported XLM-R vocabulary (`convert.tokenizer.fairseq_model`) numbers its pieces as the
model's embedding rows: <s> 0, <pad> 1, </s> 2, <unk> 3, then the pieces, then a CONTROL piece
`<mask>` as its last id. Such a vocabulary carries its own mask, so it has no extra ids; the
special ids are read from the model file itself (`token_info`, `extra_ids_of`).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from seqpt_jax.data import mixing, records
from seqpt_jax.errors import UserError
from seqpt_jax.paths import is_remote, local, remote_error

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
EXTRA_IDS = 100
MASK_PIECE = "<mask>"  # a vocabulary with this CONTROL piece brings its own mask and no extra ids
WORD_START = "\u2581"  # SentencePiece's "▁": the piece begins a new word


def _sample_lines(corpus, langs: Sequence[str], alpha: float, max_chars: int, seed: int,
                  skipped: records.SkipCounter) -> tuple[list[str], dict[str, int]]:
    """Training lines drawn per language with temperature `alpha`, at most ~max_chars in all.

    Each language gets a share p_l of the budget; a small language is repeated (in a fresh
    shuffled order each pass) until it fills its share, as mT5 upsamples low-resource text.
    """
    docs = {lang: [line for text in records.read_texts(corpus, lang, "train", skipped)
                   for line in text.split("\n") if line.strip()] for lang in langs}
    chars = {lang: sum(map(len, lines)) for lang, lines in docs.items()}
    empty = [lang for lang, n in chars.items() if n == 0]
    if empty:
        raise UserError(f"no usable training text for {', '.join(empty)} in {corpus}; "
                        "drop those languages with --langs or rebuild the corpus.")
    rates = mixing.temperature_rates(chars, alpha)
    budget = min(max_chars, sum(chars.values()))
    rng = random.Random(seed)
    out, taken = [], {}
    for lang in langs:
        want, got, lines = rates[lang] * budget, 0, docs[lang]
        while got < want:
            order = list(range(len(lines)))
            rng.shuffle(order)
            for i in order:
                out.append(lines[i])
                got += len(lines[i])
                if got >= want:
                    break
        taken[lang] = got
    rng.shuffle(out)
    return out, taken


def _fitting_coverage(lines: Sequence[str], size: int, requested: float) -> float:
    """The character coverage, lowered (SentencePiece allows down to 0.98) so the required
    characters leave at least half of the non-byte pieces for subwords; byte fallback covers
    the characters left out. A UserError if even 0.98 does not fit."""
    counts = collections.Counter(ch for line in lines for ch in line if not ch.isspace())
    freqs = np.sort(np.fromiter(counts.values(), float))[::-1]
    cumulative = np.cumsum(freqs) / max(freqs.sum(), 1.0)
    allowed = max((size - 256 - 3) // 2, 1)
    if len(freqs) <= allowed:
        return requested
    coverage = max(min(requested, float(cumulative[allowed - 1]) * 0.999), 0.98)
    needed = int(np.searchsorted(cumulative, coverage)) + 1 + 256 + 3
    if needed > size:
        raise UserError(f"--size {size} is too small for this text: covering 98% of its "
                        f"{len(freqs)} distinct characters needs at least {needed} pieces.")
    return coverage


def train(corpus: str | os.PathLike, size: int, out: str | os.PathLike, *,
          langs: Sequence[str] | None = None, alpha: float = mixing.DEFAULT_ALPHA,
          max_chars: int = 20_000_000, character_coverage: float = 0.9995, seed: int = 0,
          threads: int = 2, verbose: bool = False):
    """Trains a unigram SentencePiece model of `size` pieces (plus 100 sentinels) to `out`.

    Returns its `Vocabulary` (vocab_size = size + 100).
    """
    import sentencepiece as spm

    langs = list(langs or records.languages(corpus))
    for lang in langs:
        records.text_file(corpus, lang, "train")  # one clear error per missing language
    if size < 260:
        raise UserError(f"--size {size} is too small: byte fallback alone needs 259 pieces; use >= 300.")
    skipped = records.SkipCounter()
    lines, _ = _sample_lines(corpus, langs, alpha, max_chars, seed, skipped)
    skipped.report(f"{corpus} (vocabulary training text)")
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        text = Path(tmp) / "train.txt"
        text.write_text("\n".join(lines) + "\n", "utf-8")
        coverage = _fitting_coverage(lines, size, character_coverage)
        spm.SentencePieceTrainer.train(
            input=str(text), model_prefix=str(Path(tmp) / "sp"), vocab_size=size,
            model_type="unigram", character_coverage=coverage, byte_fallback=True,
            pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1, split_digits=True,
            hard_vocab_limit=False, input_sentence_size=len(lines), shuffle_input_sentence=False,
            max_sentence_length=16384, num_threads=threads, minloglevel=0 if verbose else 2)
        # Write-then-rename: an interrupted run never leaves a truncated model at `out`.
        shutil.move(str(Path(tmp) / "sp.model"), str(out))
    return load(out)


class Vocabulary:
    """A SentencePiece model with `extra_ids` sentinels on top, as seqio's SentencePieceVocabulary
    builds it (the same ids, pieces and decoding; `tasks.output_features` hands seqio its own),
    without TensorFlow: fine-tuning and evaluation encode and decode through it."""

    def __init__(self, path: str, extra_ids: int):
        from sentencepiece import sentencepiece_model_pb2

        self.sentencepiece_model_file, self.extra_ids = str(path), int(extra_ids)
        proto = processor(path).serialized_model_proto()
        model = sentencepiece_model_pb2.ModelProto.FromString(proto)
        for i in reversed(range(self.extra_ids)):  # <extra_id_0> is the top id
            model.pieces.add(piece=f"{WORD_START}<extra_id_{i}>", score=0.0,
                             type=sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED)
        import sentencepiece as spm
        self.tokenizer = spm.SentencePieceProcessor(model_proto=model.SerializeToString())
        self.vocab_size = int(self.tokenizer.get_piece_size())  # the extra ids included
        self.eos_id, self.unk_id, self.pad_id = self.tokenizer.eos_id(), self.tokenizer.unk_id(), PAD_ID

    def encode(self, text: str) -> list[int]:
        """Ids of `text`, no EOS added."""
        return self.tokenizer.encode_as_ids(text)

    def decode(self, ids) -> str:
        """Text up to and including the first EOS; ids past the vocabulary read as <unk>."""
        ids = [self.unk_id if i >= self.vocab_size else int(i) for i in ids]
        if self.eos_id in ids:
            ids = ids[:ids.index(self.eos_id) + 1]
        return self.tokenizer.decode_ids(ids)


def load(path: str | os.PathLike, extra_ids: int | None = None) -> Vocabulary:
    """The vocabulary of a SentencePiece model file, or a one-line UserError.
    `extra_ids`: default `extra_ids_of` the file (100, or 0 for a vocabulary with its own mask)."""
    path = str(path) if is_remote(path) else Path(local(path)).expanduser()
    sp = processor(path)  # validates the file with a clear error
    extra_ids = extra_ids_of(sp) if extra_ids is None else extra_ids
    return Vocabulary(str(path), extra_ids)


def own_mask(sp) -> int | None:
    """The id of the vocabulary's own mask (a CONTROL piece `<mask>`), or None."""
    i = sp.piece_to_id(MASK_PIECE)
    return i if i != sp.unk_id() and sp.is_control(i) else None


def extra_ids_of(vocab) -> int:
    """Sentinels seqio appends to this vocabulary: none when it has its own mask, else 100."""
    sp = vocab if hasattr(vocab, "id_to_piece") else processor(model_path(vocab))
    return 0 if own_mask(sp) is not None else EXTRA_IDS


def processor(path: str | os.PathLike):
    """The raw SentencePieceProcessor (fast batch encoding without TensorFlow)."""
    import sentencepiece as spm

    if is_remote(path):  # gs://...: the bytes through epath, so an unreachable bucket is one line
        return _remote_processor(str(path))
    path = Path(local(path)).expanduser()
    if not path.is_file():
        raise UserError(f"vocabulary file {path} not found; train one with "
                        f"`seqpt vocab train --corpus DIR --size N --out {path}`.")
    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except (RuntimeError, OSError) as e:
        raise UserError(f"{path} is not a SentencePiece model ({str(e).splitlines()[0]}); "
                        "retrain it with `seqpt vocab train`.") from None


def _remote_processor(path: str):
    import sentencepiece as spm
    from etils import epath

    try:
        proto = epath.Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"vocabulary file {path} not found; check the path, or train one with "
                        f"`seqpt vocab train` and copy it there.") from None
    except Exception as e:  # noqa: BLE001 - storage clients raise their own types
        raise remote_error(path, e, "vocabulary") from None
    try:
        return spm.SentencePieceProcessor(model_proto=proto)
    except (RuntimeError, OSError) as e:
        raise UserError(f"{path} is not a SentencePiece model ({str(e).splitlines()[0]}); "
                        "retrain it with `seqpt vocab train`.") from None


def model_path(vocab) -> str:
    """The model file behind a Vocabulary, a seqio SentencePieceVocabulary or a path."""
    return str(getattr(vocab, "sentencepiece_model_file", vocab))


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    """What the objectives need to know about the vocabulary, as plain numpy."""

    vocab_size: int          # including the extra ids
    extra_ids: int
    word_start: np.ndarray   # [vocab_size] bool: the piece begins a word
    special: np.ndarray      # [vocab_size] bool: pad/eos/unk/extra ids, never selected for masking
    pad_id: int = PAD_ID
    eos_id: int = EOS_ID
    first_piece: int = UNK_ID + 1  # the lowest id of an ordinary piece
    own_mask: int | None = None    # the vocabulary's own <mask> piece (XLM-R), else the lowest extra id

    @property
    def mask_id(self) -> int:
        """[MASK] for MLM: the lowest extra id, never used as a span sentinel."""
        return self.vocab_size - self.extra_ids if self.own_mask is None else self.own_mask

    def sentinel(self, k: int) -> int:
        """Span k's sentinel, counted down from the top id (<extra_id_k>)."""
        return self.vocab_size - 1 - k

    @property
    def max_spans(self) -> int:
        return self.extra_ids - 1

    @property
    def random_range(self) -> tuple[int, int]:
        """Ids for MLM's random replacement: ordinary pieces, no specials, no extra ids (the
        pieces lie between the low special ids and the extra ids or the own mask)."""
        return self.first_piece, self.mask_id


def token_info(vocab, extra_ids: int | None = None) -> TokenInfo:
    """TokenInfo of a vocabulary (seqio vocabulary, model path or SentencePieceProcessor), its
    special ids read from the model file (`extra_ids`: default `extra_ids_of`)."""
    sp = vocab if hasattr(vocab, "id_to_piece") else processor(model_path(vocab))
    extra_ids = extra_ids_of(sp) if extra_ids is None else extra_ids
    n = sp.get_piece_size()
    pieces = [sp.id_to_piece(i) for i in range(n)]
    word_start = np.zeros(n + extra_ids, bool)
    word_start[:n] = [p.startswith(WORD_START) for p in pieces]
    special = np.zeros(n + extra_ids, bool)
    special[:n] = [sp.is_control(i) or sp.is_unknown(i) for i in range(n)]
    special[n:] = True
    pad = sp.pad_id() if sp.pad_id() >= 0 else PAD_ID
    eos = sp.eos_id() if sp.eos_id() >= 0 else EOS_ID
    low = [i for i in (pad, eos, sp.unk_id(), sp.bos_id()) if i >= 0]
    return TokenInfo(n + extra_ids, extra_ids, word_start, special, pad_id=pad, eos_id=eos,
                     first_piece=max(low) + 1, own_mask=own_mask(sp) if not extra_ids else None)


def synthetic_token_info(vocab_size: int, extra_ids: int = EXTRA_IDS, every: int = 3) -> TokenInfo:
    """A TokenInfo without a model file (tests, benchmarks): every `every`-th id starts a word."""
    ids = np.arange(vocab_size)
    special = (ids <= UNK_ID) | (ids >= vocab_size - extra_ids)
    return TokenInfo(vocab_size, extra_ids, ids % every == 0, special)


def tokens_per_char(vocab, corpus, langs: Iterable[str], split: str = "validation",
                    max_docs: int = 2000) -> dict[str, float]:
    """Tokens per character of each language's `split` text (train where `split` is missing)."""
    sp = processor(model_path(vocab))
    out = {}
    for lang in langs:
        try:
            records.text_file(corpus, lang, split)
            use = split
        except UserError:
            use = "train"
        docs = []
        for text in records.read_texts(corpus, lang, use):
            docs.append(text)
            if len(docs) >= max_docs:
                break
        chars = sum(map(len, docs))
        out[lang] = sum(map(len, sp.encode(docs))) / max(chars, 1)
    return out


def _model_proto(path: str | os.PathLike):
    """The parsed ModelProto of a SentencePiece model file (validated first)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    processor(path)
    proto = pb.ModelProto()
    proto.ParseFromString(Path(path).expanduser().read_bytes())
    return proto


def literal_processor(path: str | os.PathLike):
    """A processor of the model at `path` that encodes a piece's string as written: no dummy
    "▁" prefix and whitespace kept, so `encode("ing")` is a word-internal tokenization and
    `encode(" ing")` a word-initial one (vocabulary extension tokenizes new pieces this way)."""
    import sentencepiece as spm

    proto = _model_proto(path)
    proto.normalizer_spec.add_dummy_prefix = False
    proto.normalizer_spec.remove_extra_whitespaces = False
    return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())


def extend(old: str | os.PathLike, corpus: str | os.PathLike, langs: Sequence[str], pieces: int,
           out: str | os.PathLike, *, alpha: float = mixing.DEFAULT_ALPHA,
           max_chars: int = 5_000_000, seed: int = 0, threads: int = 2):
    """The vocabulary at `old` plus up to `pieces` pieces learned on `langs`' text, to `out`.

    Every old piece keeps its id (and score); the added pieces take ids n_old.. n_old+k-1, so
    the 100 sentinels that seqio appends stay at the top (each moves up by k) and [MASK] stays
    the lowest extra id. The added pieces come from a unigram model trained on the new text
    alone: its most probable pieces not already in `old`. Their log-probabilities are shifted
    so their median equals the median score of the old ordinary pieces, so Viterbi prefers
    them on the new languages' text about as much as the old pieces on the old languages'.
    Returns the seqio vocabulary of `out`.
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    if pieces < 1:
        raise UserError(f"--pieces {pieces} adds nothing; use a positive number of pieces.")
    base = _model_proto(old)
    if base.trainer_spec.model_type != pb.TrainerSpec.UNIGRAM:
        raise UserError(f"{old} is not a unigram SentencePiece model; extension needs one "
                        "(`seqpt vocab train` writes unigram models).")
    langs = list(langs)
    for lang in langs:
        records.text_file(corpus, lang, "train")  # one clear error per missing language
    skipped = records.SkipCounter()
    lines, _ = _sample_lines(corpus, langs, alpha, max_chars, seed, skipped)
    skipped.report(f"{corpus} (vocabulary extension text)")
    known = {p.piece for p in base.pieces}
    normal = pb.ModelProto.SentencePiece.NORMAL
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        text = Path(tmp) / "train.txt"
        text.write_text("\n".join(lines) + "\n", "utf-8")
        # Room for the byte pieces and for pieces the old vocabulary already has.
        size = 2 * pieces + 256 + 3
        try:
            coverage = _fitting_coverage(lines, size, 0.9995)
        except UserError:
            raise UserError(f"--pieces {pieces} is too few for the characters of the "
                            f"{', '.join(langs)} text; add more pieces.") from None
        spm.SentencePieceTrainer.train(
            input=str(text), model_prefix=str(Path(tmp) / "sp"), vocab_size=size,
            model_type="unigram", character_coverage=coverage,
            byte_fallback=True, pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
            split_digits=True, hard_vocab_limit=False, input_sentence_size=0,
            max_sentence_length=16384, num_threads=threads, minloglevel=2)
        learned = _model_proto(Path(tmp) / "sp.model")
        fresh = sorted(((p.score, p.piece) for p in learned.pieces
                        if p.type == normal and p.piece not in known), reverse=True)[:pieces]
        if not fresh:
            raise UserError(f"the {', '.join(langs)} text adds no piece the vocabulary {old} "
                            "lacks; it already covers these languages.")
        old_scores = [p.score for p in base.pieces if p.type == normal]
        shift = float(np.median(old_scores) - np.median([s for s, _ in fresh]))
        for score, piece in fresh:
            added = base.pieces.add()
            added.piece, added.score, added.type = piece, score + shift, normal
        base.trainer_spec.vocab_size = len(base.pieces)
        merged = Path(tmp) / "merged.model"
        merged.write_bytes(base.SerializeToString())
        processor(merged)  # the merged proto loads
        shutil.move(str(merged), str(out))
    return load(out)
