"""`extend_vocab`: a trained model reads a vocabulary with added pieces (new languages).

    params2, cfg2 = extend_vocab(params, cfg, "old.model", "new.model", method="mean")

Id layout (data/vocab.py): the old vocabulary's n pieces keep ids 0..n-1, the k added pieces
take n..n+k-1, and the 100 sentinels stay at the top, so each extra id moves from n+j to
n+k+j ([MASK], the lowest extra id, from n to n+k). Every vocabulary-sized tensor (the
parameters with a logical "vocab" axis: token embedding, untied `lm_head` / MLM output kernel,
MLM output bias) is rebuilt along that axis as

    W'[:n] = W[:n]        W'[n:n+k] = M W        W'[n+k:] = W[n:]

with M a [k, V] row-stochastic mix over old ids. "mean": M averages the old ids that the
added piece's string tokenizes into under the old vocabulary (OFA/FOCUS-style). "ngram":
M mixes the old pieces most similar to the added piece by character trigrams (cosine,
softmax at temperature 0.1 over the top 8), falling back to "mean" where no old piece
shares a trigram. "random": fresh rows with the old rows' standard deviation (biases: the
old mean) - the baseline that learns the new pieces from nothing. Under "mean" and "ngram",
a piece whose mix reads only byte-fallback pieces and "▁" (`uninformed`: an unseen script)
gets a fresh row too, since such means are nearly identical. Old rows are copied, so
every old piece's parameters are bit-identical and the model's logits over old ids are
unchanged on text written in old ids.
"""

from __future__ import annotations

import collections

import jax
import numpy as np

from seqpt_jax import models
from seqpt_jax.data import vocab as vocab_lib
from seqpt_jax.errors import UserError
from seqpt_jax.mappings import checks
from seqpt_jax.models import TransformerConfig

METHODS = ("mean", "ngram", "random")
_TOP, _TEMPERATURE = 8, 0.1


def _pieces(vocab) -> list[str]:
    sp = vocab_lib.processor(vocab_lib.model_path(vocab))
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def _ordinary(vocab) -> list[str]:
    """Pieces, with "" for pad/eos/unk and byte pieces (never similar to anything)."""
    sp = vocab_lib.processor(vocab_lib.model_path(vocab))
    return ["" if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i) else sp.id_to_piece(i)
            for i in range(sp.get_piece_size())]


def added_pieces(old_vocab, new_vocab) -> tuple[int, list[str]]:
    """(n old pieces, the added pieces in id order); a UserError unless `new` keeps every old
    piece at its id."""
    old, new = _pieces(old_vocab), _pieces(new_vocab)
    if new[:len(old)] != old:
        at = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), len(new))
        raise UserError(f"{vocab_lib.model_path(new_vocab)} does not extend "
                        f"{vocab_lib.model_path(old_vocab)} (piece {at} differs); "
                        "build it with `seqpt vocab extend`.")
    return len(old), new[len(old):]


def constituents(old_vocab, pieces: list[str]) -> list[list[int]]:
    """Old ids each piece's string tokenizes into (word-initial "▁" kept as a space)."""
    sp = vocab_lib.literal_processor(vocab_lib.model_path(old_vocab))
    return [sp.encode(p.replace(vocab_lib.WORD_START, " ")) for p in pieces]


def _trigrams(piece: str) -> collections.Counter:
    s = f"<{piece}>"
    return collections.Counter(s[i:i + 3] for i in range(len(s) - 2))


class _TrigramIndex:
    """Old pieces by character trigram, for cosine similarity without an all-pairs loop."""

    def __init__(self, pieces: list[str]):
        self.postings = collections.defaultdict(list)  # trigram -> [(old id, count)]
        self.norms = np.zeros(len(pieces))
        for i, p in enumerate(pieces):
            grams = _trigrams(p)
            self.norms[i] = np.sqrt(sum(v * v for v in grams.values()))
            for g, v in grams.items():
                self.postings[g].append((i, v))

    def similar(self, piece: str) -> dict[int, float]:
        """Old id -> softmax weight over the top old pieces by trigram cosine (empty if none)."""
        want = _trigrams(piece)
        dots = collections.defaultdict(float)
        for g, v in want.items():
            for i, c in self.postings.get(g, ()):
                dots[i] += v * c
        if not dots:
            return {}
        norm = np.sqrt(sum(v * v for v in want.values()))
        top = sorted(((d / (norm * self.norms[i]), i) for i, d in dots.items()), reverse=True)[:_TOP]
        w = np.exp((np.array([s for s, _ in top]) - top[0][0]) / _TEMPERATURE)
        return {i: float(x) for (_, i), x in zip(top, w / w.sum())}


def mix_matrix(old_vocab, new_vocab, vocab_size: int, method: str = "mean") -> np.ndarray:
    """[k, vocab_size] row-stochastic weights of each added piece over the old ids ("random":
    uniform over the old ordinary pieces, used only for biases)."""
    n, added = added_pieces(old_vocab, new_vocab)
    m = np.zeros((len(added), vocab_size), np.float64)
    if method == "random":
        m[:, vocab_lib.UNK_ID + 1:n] = 1.0 / (n - vocab_lib.UNK_ID - 1)
        return m
    index = _TrigramIndex(_ordinary(old_vocab)) if method == "ngram" else None
    for row, (piece, ids) in enumerate(zip(added, constituents(old_vocab, added))):
        weights = index.similar(piece) if method == "ngram" else {}
        if weights:
            for i, w in weights.items():
                m[row, i] = w
        elif ids:
            for i in ids:  # a repeated constituent counts once per occurrence
                m[row, i] += 1.0 / len(ids)
        else:  # nothing to read (not seen for a non-empty piece): the mean old piece
            m[row, vocab_lib.UNK_ID + 1:n] = 1.0 / (n - vocab_lib.UNK_ID - 1)
    return m


def _vocab_leaves(params, cfg: TransformerConfig) -> dict:
    """Flat path -> vocab axis index of each leaf with a logical "vocab" axis."""
    kind = checks.model_kind(params)
    flat = checks.flat(params)
    if kind == "encoder_decoder":
        model = models.EncoderDecoder(cfg, encoder_mlm_head=any(p[0] == "mlm_head" for p in flat))
    else:
        model = models.build(kind, cfg)
    names = checks.flat(models.logical_axes(model))
    out = {path: tuple(spec).index("vocab") for path, spec in names.items() if "vocab" in tuple(spec)}
    missing = sorted("/".join(p) for p in out if p not in flat)
    if missing:
        raise UserError(f"params lack {missing[0]}, which a {kind} with this config has; "
                        "pass the config the params were trained with.")
    return out


def uninformed(old_vocab, m: np.ndarray) -> np.ndarray:
    """[k] bool: rows of `m` that read only byte-fallback pieces and the bare "▁". For a script
    the old vocabulary never saw, every added piece is such a mix, and those means are nearly
    identical (Greek: cosine 0.93 between added rows), so they get fresh random rows instead."""
    pieces = _ordinary(old_vocab)
    informative = np.zeros(m.shape[1], bool)
    informative[:len(pieces)] = [p not in ("", vocab_lib.WORD_START) for p in pieces]
    return m[:, informative].sum(1) == 0


def _grow_axis(x: np.ndarray, axis: int, n: int, m: np.ndarray, fresh: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
    """`x` with k new entries inserted at index n of `axis` (see the module docstring)."""
    x = np.asarray(x)
    moved = np.moveaxis(x, axis, 0)
    flat = moved.reshape(moved.shape[0], -1)
    rows = m @ flat.astype(np.float64)
    if flat.shape[1] > 1:  # fresh rows of tables and kernels; a bias keeps its (mean) mix
        old = flat[vocab_lib.UNK_ID + 1:n].astype(np.float64)
        rows[fresh] = rng.normal(0.0, old.std(), (int(fresh.sum()), flat.shape[1]))
    rows = rows.astype(x.dtype).reshape((m.shape[0],) + moved.shape[1:])
    grown = np.concatenate([moved[:n], rows, moved[n:]], axis=0)
    return np.moveaxis(grown, 0, axis)


def extend_vocab(params, cfg: TransformerConfig, old_vocab, new_vocab, method: str = "mean",
                 seed: int = 0) -> tuple[dict, TransformerConfig]:
    """(params, config) of the model on `new_vocab`, which extends `old_vocab` (paths or seqio
    vocabularies). `cfg.vocab_size` must equal the old vocabulary's size with its sentinels.
    `seed` draws the fresh rows (method "random", and pieces `uninformed` by the old vocabulary)."""
    if method not in METHODS:
        raise UserError(f"method={method!r} is unknown; use one of {', '.join(METHODS)}.")
    old_size = vocab_lib.token_info(old_vocab).vocab_size
    if cfg.vocab_size != old_size:
        raise UserError(f"the model has vocab_size {cfg.vocab_size} but {vocab_lib.model_path(old_vocab)} "
                        f"gives {old_size} ids; pass the vocabulary the model was trained with.")
    n, added = added_pieces(old_vocab, new_vocab)
    axes = _vocab_leaves(params, cfg)
    flat = checks.flat(jax.tree.map(np.asarray, params))
    for path, axis in axes.items():
        if flat[path].shape[axis] != cfg.vocab_size:
            raise UserError(f"param {'/'.join(path)} has {flat[path].shape[axis]} vocabulary rows but "
                            f"the config says {cfg.vocab_size}; pass the config the params were trained with.")
    m = mix_matrix(old_vocab, new_vocab, cfg.vocab_size, method)
    fresh = np.ones(len(added), bool) if method == "random" else uninformed(old_vocab, m)
    m[fresh] = mix_matrix(old_vocab, new_vocab, cfg.vocab_size, "random")[fresh]  # biases: old mean
    rng = np.random.default_rng(seed)
    for path, axis in sorted(axes.items()):
        flat[path] = _grow_axis(flat[path], axis, n, m, fresh, rng)
    return checks.unflat(flat), cfg.replace(vocab_size=cfg.vocab_size + len(added))


__all__ = ["METHODS", "added_pieces", "constituents", "extend_vocab", "mix_matrix", "uninformed"]
