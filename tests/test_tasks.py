"""seqio tasks and mixtures: the local corpus, mC4 / XNLI / WikiANN via TFDS mock data, and
the corpus's downstream tasks, all fed through feeding.make_pipeline."""

import numpy as np
import pytest

from data_fixtures import make_corpus
from seqpt_jax.data import downstream, feeding, mixing, records, tasks, vocab
from seqpt_jax.errors import UserError

LANGS = ["en", "de", "ru", "zh"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = make_corpus(tmp_path_factory.mktemp("corpus"))
    model = root / "sp.model"
    vocab.train(root, 700, model)
    return root, model


def test_local_tasks_mixtures_and_idempotent_registration(setup):
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
    assert "seqpt_local_de_span_corruption" in seqio.TaskRegistry.names()


def test_local_pipelines_by_name(setup):
    root, model = setup
    tasks.register_local(root, model, langs=LANGS)
    info = vocab.token_info(model)
    b = next(feeding.make_pipeline("seqpt_local_mlm", "train", 4, 64, seed=0, shard=(0, 1)))
    assert b["encoder_input_tokens"].shape == (4, 64) and b["mlm_weights"].sum() > 0
    masked = np.take_along_axis(b["encoder_input_tokens"], b["mlm_positions"], 1)[b["mlm_weights"] > 0]
    assert (masked == info.mask_id).mean() > 0.5 and b["mlm_dropped"].sum() == 0
    b = next(feeding.make_pipeline("seqpt_local_span_corruption", "validation", 4, {"inputs": 64},
                                   seed=0, shard=(0, 1)))
    assert b["decoder_target_tokens"][:, 0].tolist() == [info.sentinel(0)] * 4


def test_seqio_get_dataset_runs_the_objective(setup):
    import seqio
    root, model = setup
    tasks.register_local(root, model, langs=["de"], objectives=("span_corruption",))
    task = seqio.get_mixture_or_task("seqpt_local_de_span_corruption")
    ds = task.get_dataset({"inputs": 64, "targets": 16}, "train", shuffle=False, seed=3)
    ex = next(ds.as_numpy_iterator())
    top = vocab.token_info(model).sentinel(0)
    assert ex["targets"][0] == top and top in ex["inputs"] and ex["inputs"][-1] == 1


def test_requested_language_without_data(setup):
    root, model = setup
    with pytest.raises(UserError, match="no train data for language 'xx'"):
        tasks.register_local(root, model, langs=["en", "xx"])
    with pytest.raises(UserError, match="unknown task or mixture"):
        feeding.make_pipeline("seqpt_local_nope", "train", 2, 8, shard=(0, 1))


def test_downstream_tasks(setup):
    root, model = setup
    names = downstream.register_corpus_tasks(root, model)
    assert {"seqpt_section_en", "seqpt_section_de", "seqpt_ui_tagging_de", "seqpt_translate_en_de",
            "seqpt_synopsis_en"} <= set(names)
    b = next(feeding.make_pipeline("seqpt_section_de", "test", 4, 32, shard=(0, 1)))
    assert set(b["labels"].tolist()) <= {0, 1, 2} and tasks.LABELS["seqpt_section_de"] == ["graphics", "libs", "utils"]
    b = next(feeding.make_pipeline("seqpt_ui_tagging_de", "train", 2, 32, shard=(0, 1)))
    labels = tasks.LABELS["seqpt_ui_tagging_de"]
    assert labels == ["O", "B-UI", "I-UI"]
    tagged = sorted(b["token_labels"][b["token_weights"] > 0].tolist())
    assert tagged.count(labels.index("B-UI")) >= 1 and b["token_weights"].sum() in (3 + 6, 6, 3)
    b = next(feeding.make_pipeline("seqpt_translate_en_de", "train", 2, {"inputs": 64, "targets": 64},
                                   shard=(0, 1)))
    assert b["encoder_segment_ids"].max() >= 2  # short pairs are packed several to a row
    assert (b["decoder_input_tokens"][b["decoder_positions"] == 0] == 0).all()


def test_mc4_through_tfds_mock_data(setup):
    import seqio
    import tensorflow_datasets as tfds
    _, model = setup
    with tfds.testing.mock_data(num_examples=20):
        mixtures = tasks.register_mc4(model, ["de", "ru"], sizes={"de": 1000, "ru": 10})
        assert mixtures == ["seqpt_mc4_mlm", "seqpt_mc4_span_corruption"]
        assert dict(tasks.MIXTURES["seqpt_mc4_mlm"])["seqpt_mc4_ru_mlm"] == pytest.approx(
            mixing.temperature_rates({"de": 1000, "ru": 10})["ru"])
        pipe = feeding.make_pipeline("seqpt_mc4_span_corruption", "train", 2, {"inputs": 32}, shard=(0, 1))
        next(pipe)
        state, want = pipe.state(), next(pipe)
        fresh = feeding.make_pipeline("seqpt_mc4_span_corruption", "train", 2, {"inputs": 32}, shard=(0, 1))
        fresh.restore(state)
        got = next(fresh)
        assert all(np.array_equal(got[k], want[k]) for k in want)
        ds = seqio.get_mixture_or_task("seqpt_mc4_de_mlm").get_dataset(
            {"inputs": 32, "targets": 32}, "train", shuffle=False, seed=0,
            try_in_mem_cache=False)  # mock data has no split sizes
        ex = next(ds.as_numpy_iterator())
        assert len(ex["inputs"]) == len(ex["targets"]) <= 32


def _xnli_and_wikiann(self, split, **kwargs):
    import tensorflow as tf
    if self.name == "xnli":
        rows = [{"premise": {"de": "Der Hund schläft.", "en": "The dog sleeps."},
                 "hypothesis": {"language": ["de", "en"], "translation": ["Ein Tier ruht.", "An animal rests."]},
                 "label": i % 3} for i in range(4)]
    else:
        rows = [{"tokens": ["Angela", "Merkel", "besuchte", "Paris"],
                 "tags": [1, 2, 0, 5], "langs": ["de"] * 4, "spans": ["PER: Angela Merkel"]}] * 3
    text, texts, ints = tf.TensorSpec([], tf.string), tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.int64)
    if self.name == "xnli":
        signature = {"premise": {"de": text, "en": text},
                     "hypothesis": {"language": texts, "translation": texts},
                     "label": tf.TensorSpec([], tf.int64)}
    else:
        signature = {"tokens": texts, "tags": ints, "langs": texts, "spans": texts}
    return tf.data.Dataset.from_generator(lambda: iter(rows), output_signature=signature)


def test_xnli_and_wikiann_loaders(setup):
    import tensorflow_datasets as tfds
    _, model = setup
    with tfds.testing.mock_data(as_dataset_fn=_xnli_and_wikiann):
        ex = next(iter(downstream.xnli_examples("test", "de")))
        assert ex == {"inputs": "premise: Der Hund schläft. hypothesis: Ein Tier ruht.", "targets": "entailment"}
        names = downstream.register_tfds_tasks(model, ["de"], ["de"])
        b = next(feeding.make_pipeline("seqpt_xnli_de", "test", 4, 32, shard=(0, 1)))
        assert sorted(b["labels"].tolist()) == [0, 0, 1, 2]
        b = next(feeding.make_pipeline("seqpt_wikiann_de", "train", 1, 32, shard=(0, 1)))
        assert b["token_labels"][0][b["token_weights"][0] > 0].tolist() == [1, 2, 0, 5]
        assert names == ["seqpt_xnli_de", "seqpt_wikiann_de"]
