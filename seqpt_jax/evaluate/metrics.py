"""Downstream metrics: classification, sequence labeling, generation.

Pure Python over lists of labels or strings, so they score any model's outputs. Span F1
follows seqeval's default (conlleval) chunking; BLEU and chrF go through sacrebleu so the
numbers are the ones papers report.
"""

from __future__ import annotations

from typing import Hashable, Sequence

# ---------------------------------------------------------------------------- classification


def accuracy(predictions: Sequence[Hashable], labels: Sequence[Hashable]) -> float:
    _same_length(predictions, labels)
    return sum(p == t for p, t in zip(predictions, labels)) / max(len(labels), 1)


def macro_f1(predictions: Sequence[Hashable], labels: Sequence[Hashable]) -> float:
    """Unweighted mean of per-class F1 over every class seen in labels or predictions
    (scikit-learn's `f1_score(average="macro")`)."""
    _same_length(predictions, labels)
    classes = set(labels) | set(predictions)
    if not classes:
        return 0.0
    scores = []
    for c in classes:
        tp = sum(p == c and t == c for p, t in zip(predictions, labels))
        fp = sum(p == c and t != c for p, t in zip(predictions, labels))
        fn = sum(p != c and t == c for p, t in zip(predictions, labels))
        scores.append(_f1(tp, tp + fp, tp + fn))
    return sum(scores) / len(scores)


# ---------------------------------------------------------------------------- sequence labeling


def _split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'), 'O' -> ('O', '_'): the prefix is the first character and the
    type what follows the first '-', exactly as seqeval (and conlleval) read a tag."""
    return tag[:1] or "O", tag[1:].split("-", maxsplit=1)[-1] or "_"


def _ends(prev: str, cur: str, prev_kind: str, kind: str) -> bool:
    """conlleval's endOfChunk: does the chunk open before this token end here?"""
    if prev in ("E", "S"):
        return True
    if prev in ("B", "I") and cur in ("B", "S", "O"):
        return True
    return prev not in ("O", ".") and prev_kind != kind


def _starts(prev: str, cur: str, prev_kind: str, kind: str) -> bool:
    """conlleval's startOfChunk: an I- after O or after another type opens a chunk too."""
    if cur in ("B", "S"):
        return True
    if prev in ("E", "S", "O") and cur in ("E", "I"):
        return True
    return cur not in ("O", ".") and prev_kind != kind


def spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Chunks of one sentence as (type, first, last) with conlleval's rules (IOB1/IOB2/IOBES)."""
    out, prev, prev_kind, start = [], "O", "_", 0
    for i, tag in enumerate(list(tags) + ["O"]):
        cur, kind = _split_tag(tag)
        if _ends(prev, cur, prev_kind, kind):
            out.append((prev_kind, start, i - 1))
        if _starts(prev, cur, prev_kind, kind):
            start = i
        prev, prev_kind = cur, kind
    return out


def span_f1(labels: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> dict:
    """Micro precision / recall / F1 over exact (type, start, end) chunks, per sentence."""
    _same_length(predictions, labels)
    correct = n_pred = n_true = 0
    per_type: dict[str, list[int]] = {}
    for t_tags, p_tags in zip(labels, predictions):
        _same_length(p_tags, t_tags)
        t_spans, p_spans = set(spans(t_tags)), set(spans(p_tags))
        correct += len(t_spans & p_spans)
        n_pred += len(p_spans)
        n_true += len(t_spans)
        for kind, *_ in t_spans | p_spans:
            per_type.setdefault(kind, [0, 0, 0])
        for s in t_spans & p_spans:
            per_type[s[0]][0] += 1
        for s in p_spans:
            per_type[s[0]][1] += 1
        for s in t_spans:
            per_type[s[0]][2] += 1
    p, r = _ratio(correct, n_pred), _ratio(correct, n_true)
    return {"precision": p, "recall": r, "f1": _f1(correct, n_pred, n_true),
            "per_type": {k: _f1(*v) for k, v in sorted(per_type.items())}}


def token_accuracy(labels: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> float:
    _same_length(predictions, labels)
    total = correct = 0
    for t_tags, p_tags in zip(labels, predictions):
        _same_length(p_tags, t_tags)
        total += len(t_tags)
        correct += sum(p == t for p, t in zip(p_tags, t_tags))
    return _ratio(correct, total)


def is_bio(tag_set) -> bool:
    """True when every tag is O or carries a B-/I-/E-/S- prefix with a type."""
    return any(t != "O" for t in tag_set) and all(
        t == "O" or (t[:2] in ("B-", "I-", "E-", "S-") and len(t) > 2) for t in tag_set)


# ---------------------------------------------------------------------------- generation


def bleu_tokenizer(lang: str | None) -> str:
    """sacrebleu's tokenizer for a target language: words are not space-separated in CJK/Thai."""
    lang = (lang or "").split("_")[0].split("-")[0].lower()
    if lang == "zh":
        return "zh"
    if lang in ("ja", "ko", "th", "my", "km", "lo"):
        return "char"
    return "13a"


def bleu(hypotheses: Sequence[str], references: Sequence[str], lang: str | None = None) -> float:
    import sacrebleu
    _same_length(hypotheses, references)
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)],
                                       tokenize=bleu_tokenizer(lang)).score)


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    import sacrebleu
    _same_length(hypotheses, references)
    return float(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score)


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Share of outputs equal to the reference after stripping outer whitespace."""
    _same_length(hypotheses, references)
    return _ratio(sum(h.strip() == r.strip() for h, r in zip(hypotheses, references)), len(references))


# ---------------------------------------------------------------------------- helpers


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def _f1(tp: int, n_pred: int, n_true: int) -> float:
    return 2 * tp / (n_pred + n_true) if n_pred + n_true else 0.0


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"predictions and labels differ in length: {len(a)} vs {len(b)}")

