"""Pre-training objectives: deterministic per-example functions over numpy token ids.

Every objective is `fn(ids, rng, info, **options) -> dict[str, np.ndarray]`: `ids` is a 1-D
int array of one example (no padding), `rng` a `np.random.Generator` (the caller derives it
from (seed, step, row), so the same seed gives the same example and every step a new mask),
`info` the vocabulary's `TokenInfo`. Numpy keeps them fast (tens of microseconds per 512
tokens) and testable without TensorFlow; `tasks.Objective` runs any of them as a seqio
preprocessor.

Objectives:
  mlm               BERT masking: token / whole-word units, optional SpanBERT geometric spans,
                    80/10/10 mask/random/keep.  -> inputs, targets (original), weights
  span_corruption   T5: noise density 0.15, mean span 3, sentinels from the top id down.
                    -> inputs, targets
  span_corruption_masked  span corruption whose encoder input is additionally MLM-masked
                    (seq2seq -> encoder extraction). -> inputs, targets, mlm_targets, mlm_weights
  prefix_lm, causal_lm    for objective mixes.  -> inputs, targets
  electra_mlm       ELECTRA's generator input (Clark et al. 2020): mlm with 85/0/15
                    mask/random/keep (the paper's code: no random replacement).
ELECTRA's replaced-token detection needs only the generator's MLM inputs; the replacement by
the generator's samples happens in the train step.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from seqpt_jax.data.vocab import TokenInfo
from seqpt_jax.errors import UserError


def _units(ids: np.ndarray, info: TokenInfo, whole_word: bool) -> tuple[np.ndarray, np.ndarray]:
    """(unit index per position or -1 for special tokens, tokens per unit).

    A unit is one token, or with `whole_word` one word: a piece beginning with "▁" (or
    following a special token) and the pieces after it up to the next such piece.
    """
    maskable = ~info.special[ids]
    if whole_word:
        after_special = np.concatenate([[True], ~maskable[:-1]])
        starts = maskable & (info.word_start[ids] | after_special)
    else:
        starts = maskable
    unit = np.where(maskable, np.cumsum(starts) - 1, -1)
    return unit, np.bincount(unit[maskable], minlength=int(starts.sum()))


def _pick_units(rng: np.random.Generator, lengths: np.ndarray, budget: int) -> np.ndarray:
    """Units in random order, skipping any that would overshoot the budget (as BERT does)."""
    chosen = np.zeros(len(lengths), bool)
    if (lengths == 1).all():
        chosen[rng.permutation(len(lengths))[:budget]] = True
        return chosen
    left = budget
    for u in rng.permutation(len(lengths)):
        if lengths[u] <= left:
            chosen[u] = True
            left -= lengths[u]
            if left == 0:
                break
    return chosen


def span_length_probs(p: float, max_span: int) -> np.ndarray:
    """SpanBERT's span length distribution over 1..max_span: Geometric(p) clipped to max_span
    and renormalised, P(l) = p (1-p)^(l-1) / sum_k p (1-p)^(k-1) (p=0.2, 10: mean 3.8)."""
    probs = p * (1 - p) ** np.arange(max_span)
    return probs / probs.sum()


def _pick_spans(rng: np.random.Generator, lengths: np.ndarray, budget: int, p: float,
                max_span: int) -> np.ndarray:
    """SpanBERT spans over units: span id per unit (-1 = not selected).

    Span lengths (in units) are drawn from `span_length_probs` up front, then placed at
    uniformly random positions with at least one unselected unit between spans, so every
    selected run is exactly one span. Spans are then taken in random order until the token
    budget is spent; the span that would overshoot is cut to the units that fit (so only that
    one span is shorter than drawn). Draws continue 25% past the budget (in mean tokens per
    unit) so that budget-cutting, not a lack of spans, ends the selection.
    """
    n, span_of = len(lengths), np.full(len(lengths), -1, np.int32)
    if n == 0 or budget <= 0:
        return span_of
    target = 1.25 * budget * n / max(int(lengths.sum()), 1)
    draws = rng.choice(max_span, int(np.ceil(target)) + 1, p=span_length_probs(p, max_span)) + 1
    drawn: list[int] = []
    for length in draws.tolist():
        room = n - sum(drawn) - len(drawn)  # units left once a gap follows every span so far
        if sum(drawn) >= target or room <= 0:
            break
        drawn.append(min(length, room))
    k, sizes = len(drawn), np.asarray(drawn, np.int64)
    # Uniform placement of k spans with gaps >= 1 between them: of `free` spare units and the
    # k spans, choose which k of the free + k items are spans; the rest are gap fillers.
    free = n - int(sizes.sum()) - (k - 1)
    slots = np.sort(rng.choice(free + k, k, replace=False))
    starts = slots - np.arange(k) + np.concatenate([[0], np.cumsum(sizes[:-1] + 1)]).astype(np.int64)
    left = budget
    for s in rng.permutation(k).tolist():
        start = int(starts[s])
        cost = np.cumsum(lengths[start:start + drawn[s]])
        take = int(np.searchsorted(cost, left, side="right"))  # units of this span that fit
        if take:
            span_of[start:start + take] = s
            left -= int(cost[take - 1])
        if left <= 0:
            break
    return span_of


def mlm(ids: np.ndarray, rng: np.random.Generator, info: TokenInfo, *, rate: float = 0.15,
        mask_prob: float = 0.8, random_prob: float = 0.1, whole_word: bool = False,
        spans: bool = False, span_p: float = 0.2, max_span: int = 10) -> dict[str, np.ndarray]:
    """BERT masked LM: select `rate` of the maskable tokens (by units), then replace each
    selected token with [MASK] (mask_prob), a random ordinary id (random_prob) or keep it.

    With `spans`, units are grouped into SpanBERT spans (lengths from `span_length_probs`:
    geometric p=span_p clipped to max_span units and renormalised; in words when whole_word),
    and the mask/random/keep choice is made once per span. Special tokens (eos, sentinels) are
    never selected.
    """
    if not (0 <= rate <= 1 and mask_prob >= 0 and random_prob >= 0 and mask_prob + random_prob <= 1):
        raise UserError(f"MLM rates must be probabilities with mask+random <= 1; got rate={rate}, "
                        f"mask={mask_prob}, random={random_prob}.")
    ids = np.asarray(ids, np.int32)
    unit, lengths = _units(ids, info, whole_word)
    n = int(lengths.sum())
    budget = max(1, int(round(n * rate))) if n and rate > 0 else 0
    if spans:
        span_of = _pick_spans(rng, lengths, budget, span_p, max_span)
        chosen = span_of >= 0
    else:
        chosen = _pick_units(rng, lengths, budget)
    selected = (unit >= 0) & chosen[np.maximum(unit, 0)]
    if spans:  # SpanBERT: one mask/random/keep choice per span, shared by its tokens
        u = rng.random(int(span_of.max()) + 2)[span_of[np.maximum(unit, 0)]]
    else:
        u = rng.random(len(ids))
    lo, hi = info.random_range
    randoms = rng.integers(lo, hi, len(ids), dtype=np.int32)
    inputs = np.where(selected & (u < mask_prob), np.int32(info.mask_id), ids)
    inputs = np.where(selected & (u >= mask_prob) & (u < mask_prob + random_prob), randoms, inputs)
    return {"inputs": inputs.astype(np.int32), "targets": ids, "weights": selected.astype(np.int32)}


def span_corruption_lengths(inputs_length: int, noise_density: float = 0.15,
                            mean_span: float = 3.0) -> tuple[int, int]:
    """(raw tokens per example, targets length) so span corruption yields exactly
    `inputs_length` inputs (with EOS) — T5's random_spans_helper; 512 -> (568, 114)."""

    def lengths(tokens: int) -> tuple[int, int]:
        noise = int(round(tokens * noise_density))
        spans = max(int(round(noise / mean_span)), 1)
        return tokens - noise + spans + 1, noise + spans + 1

    tokens = inputs_length - 1
    while lengths(tokens + 1)[0] <= inputs_length:
        tokens += 1
    _, targets = lengths(tokens)
    return tokens, targets


def _segments(rng: np.random.Generator, items: int, segments: int) -> np.ndarray:
    """A random partition of `items` into `segments` non-empty parts (their lengths)."""
    cuts = np.zeros(items - 1, bool)
    cuts[:segments - 1] = True
    rng.shuffle(cuts)
    return np.bincount(np.cumsum(np.concatenate([[False], cuts])), minlength=segments)


def noise_mask(length: int, rng: np.random.Generator, noise_density: float = 0.15,
               mean_span: float = 3.0, max_spans: int = 99) -> np.ndarray:
    """T5's random_spans_noise_mask: noise spans interleaved with non-noise spans, the
    sequence starting with non-noise; lengths are random partitions (mean `mean_span`)."""
    if length < 2:
        return np.zeros(length, bool)
    noise = min(max(int(round(length * noise_density)), 1), length - 1)
    spans = max(int(round(noise / mean_span)), 1)
    spans = min(spans, noise, length - noise)
    if spans > max_spans:
        raise UserError(f"{length} tokens need {spans} noise spans but the vocabulary has only "
                        f"{max_spans} sentinels; use shorter inputs or a larger mean span.")
    interleaved = np.stack([_segments(rng, length - noise, spans),
                            _segments(rng, noise, spans)], axis=1).reshape(-1)
    starts = np.zeros(length, np.int32)
    starts[np.cumsum(interleaved)[:-1]] = 1
    return np.cumsum(starts) % 2 == 1


def _replace_spans(ids: np.ndarray, mask: np.ndarray, info: TokenInfo) -> np.ndarray:
    """Each run of masked tokens becomes one sentinel (the k-th run: info.sentinel(k)); EOS added."""
    first = mask & ~np.concatenate([[False], mask[:-1]])
    sentinels = info.vocab_size - np.cumsum(first)  # run k -> vocab_size - 1 - k
    out = np.where(first, sentinels, ids)[~(mask & ~first)]
    return np.append(out, info.eos_id).astype(np.int32)


def span_corruption(ids: np.ndarray, rng: np.random.Generator, info: TokenInfo, *,
                    noise_density: float = 0.15, mean_span: float = 3.0) -> dict[str, np.ndarray]:
    """T5 span corruption: inputs keep the non-noise tokens with one sentinel per noise span;
    targets list each span's sentinel followed by its tokens. Both end with EOS."""
    ids = np.asarray(ids, np.int32)
    mask = noise_mask(len(ids), rng, noise_density, mean_span, info.max_spans)
    return {"inputs": _replace_spans(ids, mask, info), "targets": _replace_spans(ids, ~mask, info)}


def span_corruption_masked(ids: np.ndarray, rng: np.random.Generator, info: TokenInfo, *,
                           noise_density: float = 0.15, mean_span: float = 3.0,
                           mask_rate: float = 0.15, mask_prob: float = 0.8,
                           random_prob: float = 0.1) -> dict[str, np.ndarray]:
    """Span corruption whose encoder input is also MLM-masked, so the encoder learns to
    restore corrupted tokens (the variant for seq2seq -> encoder extraction). The extra
    `mlm_targets`/`mlm_weights` (aligned with inputs) allow an encoder-side MLM loss too."""
    out = span_corruption(ids, rng, info, noise_density=noise_density, mean_span=mean_span)
    masked = mlm(out["inputs"], rng, info, rate=mask_rate, mask_prob=mask_prob,
                 random_prob=random_prob)
    return {"inputs": masked["inputs"], "targets": out["targets"],
            "mlm_targets": masked["targets"], "mlm_weights": masked["weights"]}


def prefix_lm(ids: np.ndarray, rng: np.random.Generator, info: TokenInfo) -> dict[str, np.ndarray]:
    """Prefix LM: a uniformly random split; inputs are the prefix, targets the rest (+EOS)."""
    ids = np.asarray(ids, np.int32)
    cut = int(rng.integers(1, len(ids))) if len(ids) > 1 else len(ids)
    return {"inputs": np.append(ids[:cut], info.eos_id).astype(np.int32),
            "targets": np.append(ids[cut:], info.eos_id).astype(np.int32)}


def causal_lm(ids: np.ndarray, rng: np.random.Generator, info: TokenInfo) -> dict[str, np.ndarray]:
    """Causal LM in the seq2seq format: the encoder sees only EOS, the decoder predicts all."""
    del rng
    ids = np.asarray(ids, np.int32)
    return {"inputs": np.array([info.eos_id], np.int32),
            "targets": np.append(ids, info.eos_id).astype(np.int32)}


OBJECTIVES: dict[str, Callable[..., dict]] = {
    "mlm": mlm,
    "wwm": functools.partial(mlm, whole_word=True),
    "span_mlm": functools.partial(mlm, whole_word=True, spans=True),
    "electra_mlm": functools.partial(mlm, mask_prob=0.85, random_prob=0.0),
    "span_corruption": span_corruption,
    "span_corruption_masked": span_corruption_masked,
    "prefix_lm": prefix_lm,
    "causal_lm": causal_lm,
}
ENCODER_OBJECTIVES = ("mlm", "wwm", "span_mlm", "electra_mlm")


def objective(name: str, **options) -> Callable[..., dict]:
    """An objective by name with options bound, e.g. objective("mlm", rate=0.2)."""
    if name not in OBJECTIVES:
        raise UserError(f"unknown objective {name!r}; use one of {', '.join(OBJECTIVES)}.")
    return functools.partial(OBJECTIVES[name], **options) if options else OBJECTIVES[name]


def example_rng(seed: int, step: int, row: int) -> np.random.Generator:
    """The generator of one example: a pure function of (seed, step, global row)."""
    return np.random.default_rng([seed, step, row])
