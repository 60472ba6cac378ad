"""seqio is the one registry: the embedded corpus's tasks (fed by the numpy pipeline), mC4 on
TFDS mock data and a user's own TextLineDataSource task (fed by seqio's pipeline), each with a
resumable position that yields exactly the next batch."""

import functools
import json
import sys

import numpy as np
import pytest

from data_fixtures import make_corpus
from seqpt_jax.data import feeding, mixing, records, seqio_feed, tasks, vocab
from seqpt_jax.errors import UserError
from seqpt_jax.train import data as data_lib

LANGS = ["en", "de", "ru", "zh"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = make_corpus(tmp_path_factory.mktemp("corpus"))
    model = root / "sp.model"
    vocab.train(root, 700, model)
    return root, model


def _equal(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _resumes_exactly(make, skip=3):
    """Batch skip+1 of a fresh source restored from the state after `skip` batches equals the
    uninterrupted source's."""
    src = make()
    for _ in range(skip):
        next(src)
    state = json.loads(json.dumps(src.state()))
    want = [next(src) for _ in range(2)]
    fresh = make()
    fresh.restore(state)
    got = [next(fresh) for _ in range(2)]
    assert all(_equal(g, w) for g, w in zip(got, want))
    assert not _equal(want[0], want[1])
    return want[0]


def test_local_tasks_and_mixtures_are_seqio(setup):
    import seqio
    root, model = setup
    first = tasks.register_local(root, model, langs=LANGS)
    again = tasks.register_local(root, model, langs=LANGS)  # re-registering replaces, never raises
    assert first == again == ["seqpt_local_mlm", "seqpt_local_span_corruption"]
    chars = {l: records.corpus_stats(root)[l]["train"]["characters"] for l in LANGS}
    want = mixing.temperature_rates(chars, 0.3)
    mix = seqio.get_mixture_or_task("seqpt_local_mlm")
    for lang in LANGS:
        assert mix.get_rate(seqio.get_mixture_or_task(f"seqpt_local_{lang}_mlm")) == pytest.approx(want[lang])
    specs = tasks.fast_specs(mix)  # the numpy feed's view of the same seqio tasks
    rates = {s.name: r for s, r in specs}
    assert rates == pytest.approx({f"seqpt_local_{l}_mlm": want[l] for l in LANGS})


def test_corpus_trains_through_the_numpy_feed_by_name(setup):
    root, model = setup
    info = vocab.token_info(model)
    make = functools.partial(data_lib.mixture_or_task, "train", 4, 0, (0, 1), name="seqpt_local_mlm",
                             task_feature_lengths={"inputs": 64}, vocab_path=str(model), corpus_dir=str(root))
    assert isinstance(make(), feeding.Pipeline)
    b = _resumes_exactly(make)
    assert b["encoder_input_tokens"].shape == (4, 64) and b["mlm_weights"].sum() > 0
    masked = np.take_along_axis(b["encoder_input_tokens"], b["mlm_positions"], 1)[b["mlm_weights"] > 0]
    assert (masked == info.mask_id).mean() > 0.5 and b["mlm_dropped"].sum() == 0
    b = next(data_lib.mixture_or_task("validation", 4, 0, (0, 1), name="seqpt_local_span_corruption",
                                      task_feature_lengths={"inputs": 64}, vocab_path=str(model),
                                      corpus_dir=str(root)))
    assert b["decoder_target_tokens"][:, 0].tolist() == [info.sentinel(0)] * 4


def test_seqio_get_dataset_runs_the_objective(setup):
    import seqio
    root, model = setup
    tasks.register_local(root, model, langs=["de"], objectives=("span_corruption",))
    task = seqio.get_mixture_or_task("seqpt_local_de_span_corruption")
    ds = task.get_dataset({"inputs": 64, "targets": 16}, "train", shuffle=False, seed=3, try_in_mem_cache=False)
    ex = next(ds.as_numpy_iterator())
    top = vocab.token_info(model).sentinel(0)
    assert ex["targets"][0] == top and top in ex["inputs"] and ex["inputs"][-1] == 1


def test_unknown_names_and_languages(setup):
    root, model = setup
    with pytest.raises(UserError, match="no train data for language 'xx'"):
        tasks.register_local(root, model, langs=["en", "xx"])
    with pytest.raises(UserError, match="no seqio task or mixture 'nope_task' is registered"):
        data_lib.mixture_or_task("train", 2, 0, (0, 1), name="nope_task")
    with pytest.raises(UserError, match="names no objective"):
        data_lib.mixture_or_task("train", 2, 0, (0, 1), name="seqpt_local_nope", vocab_path=str(model))
    with pytest.raises(UserError, match="cannot be imported"):
        data_lib.mixture_or_task("train", 2, 0, (0, 1), name="x", module="no_such_module_here")


USER_MODULE = '''
import seqio
from seqpt_jax.data import tasks

seqio.TaskRegistry.add(
    "{name}",
    source=seqio.TextLineDataSource({{"train": "{train}", "validation": "{valid}"}}),
    preprocessors=[tasks.text_line_to_targets, seqio.preprocessors.tokenize,
                   tasks.Objective("{objective}")],
    output_features=tasks.output_features("{vocab}"))
'''


def write_user_module(tmp_path, root, model, name="user_span", objective="span_corruption") -> str:
    """A user's task module: a TextLineDataSource over text files, the project's vocabulary."""
    for split in ("train", "validation"):
        lines = [t.replace("\n", " ") for t in records.read_texts(root, "de", split)]
        (tmp_path / f"{split}.txt").write_text("\n".join(lines) + "\n", "utf-8")
    module = f"my_tasks_{name}"
    (tmp_path / f"{module}.py").write_text(USER_MODULE.format(
        name=name, train=tmp_path / "train.txt", valid=tmp_path / "validation.txt", objective=objective,
        vocab=model), "utf-8")
    return module


@pytest.mark.parametrize("objective", ["span_corruption", "mlm"])
def test_user_task_module_feeds_through_seqio_and_resumes(setup, tmp_path, monkeypatch, objective):
    root, model = setup
    monkeypatch.syspath_prepend(str(tmp_path))
    module = write_user_module(tmp_path, root, model, f"user_{objective}", objective)
    lengths = {"inputs": 32, "targets": 12}
    make = functools.partial(data_lib.mixture_or_task, "train", 4, 7, (0, 1), name=f"user_{objective}",
                             module=module, task_feature_lengths=lengths)
    assert isinstance(make(), seqio_feed.SeqioSource)
    b = _resumes_exactly(make)
    info = vocab.token_info(model)
    if objective == "mlm":
        assert set(b) == {"encoder_input_tokens", "mlm_targets", "mlm_weights", "encoder_segment_ids",
                          "encoder_positions"}
        assert b["mlm_weights"].dtype == np.float32 and b["mlm_weights"].sum() > 0
    else:
        assert b["decoder_target_tokens"].shape == (4, 12) and b["encoder_input_tokens"].shape == (4, 32)
        assert (b["decoder_target_tokens"] == info.sentinel(0)).any()
        assert (b["decoder_input_tokens"][b["decoder_positions"] == 0] == 0).all()
    other = make()
    with pytest.raises(UserError, match="different pipeline"):
        other.restore(dict(make().state(), seed=8))
    sys.modules.pop(module, None)


def test_mc4_mixture_on_tfds_mock_data_resumes(setup):
    import seqio
    import tensorflow_datasets as tfds
    _, model = setup
    with tfds.testing.mock_data(num_examples=20):
        mixtures = tasks.register_mc4(model, ["de", "ru"], sizes={"de": 1000, "ru": 10})
        assert mixtures == ["seqpt_mc4_mlm", "seqpt_mc4_span_corruption"]
        mix = seqio.get_mixture_or_task("seqpt_mc4_mlm")
        assert mix.get_rate(seqio.get_mixture_or_task("seqpt_mc4_ru_mlm")) == pytest.approx(
            mixing.temperature_rates({"de": 1000, "ru": 10})["ru"])
        assert tasks.fast_specs(mix) is None  # mC4 goes through seqio's pipeline
        make = functools.partial(seqio_feed.SeqioSource, seqio.get_mixture_or_task("seqpt_mc4_span_corruption"),
                                 "train", 2, {"inputs": 32, "targets": 12}, 0, (0, 1))
        b = _resumes_exactly(make)
        assert b["decoder_target_tokens"].shape == (2, 12)


def test_vocabulary_by_url(setup):
    """VOCAB may be a URL (gs://... on TPU, through etils epath: test_train_reliability's stand-in);
    a file:// URL is a local file."""
    _, model = setup
    url = f"file://{model}"
    assert vocab.load(url).vocab_size == vocab.load(model).vocab_size
    assert data_lib.vocab_size(url) == vocab.load(model).vocab_size
    assert tasks.output_features(url)["targets"].vocabulary.vocab_size == vocab.load(model).vocab_size
    with pytest.raises(UserError, match="not found"):
        vocab.processor(f"file://{model}.missing")


def test_vocabulary_without_seqio_has_seqios_ids_and_decoding(setup):
    import seqio
    _, model = setup
    ours, theirs = vocab.load(model), seqio.SentencePieceVocabulary(str(model), extra_ids=vocab.EXTRA_IDS)
    assert ours.vocab_size == theirs.vocab_size and ours.extra_ids == theirs.extra_ids
    assert [ours.tokenizer.id_to_piece(i) for i in range(ours.vocab_size)] == \
        [theirs.tokenizer.id_to_piece(i) for i in range(theirs.vocab_size)]           # sentinels on top
    for text in ["Open the file menu.", "Öffnen Sie das Menü ▁<extra_id_3> 42", "软件包管理器", ""]:
        ids = ours.encode(text)
        assert ids == list(theirs.encode(text))
        for probe in (ids, ids + [1] + ids, ids + [ours.vocab_size - 1, ours.vocab_size + 5]):
            assert ours.decode(probe) == theirs.decode(probe)
    assert (ours.eos_id, ours.unk_id, ours.pad_id) == (theirs.eos_id, theirs.unk_id, theirs.pad_id)
