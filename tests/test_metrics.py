"""Metrics agree with the reference implementations (seqeval, scikit-learn's definition, sacrebleu)."""

import random

import pytest
import sacrebleu
from seqeval import metrics as seqeval_metrics

from seqpt_jax.evaluate import metrics

TRICKY = [
    # (gold, predicted) per sentence.
    (["B-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"]),
    (["I-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"]),            # I- with no B- opens a chunk
    (["B-PER", "I-LOC", "O"], ["B-PER", "I-PER", "O"]),            # type change inside a chunk
    (["B-PER", "B-PER", "I-PER"], ["B-PER", "I-PER", "I-PER"]),    # B- right after a chunk
    (["O", "B-ORG", "I-ORG"], ["O", "B-ORG", "O"]),                # truncated span
    (["I-LOC"], ["B-LOC"]),
    (["B-MISC", "I-MISC", "I-MISC", "I-MISC"], ["I-MISC", "I-MISC", "O", "I-MISC"]),
    (["O", "O", "O"], ["B-X", "O", "I-Y"]),                        # spurious predictions
    (["S-PER", "B-LOC", "E-LOC"], ["S-PER", "B-LOC", "I-LOC"]),    # IOBES
    (["B-LOC", "E-LOC", "I-LOC"], ["B-LOC", "E-LOC", "E-LOC"]),
    (["B-A-B", "I-A-B", "O"], ["B-A-B", "I-A", "O"]),              # a '-' inside the type
]


def _ours_and_seqeval(gold, pred):
    ours = metrics.span_f1(gold, pred)
    ref = {"precision": seqeval_metrics.precision_score(gold, pred, zero_division=0),
           "recall": seqeval_metrics.recall_score(gold, pred, zero_division=0),
           "f1": seqeval_metrics.f1_score(gold, pred, zero_division=0)}
    return ours, ref


@pytest.mark.parametrize("gold,pred", TRICKY)
def test_span_f1_matches_seqeval_per_case(gold, pred):
    ours, ref = _ours_and_seqeval([gold], [pred])
    for k in ref:
        assert ours[k] == pytest.approx(ref[k]), (k, gold, pred)


def test_span_f1_matches_seqeval_on_corpus_and_random_tags():
    gold = [g for g, _ in TRICKY]
    pred = [p for _, p in TRICKY]
    ours, ref = _ours_and_seqeval(gold, pred)
    assert 0 < ours["f1"] < 1
    for k in ref:
        assert ours[k] == pytest.approx(ref[k])
    rng = random.Random(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "E-LOC", "S-PER"]
    gold = [[rng.choice(tags) for _ in range(rng.randint(1, 9))] for _ in range(200)]
    pred = [[rng.choice(tags) if rng.random() < 0.4 else t for t in s] for s in gold]
    ours, ref = _ours_and_seqeval(gold, pred)
    for k in ref:
        assert ours[k] == pytest.approx(ref[k])


def test_spans_reads_chunks():
    assert metrics.spans(["I-PER", "I-PER", "O", "B-LOC", "I-ORG"]) == [
        ("PER", 0, 1), ("LOC", 3, 3), ("ORG", 4, 4)]


def test_classification_metrics():
    labels = ["a", "a", "b", "c"]
    preds = ["a", "b", "b", "a"]
    assert metrics.accuracy(preds, labels) == 0.5
    # per-class F1: a = 2*1/(2+2) = .5, b = 2*1/(2+1) = 2/3, c = 0
    assert metrics.macro_f1(preds, labels) == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    with pytest.raises(ValueError):
        metrics.accuracy(["a"], labels)


def test_token_accuracy_and_exact_match():
    assert metrics.token_accuracy([["N", "V"], ["D"]], [["N", "N"], ["D"]]) == pytest.approx(2 / 3)
    assert metrics.exact_match([" a b", "c"], ["a b", "d"]) == 0.5
    assert metrics.is_bio({"O", "B-X", "I-X"}) and not metrics.is_bio({"NOUN", "VERB"})


def test_bleu_and_chrf_are_sacrebleu():
    hyp = ["the cat sat on the mat", "a dog"]
    ref = ["the cat sat on a mat", "the dog"]
    assert metrics.bleu(hyp, ref) == pytest.approx(sacrebleu.corpus_bleu(hyp, [ref]).score)
    assert metrics.chrf(hyp, ref) == pytest.approx(sacrebleu.corpus_chrf(hyp, [ref]).score)
    assert metrics.bleu(ref, ref) == pytest.approx(100.0)
    # Unsegmented scripts are scored on characters, not on whole lines.
    assert metrics.bleu(["猫が座った"], ["猫が座る"], lang="ja") > 0
