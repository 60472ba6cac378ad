"""A gs:// MODEL_DIR and VOCAB against an in-process Cloud Storage stand-in (tests/gcs_fake.py):
`seqpt train` writes its checkpoints (orbax's array files through TensorStore's `gcs` kvstore
driver), lock, records and config to the bucket, stops, resumes from it bitwise, and reads its
vocabulary from it (issue 14, point 7).

The code path is the TPU one up to the wire: orbax picks TensorStore's `gcs` driver for a gs://
path, and our files (and orbax's own small files) go through etils epath. Only the endpoints
move, by the clients' own testing settings: TENSORSTORE_GCS_HTTP_URL (+ a fixed
GOOGLE_AUTH_TOKEN_FOR_TESTING) for TensorStore, STORAGE_EMULATOR_HOST for gcsfs, the fsspec
backend epath uses for gs:// without TensorFlow (TensorFlow's gfile, epath's default when TF is
installed, has no endpoint setting). The trainers run in this process, so JAX is imported once.
"""

from __future__ import annotations

import contextlib
import io
import os
import urllib.parse

import fsspec
import gcsfs
import jax
import numpy as np
import pytest
from etils import epath

from data_fixtures import make_corpus
from gcs_fake import FakeGCS
from seqpt_jax import cli
from seqpt_jax.data import vocab
from seqpt_jax.params_io import load

BUCKET = "seqpt-test"


def _fresh_clients():
    """epath and fsspec cache their gs:// file system: build it with this test's settings, and
    leave none that points at the stand-in behind."""
    epath.backend.fsspec_backend._get_filesystem.cache_clear()
    gcsfs.core.GCSFileSystem.clear_instance_cache()


@pytest.fixture
def gcs(monkeypatch):
    with FakeGCS(BUCKET) as server:
        monkeypatch.setenv("TENSORSTORE_GCS_HTTP_URL", server.url)
        monkeypatch.setenv("GOOGLE_AUTH_TOKEN_FOR_TESTING", "fake")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
        # EPATH_USE_TF=false, after the fact: epath caches its "is TF installed" answer.
        monkeypatch.setattr(epath.gpath, "_is_tf_installed", lambda: False)
        # gcsfs's plain client: its default (experimental) one first asks the bucket's layout over
        # gRPC, which the stand-in does not serve. No credentials: "anon", as for any emulator.
        monkeypatch.setattr(gcsfs, "GCSFileSystem", gcsfs.core.GCSFileSystem)
        monkeypatch.setitem(fsspec.config.conf, "gs", {"token": "anon"})
        _fresh_clients()
        try:
            yield server
        finally:
            _fresh_clients()


def _train(model_dir, vocab_path, corpus, steps) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli.main(["train", "--gin_file=models/bert_tiny.gin", "--gin_file=runs/pretrain_mlm.gin",
                       "--gin_file=hw/cpu.gin", f"--gin.MODEL_DIR={model_dir}", f"--gin.VOCAB={vocab_path}",
                       f"--gin.CORPUS_DIR='{corpus}'", "--gin.BATCH_SIZE=8", "--gin.INPUT_LENGTH=16",
                       f"--gin.TRAIN_STEPS={steps}", "--gin.WARMUP_STEPS=1", "--gin.loop.train.save_every=2",
                       "--gin.loop.train.eval_every=0", "--gin.loop.train.progress=False",
                       "--gin.models.preset.num_encoder_layers=1", "--gin.models.preset.d_ff=64"])
    assert rc == 0, out.getvalue()[-3000:]
    return out.getvalue()


def _uploads(gcs):
    """(object name, client) of each upload the stand-in saw."""
    for method, path, agent in gcs.requests:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        if method == "POST" and "/upload/" in path and "name" in query:
            yield query["name"][0], agent


def _copy_out(objects: dict, prefix: str, dest) -> str:
    """The bucket's objects under `prefix` as a local folder (read from the stand-in's memory)."""
    for name, data in objects.items():
        if name.startswith(prefix):
            (dest / name[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)
            (dest / name[len(prefix):]).write_bytes(data)
    return str(dest)


def test_train_stop_and_resume_bitwise_on_a_gs_bucket(gcs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a gs:// path mistaken for a local one would land
    corpus = make_corpus(tmp_path / "corpus", langs=["en", "de"])
    vocab.train(corpus, 300, tmp_path / "spm.model")
    remote_vocab, remote_run, run = f"gs://{BUCKET}/vocab/spm.model", f"gs://{BUCKET}/runs/mlm", "runs/mlm/"
    epath.Path(remote_vocab).write_bytes((tmp_path / "spm.model").read_bytes())

    _train(remote_run, remote_vocab, corpus, 4)  # uninterrupted, a checkpoint every 2 steps
    objects = gcs.objects(BUCKET)
    # Everything is in the bucket, written by the client meant for it: orbax's arrays by
    # TensorStore, the rest by gcsfs; nothing went to a local "gs:" folder.
    names = {n[len(run):] for n in objects if n.startswith(run)}
    assert {"model.json", "run.json", "config.gin", "summary.json"} <= names, sorted(names)
    for step in (2, 4):
        assert {f"checkpoints/{step}/commit_success.txt", f"checkpoints/{step}/state/manifest.ocdbt"} <= names
    assert "trainer.lock" not in names and not os.path.exists(tmp_path / "gs:")
    assert f"VOCAB = '{remote_vocab}'" in objects[run + "config.gin"].decode()
    writer = {name: agent.split("/")[0] for name, agent in _uploads(gcs)}
    arrays = [n for n in names if "/state/" in n and (n.endswith(".ocdbt") or "/d/" in n)]
    assert arrays and {writer[run + n] for n in arrays} == {"tensorstore"}, arrays
    assert {writer[run + n] for n in ("run.json", "model.json", "config.gin")} == {"python-gcsfs"}
    assert any(m == "GET" and "alt=media" in p and "vocab/spm.model" in urllib.parse.unquote(p)
               for m, p, _ in gcs.requests)  # VOCAB's bytes came from the bucket

    # Stopped after step 2: what a run killed between its saves of steps 2 and 4 leaves.
    gcs.delete_prefix(BUCKET, run + "checkpoints/4/")
    gcs.delete_prefix(BUCKET, run + "summary.json")
    assert "resumed from step 2" in _train(remote_run, remote_vocab, corpus, 4)  # the same command resumes
    assert gcs.unhandled == []

    # The resumed run's step 4 equals the uninterrupted run's bit for bit.
    _, _, first = load(_copy_out(objects, run, tmp_path / "first"))
    _, _, resumed = load(_copy_out(gcs.objects(BUCKET), run, tmp_path / "resumed"))
    jax.tree.map(np.testing.assert_array_equal, resumed, first)
