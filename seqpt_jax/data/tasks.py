"""The project's seqio tasks and mixtures, and the parts a user's own seqio task reuses.

seqio's TaskRegistry / MixtureRegistry is the one registry. This module only adds to it:

  seqpt_local_<lang>_<objective>   the embedded corpus (`seqpt corpus build`); mixture
                                   seqpt_local_<objective>
  seqpt_mc4_<lang>_<objective>     mC4 via TFDS c4/multilingual; mixture seqpt_mc4_<objective>

Mixture rates are language-temperature rates (alpha 0.3, as mT5). The project's tasks need a
vocabulary (and a corpus dir / TFDS data dir), so `register_project_tasks(name, ...)` registers
the family a name belongs to when training asks for it; a user's module registers its own
tasks when imported (`MIXTURE_OR_TASK_MODULE`).

A user's task reuses `output_features(vocab_path)`, `text_line_to_targets` and `Objective`:

    seqio.TaskRegistry.add("my_span", source=seqio.TextLineDataSource({"train": "train.txt"}),
        preprocessors=[tasks.text_line_to_targets, seqio.preprocessors.tokenize,
                       tasks.Objective("span_corruption")],
        output_features=tasks.output_features("spm.model"))

`fast_specs(provider)` tells the trainer when a task or mixture is made only of embedded-corpus
tasks; those are fed by the numpy pipeline (`feeding`), every other one by seqio's tf.data
pipeline (`seqio_feed`). Either way the task is the seqio Task registered here.
"""

from __future__ import annotations

import functools
import importlib
import logging
from typing import Sequence

import numpy as np

from seqpt_jax import paths
from seqpt_jax.data import feeding, mixing, preprocessors, records, sources, vocab
from seqpt_jax.data.names import LOCAL, MC4_PREFIX, objective_of as _objective_of, task_name as _task_name
from seqpt_jax.data.tf_tempfiles import delete_autograph_sources, import_tensorflow
from seqpt_jax.errors import UserError

tf = import_tensorflow()  # before seqio, which imports it
import seqio  # noqa: E402

log = logging.getLogger(__name__)
MC4 = "c4/multilingual:3.1.0"


# ----- what a task is made of --------------------------------------------------------------------

def output_features(vocab_path, extra_ids: int | None = None) -> dict:
    """"inputs"/"targets" over the SentencePiece vocabulary at `vocab_path` (no EOS added: the
    objectives add their own)."""
    if isinstance(vocab_path, seqio.Vocabulary):
        voc = vocab_path
    else:  # seqio's own vocabulary over the same model file and sentinels as vocab.load's
        ours = vocab.load(vocab.model_path(vocab_path), extra_ids)
        voc = seqio.SentencePieceVocabulary(ours.sentencepiece_model_file, extra_ids=ours.extra_ids)
    return {k: seqio.Feature(voc, add_eos=False) for k in ("inputs", "targets")}


def text_line_to_targets(dataset):
    """seqio preprocessor for a TextLineDataSource: each non-empty line -> {"targets": line}."""
    return dataset.filter(lambda line: tf.strings.length(tf.strings.strip(line)) > 0).map(
        lambda line: {"targets": line}, num_parallel_calls=tf.data.AUTOTUNE)


@functools.lru_cache(maxsize=8)
def _token_info(model_file: str, extra_ids: int) -> vocab.TokenInfo:
    return vocab.token_info(model_file, extra_ids)


class Objective:
    """seqio preprocessor: a pre-training objective (`preprocessors.OBJECTIVES`) on the
    tokenized "targets". Each document is cut into windows of the raw length the objective
    needs for `sequence_length`, then each window becomes one example, seeded by seqio's
    per-example seeds (deterministic for a given dataset seed)."""

    def __init__(self, name: str, **options):
        preprocessors.objective(name, **options)  # an unknown name fails here, at registration
        self.name, self.options = name, dict(options)

    @property
    def encoder_only(self) -> bool:
        return self.name in preprocessors.ENCODER_OBJECTIVES

    def __repr__(self):
        return f"Objective({self.name!r}, **{self.options!r})"

    def __call__(self, dataset, sequence_length, output_features):
        voc = output_features["targets"].vocabulary
        info = _token_info(vocab.model_path(voc), getattr(voc, "extra_ids", vocab.EXTRA_IDS))
        feeding.check_sentinels(self.name, info, "seqio")
        fn = preprocessors.objective(self.name, **self.options)
        if sequence_length:
            n = feeding.raw_length(self.name, self.options, dict(sequence_length))
            dataset = dataset.flat_map(lambda ex: tf.data.Dataset.from_tensor_slices(_pieces(ex["targets"], n))
                                       .map(lambda ids: {"targets": ids}))
        keys = sorted(fn(np.arange(3, 40, dtype=np.int32), np.random.default_rng(0), info))

        def run(ids, seed):
            out = fn(ids, np.random.default_rng(seed.astype(np.int64) & 0x7FFFFFFF), info)
            return [out[k].astype(np.int32) for k in keys]

        @seqio.map_over_dataset(num_seeds=1)
        def apply(example, seed):
            values = tf.numpy_function(run, [example["targets"], seed], [tf.int32] * len(keys))
            return {k: tf.ensure_shape(v, [None]) for k, v in zip(keys, values)}

        return apply(dataset.filter(lambda ex: tf.size(ex["targets"]) > 0))


def _pieces(ids, n: int):
    """A document's token ids as consecutive pieces of at most n (a ragged [k, None])."""
    size = tf.size(ids, out_type=tf.int64)
    splits = tf.concat([tf.range(0, size, n, dtype=tf.int64), [size]], 0)
    return tf.RaggedTensor.from_row_splits(ids, splits)


class CorpusSource(seqio.FunctionDataSource):
    """The embedded corpus's text in one language: {"targets": document}. The numpy feed reads
    the same files (`corpus`, `lang`) directly."""

    def __init__(self, corpus, lang: str):
        self.corpus, self.lang = str(corpus), lang
        super().__init__(self._dataset, splits=records.SPLITS)

    def _dataset(self, split: str, shuffle_files: bool = False, seed=None):
        del shuffle_files, seed
        return tf.data.Dataset.from_generator(
            lambda: ({"targets": t} for t in records.read_texts(self.corpus, self.lang, split)),
            output_signature={"targets": tf.TensorSpec((), tf.string)})


# ----- registration ------------------------------------------------------------------------------

def _add_task(name: str, source, voc, objective: str, options: dict, first: Sequence = ()) -> None:
    delete_autograph_sources()  # its datasets' map functions leave no files in /tmp
    if name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(name, source=source, output_features=output_features(voc),
                           preprocessors=[*first, seqio.preprocessors.tokenize, Objective(objective, **options)])


def _add_mixture(name: str, rates: dict[str, float]) -> None:
    if name in seqio.MixtureRegistry.names():
        seqio.MixtureRegistry.remove(name)
    seqio.MixtureRegistry.add(name, list(rates.items()))


def register_local(corpus, vocab_path, langs: Sequence[str] | None = None,
                   objectives: Sequence[str] = ("mlm", "span_corruption"),
                   alpha: float = mixing.DEFAULT_ALPHA, options: dict | None = None) -> list[str]:
    """Per-language tasks and temperature mixtures over the embedded corpus; returns the mixtures.
    Re-registering replaces."""
    voc = output_features(vocab_path)["targets"].vocabulary  # one seqio vocabulary for every task
    langs = list(langs or records.languages(corpus))
    for lang in langs:
        records.text_file(corpus, lang, "train")
    rates = mixing.temperature_rates(records.mixing_sizes(corpus, langs), alpha)
    mixtures = []
    for objective in objectives:
        for lang in langs:
            _add_task(_task_name(LOCAL, lang, objective), CorpusSource(corpus, lang), voc, objective,
                      (options or {}).get(objective, {}))
        mixtures.append(LOCAL + objective)
        _add_mixture(mixtures[-1], {_task_name(LOCAL, l, objective): rates[l] for l in langs})
    return mixtures


def _mc4_split(lang: str, split: str) -> str:
    return lang if split == "train" else f"{lang}-validation"


def register_mc4(vocab_path, langs: Sequence[str] | None = None, sizes: dict[str, float] | None = None,
                 objectives: Sequence[str] = ("mlm", "span_corruption"),
                 alpha: float = mixing.DEFAULT_ALPHA, data_dir=None) -> list[str]:
    """mC4 tasks per language (default: every mC4 language) and temperature mixtures (rates from
    `sizes`, e.g. tokens per language; else TFDS's split sizes when prepared; else uniform)."""
    voc = output_features(vocab_path)["targets"].vocabulary  # one seqio vocabulary for every task
    langs = list(langs or mc4_languages())
    rates = mixing.temperature_rates(sizes or _tfds_sizes(langs, data_dir), alpha)
    rekey = functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"})
    mixtures = []
    for objective in objectives:
        for lang in langs:
            source = seqio.TfdsDataSource(
                tfds_name=MC4, tfds_data_dir=data_dir,
                splits={"train": _mc4_split(lang, "train"), "validation": _mc4_split(lang, "validation")})
            _add_task(_task_name(MC4_PREFIX, lang, objective), source, voc, objective, {}, first=[rekey])
        mixtures.append(MC4_PREFIX + objective)
        _add_mixture(mixtures[-1], {_task_name(MC4_PREFIX, l, objective): rates[l] for l in langs})
    return mixtures


def mc4_languages() -> list[str]:
    """The languages of TFDS's c4/multilingual (mC4 3.1.0)."""
    from tensorflow_datasets.text.c4 import MC4_LANGUAGES
    return list(MC4_LANGUAGES)


def _tfds_sizes(langs, data_dir) -> dict[str, float]:
    import tensorflow_datasets as tfds
    try:
        splits = tfds.builder(MC4, data_dir=data_dir).info.splits
        sizes = {lang: splits[lang].num_examples for lang in langs}
        if all(sizes.values()):
            return sizes
    except Exception:  # noqa: BLE001 - no prepared metadata: uniform rates, said once
        pass
    log.warning("mC4 split sizes are unknown under %s; mixing the %d languages uniformly",
                data_dir or "the default TFDS data dir", len(langs))
    return dict.fromkeys(langs, 1.0)


def register_project_tasks(name: str, vocab_path=None, corpus_dir=None, tfds_data_dir=None,
                           mc4_langs: Sequence[str] | None = None) -> None:
    """Registers the family of project tasks `name` belongs to (seqpt_local_* / seqpt_mc4_*)
    for this vocabulary; any other name is left to seqio (a user's module registers it)."""
    if not name.startswith((LOCAL, MC4_PREFIX)):
        return
    if not vocab_path:
        raise UserError(f"{name} needs the SentencePiece vocabulary; set --gin.VOCAB=... "
                        "(`seqpt vocab train` makes one).")
    local = name.startswith(LOCAL)
    _, objective = _objective_of(name, LOCAL if local else MC4_PREFIX)
    mixture = (LOCAL if local else MC4_PREFIX) + objective
    corpus_dir = corpus_dir or paths.corpus_dir()
    # The registration's arguments ride on the seqio mixture, so evaluation's calls reuse it.
    key = (str(vocab_path), str(corpus_dir), str(tfds_data_dir), tuple(mc4_langs or ()))
    if mixture in seqio.MixtureRegistry.names() and getattr(seqio.get_mixture_or_task(mixture),
                                                             "seqpt_key", None) == key:
        return
    if local:
        register_local(corpus_dir, vocab_path, objectives=(objective,))
    else:
        register_mc4(vocab_path, mc4_langs, objectives=(objective,), data_dir=tfds_data_dir)
    seqio.get_mixture_or_task(mixture).seqpt_key = key


def import_module(module: str | Sequence[str] | None) -> None:
    """Imports the user's task module(s), so their seqio tasks register."""
    for name in [module] if isinstance(module, str) else (module or ()):
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise UserError(f"MIXTURE_OR_TASK_MODULE {name!r} cannot be imported ({e}); put its folder on "
                            "PYTHONPATH or install it.") from None


def get(name: str):
    """The registered seqio Task or Mixture `name`, or a one-line UserError."""
    try:
        return seqio.get_mixture_or_task(name)
    except ValueError:
        known = sorted({*seqio.TaskRegistry.names(), *seqio.MixtureRegistry.names()})
        raise UserError(f"no seqio task or mixture {name!r} is registered; set MIXTURE_OR_TASK_MODULE to the "
                        f"module that registers it (known: {', '.join(known[:12]) or 'none'}"
                        f"{', ...' if len(known) > 12 else ''}).") from None


# ----- the fast feed's view of a task ------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _corpus_store(corpus: str, lang: str, split: str, model_file: str) -> sources.TokenStore:
    return sources.corpus_tokens(corpus, lang, split, model_file)


def _corpus_windows(corpus, lang, model_file, split, length, pack):
    return sources.Windows(_corpus_store(str(corpus), lang, split, model_file), length, pack)


def fast_specs(provider) -> list[tuple[feeding.TaskSpec, float]] | None:
    """(spec, rate) pairs when every task of `provider` is an embedded-corpus task with an
    `Objective`; None when seqio's own pipeline must feed it."""
    leaves = provider.tasks if isinstance(provider, seqio.Mixture) else [provider]
    out = []
    for task in leaves:
        objective = next((p for p in task.preprocessors if isinstance(p, Objective)), None)
        if not isinstance(task.source, CorpusSource) or objective is None:
            return None
        voc = task.output_features["targets"].vocabulary
        model_file, extra_ids = vocab.model_path(voc), getattr(voc, "extra_ids", vocab.EXTRA_IDS)
        spec = feeding.TaskSpec(
            task.name, feeding.ENCODER if objective.encoder_only else feeding.ENCDEC,
            functools.partial(_corpus_windows, task.source.corpus, task.source.lang, model_file),
            _token_info(model_file, extra_ids), objective.name, objective.options)
        out.append((spec, provider.get_rate(task) if isinstance(provider, seqio.Mixture) else 1.0))
    return out
