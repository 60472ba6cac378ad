"""seqio tasks and mixtures, and the TaskSpec registry `feeding.make_pipeline` resolves.

Every `register_*` function is idempotent (re-registering replaces) and registers each task
twice over: as a seqio Task (so `seqio.get_mixture_or_task(name).get_dataset(...)` works for
seqio users, one document -> one example) and as a `feeding.TaskSpec` under the same name
(the fast path: packed windows, numpy objectives, exact resume).

Names:
  seqpt_local_<lang>_<objective>   the embedded corpus; mixture seqpt_local_<objective>
  seqpt_mc4_<lang>_<objective>     mC4 via TFDS c4/multilingual; mixture seqpt_mc4_<objective>
  seqpt_section_<lang>, seqpt_ui_tagging_<lang>, seqpt_translate_en_<lang>, seqpt_synopsis_<lang>
  seqpt_xnli_<lang>, seqpt_wikiann_<lang>                      (TFDS xnli, wikiann)
Mixture rates are language-temperature rates (alpha 0.3, as mT5) from the data's sizes.
"""

from __future__ import annotations

import functools
from typing import Callable, Iterable, Iterator, Sequence


from seqpt_jax.data import feeding, mixing, preprocessors, records, sources, vocab
from seqpt_jax.errors import UserError

SPECS: dict[str, feeding.TaskSpec] = {}
MIXTURES: dict[str, list[tuple[str, float]]] = {}
LABELS: dict[str, list[str]] = {}  # class / tag names of the classification and tagging tasks
MC4 = "c4/multilingual:3.1.0"
WIKIANN_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
XNLI_LABELS = ["entailment", "neutral", "contradiction"]


def resolve(name: str) -> list[tuple[feeding.TaskSpec, float]]:
    """A mixture's (spec, rate) pairs, or [(spec, 1.0)] for a task."""
    if name in MIXTURES:
        return [(SPECS[t], rate) for t, rate in MIXTURES[name]]
    if name in SPECS:
        return [(SPECS[name], 1.0)]
    raise UserError(f"unknown task or mixture {name!r}; register it first (tasks.register_local("
                    f"corpus, vocab) and friends); known: {', '.join(sorted({*SPECS, *MIXTURES})) or 'none'}.")


# ----- seqio registration ---------------------------------------------------------------------

def _string_dataset(examples: Callable[[str], Iterable[dict]], keys: Sequence[str]):
    """A seqio dataset_fn over a Python generator of string examples."""
    import tensorflow as tf

    def dataset_fn(split: str, shuffle_files: bool = False, seed=None):
        del shuffle_files, seed
        return tf.data.Dataset.from_generator(
            lambda: ({k: ex[k] for k in keys} for ex in examples(split)),
            output_signature={k: tf.TensorSpec((), tf.string) for k in keys})
    return dataset_fn


def _truncate_for(objective: str, options: dict):
    """seqio preprocessor: cut each document to the window its objective needs."""
    def truncate(dataset, sequence_length=None, output_features=None):
        del output_features
        if not sequence_length:
            return dataset
        n = feeding.raw_length(objective, options, dict(sequence_length))
        return dataset.map(lambda ex: {**ex, "targets": ex["targets"][:n]})
    return truncate


def _add_seqio_task(name: str, source, voc, preprocessors_: list, add_eos: bool) -> None:
    import seqio

    from seqpt_jax.data.tf_tempfiles import delete_autograph_sources
    delete_autograph_sources()  # its datasets' map functions leave no files in /tmp
    if name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)
    features = {k: seqio.Feature(voc, add_eos=add_eos) for k in ("inputs", "targets")}
    seqio.TaskRegistry.add(name, source=source, output_features=features,
                           preprocessors=preprocessors_)


def _add_mixture(name: str, rates: dict[str, float]) -> None:
    import seqio
    if name in seqio.MixtureRegistry.names():
        seqio.MixtureRegistry.remove(name)
    seqio.MixtureRegistry.add(name, list(rates.items()))
    MIXTURES[name] = list(rates.items())


def _objective_steps(objective: str, options: dict, info: vocab.TokenInfo, first: Sequence = ()) -> list:
    import seqio
    fn = preprocessors.objective(objective, **options)
    return [*first, seqio.preprocessors.tokenize, _truncate_for(objective, options),
            preprocessors.as_seqio(fn, info)]


def _register_pretraining(name: str, voc, info, objective: str, options: dict, seqio_source,
                          source: Callable, streamed: bool, first: Sequence = ()) -> None:
    kind = feeding.ENCODER if objective in preprocessors.ENCODER_OBJECTIVES else feeding.ENCDEC
    _add_seqio_task(name, seqio_source, voc, _objective_steps(objective, options, info, first),
                    add_eos=False)
    SPECS[name] = feeding.TaskSpec(name, kind, source, info, objective, dict(options), streamed)


# ----- the embedded corpus ----------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _corpus_store(corpus: str, lang: str, split: str, model_file: str) -> sources.TokenStore:
    return sources.corpus_tokens(corpus, lang, split, model_file)


def _corpus_windows(corpus, lang, model_file, split, length, pack):
    return sources.Windows(_corpus_store(str(corpus), lang, split, model_file), length, pack)


def register_local(corpus, vocab_path, langs: Sequence[str] | None = None,
                   objectives: Sequence[str] = ("mlm", "span_corruption"),
                   alpha: float = mixing.DEFAULT_ALPHA, options: dict | None = None) -> list[str]:
    """Per-language tasks and temperature mixtures over the embedded corpus; returns the mixtures."""
    voc = vocab.load(vocab_path)
    info = vocab.token_info(voc)
    model_file = vocab.model_path(voc)
    langs = list(langs or records.languages(corpus))
    for lang in langs:
        records.text_file(corpus, lang, "train")
    stats = records.corpus_stats(corpus)
    sizes = {lang: stats.get(lang, {}).get("train", {}).get("characters")
             or records.text_file(corpus, lang, "train").stat().st_size for lang in langs}
    rates = mixing.temperature_rates(sizes, alpha)
    mixtures = []
    for objective in objectives:
        for lang in langs:
            examples = lambda split, lang=lang: ({"targets": t} for t in records.read_texts(corpus, lang, split))
            seqio_source = _seqio_function_source(_string_dataset(examples, ["targets"]))
            _register_pretraining(f"seqpt_local_{lang}_{objective}", voc, info, objective,
                                  (options or {}).get(objective, {}), seqio_source,
                                  functools.partial(_corpus_windows, corpus, lang, model_file), False)
        mixture = f"seqpt_local_{objective}"
        _add_mixture(mixture, {f"seqpt_local_{lang}_{objective}": rates[lang] for lang in langs})
        mixtures.append(mixture)
    return mixtures


def _seqio_function_source(dataset_fn):
    import seqio
    return seqio.FunctionDataSource(dataset_fn, splits=records.SPLITS)


# ----- mC4 through TFDS ------------------------------------------------------------------------

def _mc4_split(lang: str, split: str) -> str:
    return lang if split == "train" else f"{lang}-validation"


def _tfds_rows(name: str, split: str, data_dir=None) -> Iterator[dict]:
    import tensorflow_datasets as tfds
    ds = tfds.load(name, split=split, shuffle_files=False, data_dir=data_dir)
    return iter(tfds.as_numpy(ds))


def _mc4_docs(lang: str, split: str, model_file: str, data_dir=None, chunk: int = 256):
    sp = vocab.processor(model_file)
    batch = []
    for row in _tfds_rows(MC4, _mc4_split(lang, split), data_dir):
        batch.append(row["text"].decode("utf-8", "replace"))
        if len(batch) == chunk:
            yield from sp.encode(batch)
            batch = []
    if batch:
        yield from sp.encode(batch)


def _mc4_windows(lang, model_file, data_dir, split, length, pack):
    del pack  # a stream is always packed: documents follow one another with EOS between
    return sources.StreamWindows(lambda: _mc4_docs(lang, split, model_file, data_dir), length)


def register_mc4(vocab_path, langs: Sequence[str], sizes: dict[str, float] | None = None,
                 objectives: Sequence[str] = ("mlm", "span_corruption"),
                 alpha: float = mixing.DEFAULT_ALPHA, data_dir=None) -> list[str]:
    """mC4 tasks per language and temperature mixtures (rates from `sizes`, e.g. documents or
    tokens per language; TFDS's split sizes when available; else uniform)."""
    import seqio
    voc = vocab.load(vocab_path)
    info, model_file = vocab.token_info(voc), vocab.model_path(voc)
    rates = mixing.temperature_rates(sizes or _tfds_sizes(langs, data_dir), alpha)
    mixtures = []
    for objective in objectives:
        for lang in langs:
            source = seqio.TfdsDataSource(
                tfds_name=MC4, tfds_data_dir=data_dir,
                splits={"train": _mc4_split(lang, "train"), "validation": _mc4_split(lang, "validation")})
            rekey = functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"})
            _register_pretraining(f"seqpt_mc4_{lang}_{objective}", voc, info, objective, {}, source,
                                  functools.partial(_mc4_windows, lang, model_file, data_dir), True,
                                  first=[rekey])
        mixture = f"seqpt_mc4_{objective}"
        _add_mixture(mixture, {f"seqpt_mc4_{lang}_{objective}": rates[lang] for lang in langs})
        mixtures.append(mixture)
    return mixtures


def _tfds_sizes(langs, data_dir) -> dict[str, float]:
    import tensorflow_datasets as tfds
    try:
        splits = tfds.builder(MC4, data_dir=data_dir).info.splits
        sizes = {lang: splits[lang].num_examples for lang in langs}
        if all(sizes.values()):
            return sizes
    except Exception:  # no prepared metadata: fall back to uniform rates
        pass
    return dict.fromkeys(langs, 1.0)
