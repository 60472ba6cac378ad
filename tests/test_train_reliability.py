"""A run never silently restarts, never shares its MODEL_DIR, never ignores a typo, checks its
numbers up front, saves on SIGTERM, reports storage faults in one line, and handles gs:// paths
(issue 14). In process on fake CPU devices where possible; signals in a subprocess."""

import contextlib
import errno
import functools
import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from etils import epath
from etils.epath import testing as epath_testing

from seqpt_jax import models
from seqpt_jax.commands import train as train_cmd
from seqpt_jax.data import sources
from seqpt_jax.errors import UserError
from seqpt_jax.train import OptimizerConfig, data, loop, preemption, run_dir

ADAM = OptimizerConfig(learning_rate=1e-2, warmup_steps=0, decay="constant")


def _bert(vocab=101, **kw):
    return models.EncoderMLM(models.preset("bert-tiny", vocab_size=vocab, dropout_rate=0.0, d_ff=128, **kw))


def _train(model_dir, model, steps, batch_size=8, length=12, **kw):
    kw.setdefault("optimizer", ADAM)
    kw.setdefault("save_every", 2)
    return loop.train(str(model_dir), model, functools.partial(data.synthetic, length=length), steps=steps,
                      batch_size=batch_size, log_every=1000, progress=False, **kw)


def _tree(path):
    return sorted(os.path.relpath(os.path.join(r, f), path) for r, _, fs in os.walk(path) for f in fs)


# 1. A changed config stops before anything is touched; legitimate changes resume.

def test_changed_settings_stop_before_touching_anything(tmp_path):
    _train(tmp_path, _bert(), 2)
    before = _tree(tmp_path / "checkpoints")
    with pytest.raises(UserError, match=r"other settings \(model.vocab_size 101 -> 200.*new --gin.MODEL_DIR"):
        _train(tmp_path, _bert(vocab=200), 4)
    with pytest.raises(UserError, match=r"batch_size 8 -> 16"):
        _train(tmp_path, _bert(), 4, batch_size=16)
    with pytest.raises(UserError, match=r"data feature shapes \(encoder_input_tokens \[\[12\], 'int32'\] -> \[\[16\]"):
        _train(tmp_path, _bert(), 4, length=16)
    with pytest.raises(UserError, match=r"data \(the first batch differs"):  # same shapes, other tokens
        loop.train(str(tmp_path), _bert(), functools.partial(data.synthetic, length=12, vocab_size=50), steps=4,
                   batch_size=8, optimizer=ADAM, progress=False)
    assert _tree(tmp_path / "checkpoints") == before and not os.path.exists(tmp_path / "checkpoints.corrupt")
    # More steps, another learning rate and another cadence are a resume.
    summary = _train(tmp_path, _bert(), 4, optimizer=OptimizerConfig(learning_rate=5e-3), eval_every=0)
    assert summary["checkpoints"] == [2, 4] and json.loads((tmp_path / "run.json").read_text())["batch_size"] == 8


def test_shape_mismatch_without_a_record_is_not_corruption(tmp_path):
    _train(tmp_path, _bert(), 2)
    (tmp_path / "run.json").unlink(missing_ok=True)  # a MODEL_DIR written before run.json existed
    with pytest.raises(UserError, match=r"checkpoint 2 .* belongs to another model"):
        _train(tmp_path, _bert(vocab=200), 4)
    assert os.listdir(tmp_path / "checkpoints") == ["2"] and not os.path.exists(tmp_path / "checkpoints.corrupt")


# 2. One trainer per MODEL_DIR.

def test_a_live_lock_stops_the_second_trainer_and_a_dead_one_is_taken_over(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / run_dir.LOCK_FILE).write_text(json.dumps(
            {"host": socket.gethostname(), "pid": holder.pid, "start": run_dir._start_ticks(holder.pid)}))
        with pytest.raises(UserError, match=rf"in use by another trainer \(pid {holder.pid} on "):
            _train(tmp_path, _bert(), 2)
        assert not os.path.exists(tmp_path / "checkpoints" / "2")
    finally:
        holder.kill()
        holder.wait()
    _train(tmp_path, _bert(), 2)  # the holder is gone: its lock is stale
    assert f"process {holder.pid} on {socket.gethostname()} is no longer running" in capsys.readouterr().out
    assert not os.path.exists(tmp_path / run_dir.LOCK_FILE)  # released at the end


def test_lock_of_another_host_is_respected(tmp_path):
    (tmp_path / run_dir.LOCK_FILE).write_text(json.dumps({"host": "tpu-worker-7", "pid": 1, "start": None}))
    with pytest.raises(UserError, match=r"pid 1 on tpu-worker-7"):
        run_dir.acquire_lock(str(tmp_path))


# 3. Every --gin.X binds something that exists.

GIN = ["models/bert_tiny.gin", "runs/pretrain_mlm.gin", "hw/cpu.gin"]
OK = ["MODEL_DIR = '/tmp/x'", "VOCAB = 'unused'"]


@pytest.mark.parametrize("binding,match", [
    ("TRAIN_STEP = 2", r"--gin.TRAIN_STEP binds a macro that no gin file defines.*did you mean --gin.TRAIN_STEPS"),
    ("data.synthetic.lenght = 3", r"parameter named 'lenght'.*did you mean length"),
    ("loop.trian.steps = 2", r"no attribute trian.*did you mean train"),
    ("lop.train.steps = 2", r"'lop' was not provided.*did you mean loop"),
])
def test_gin_typos_name_the_closest_valid_names(binding, match):
    with pytest.raises(UserError, match=match):
        train_cmd.parse_gin(GIN, [*OK, binding], [train_cmd.GIN_DIR])
    train_cmd.parse_gin(GIN, [*OK, "TRAIN_STEPS = 2", "data.synthetic.length = 3"], [train_cmd.GIN_DIR])


# 4. Impossible values stop up front.

@pytest.mark.parametrize("kw,match", [
    (dict(batch_size=0), r"loop.train.batch_size must be positive, got 0; set --gin.BATCH_SIZE"),
    (dict(steps="abc"), r"loop.train.steps must be an integer, got 'abc'; set --gin.TRAIN_STEPS"),
    (dict(steps=-3), r"steps must be positive"),
    (dict(save_every=0), r"save_every must be positive"),
    (dict(optimizer=OptimizerConfig(learning_rate="1e-3x")), r"learning_rate must be a finite number.*LEARNING_RATE"),
    (dict(optimizer=OptimizerConfig(learning_rate=float("nan"))), r"learning_rate must be a finite number"),
    (dict(optimizer=OptimizerConfig(warmup_steps=-1)), r"warmup_steps must be >= 0"),
    (dict(length=600), r"'encoder_input_tokens' is 600 tokens long but the model has 512 positions"),
])
def test_impossible_values_stop_before_anything_runs(tmp_path, kw, match):
    kw = {"steps": 2, **kw}
    with pytest.raises(UserError, match=match):
        _train(tmp_path, _bert(), **kw)
    assert not os.path.exists(tmp_path / "checkpoints" / "2")


# 5. SIGTERM saves and exits 143; SIGINT pressed twice stops at once.

def test_sigterm_finishes_the_step_saves_and_exits_143(tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "seqpt_jax", "train", *[f"--gin_file={g}" for g in GIN], "--gin.VOCAB=unused",
            "--gin.loop.train.data=@data.synthetic", "--gin.models.preset.vocab_size=101", "--gin.BATCH_SIZE=8",
            "--gin.data.synthetic.length=12", f"--gin.MODEL_DIR={run}", "--gin.TRAIN_STEPS=100000",
            "--gin.loop.train.save_every=1000", "--gin.loop.train.log_every=1", "--gin.loop.train.eval_every=0"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, JAX_PLATFORMS="cpu"))
    for line in proc.stdout:  # wait until it trains
        if "[train] step 3:" in line:
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == preemption.EXIT_CODES["SIGTERM"] == 143, err[-2000:]
    saved = [int(n) for n in os.listdir(run / "checkpoints") if n.isdigit()]
    assert len(saved) == 1 and 3 <= saved[0] < 1000, saved  # saved where it stopped, not at a periodic step
    assert f"stopped by SIGTERM after step {saved[0]}" in err and "Traceback" not in err
    assert not os.path.exists(run / run_dir.LOCK_FILE)


def test_sigint_twice_stops_at_once():
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job inherits SIGINT ignored
    with preemption.StopRequests() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.at(1) == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# 6. A corrupt token cache and a full disk are one line each.

def test_corrupt_token_cache_names_the_file(tmp_path):
    path = tmp_path / "en.train.npz"
    sources.TokenStore.from_token_lists([[5, 6, 7], [8, 9]]).save(path)
    path.write_bytes(path.read_bytes()[:40])  # a copy cut short
    with pytest.raises(UserError, match=rf"token cache {path} is corrupt \(BadZipFile\); delete it"):
        sources.TokenStore.load(path)


def test_full_disk_during_a_save_removes_the_partial_save(tmp_path, monkeypatch):
    write_text = epath.gpath.PosixGPath.write_text

    def full_disk(self, *a, **kw):
        if "checkpoints" in str(self) and "/4.orbax-checkpoint-tmp" in str(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return write_text(self, *a, **kw)

    monkeypatch.setattr(epath.gpath.PosixGPath, "write_text", full_disk)
    with pytest.raises(UserError, match=r"checkpoint 4 could not be written .* \(No space left on device\); "
                                        r"free space .* resumes from step 2"):
        _train(tmp_path, _bert(), 6)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]  # no partial directory, 2 is the latest
    monkeypatch.setattr(epath.gpath.PosixGPath, "write_text", write_text)
    assert _train(tmp_path, _bert(), 6)["checkpoints"][-1] == 6


# 7. gs:// paths: an unreachable bucket is one line; a reachable one (a local stand-in) works.

class _Unreachable(Exception):
    pass


@contextlib.contextmanager
def _fake_gcs(root):
    """gs://BUCKET/... served from root/BUCKET/... through epath's backend (what orbax, the lock,
    the record and the vocabulary use), so the remote code path runs without a network."""
    local = lambda p: os.path.join(str(root), os.fspath(p)[len("gs://"):])  # noqa: E731

    def fwd(name):
        def fn(original, path, *a, **kw):
            if os.fspath(path).startswith("gs://"):
                a = tuple(local(os.fspath(x)) if isinstance(x, (str, os.PathLike)) and os.fspath(x).startswith("gs://")
                          else x for x in a)
                return getattr(epath.backend.os_backend, name)(local(path), *a, **kw)
            return original(path, *a, **kw)
        return fn

    names = ["open", "exists", "isdir", "listdir", "glob", "makedirs", "mkdir", "remove", "rename", "replace",
             "rmtree", "stat", "walk"]
    with _no_tf_backend(), epath_testing.mock_epath(**{n: fwd(n) for n in names}):
        yield


def _no_tf_backend():
    """epath sends gs:// straight to TensorFlow's gfile when TF is installed; the mock replaces the
    backend table, so make epath read it."""
    from unittest import mock
    return mock.patch.object(epath.gpath, "_is_tf_installed", lambda: False)


def _unreachable(original, path, *a, **kw):
    if os.fspath(path).startswith("gs://"):
        raise _Unreachable("Error executing an HTTP request: Could not resolve host: storage.googleapis.com")
    return original(path, *a, **kw)


def test_unreachable_bucket_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with _no_tf_backend(), epath_testing.mock_epath(makedirs=_unreachable, mkdir=_unreachable, open=_unreachable,
                                                    exists=_unreachable):
        with pytest.raises(UserError, match=r"MODEL_DIR gs://bkt/run cannot be reached \(_Unreachable: Error "
                                            r"executing an HTTP request.*credentials"):
            _train("gs://bkt/run", _bert(), 2)
        from seqpt_jax.data import vocab
        with pytest.raises(UserError, match=r"vocabulary gs://bkt/spm.model cannot be reached"):
            vocab.processor("gs://bkt/spm.model")
    assert os.listdir(tmp_path) == []  # nothing written to a local "gs:" folder


def test_lock_record_and_vocabulary_through_a_gs_stand_in(tmp_path):
    import sentencepiece as spm
    import io
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(["a b c d e f g h"] * 50), model_writer=proto,
                                   vocab_size=12, model_type="char")
    (tmp_path / "bkt").mkdir()
    (tmp_path / "bkt" / "spm.model").write_bytes(proto.getvalue())
    from seqpt_jax.data import vocab
    with _fake_gcs(tmp_path):
        assert vocab.processor("gs://bkt/spm.model").get_piece_size() == 12
        run_dir.check_writable("gs://bkt/run")
        lock = run_dir.acquire_lock("gs://bkt/run")
        assert json.loads((tmp_path / "bkt/run" / run_dir.LOCK_FILE).read_text())["pid"] == os.getpid()
        lock.release()
        assert not (tmp_path / "bkt/run" / run_dir.LOCK_FILE).exists()
        (epath.Path("gs://bkt/run") / run_dir.LOCK_FILE).write_text(json.dumps({"host": "tpu-worker-7", "pid": 9}))
        with pytest.raises(UserError, match="in use by another trainer \\(pid 9 on tpu-worker-7"):
            run_dir.acquire_lock("gs://bkt/run")
        (epath.Path("gs://bkt/run") / run_dir.LOCK_FILE).unlink()
        record = {"kind": "encoder_mlm", "batch_size": 8}
        run_dir.check_record("gs://bkt/run", record, has_checkpoints=False)
        with pytest.raises(UserError, match=r"batch_size 8 -> 16"):
            run_dir.check_record("gs://bkt/run", dict(record, batch_size=16), has_checkpoints=True)
    assert sorted(os.listdir(tmp_path / "bkt" / "run")) == ["run.json"]


def test_token_cache_and_tensorboard_events_through_a_gs_stand_in(tmp_path):
    """The embedded corpus's token cache is keyed by the vocabulary's content, read through epath
    when VOCAB is gs://; TensorBoard events under a gs:// MODEL_DIR go through epath too (found
    with the Cloud Storage emulator run of tests/test_train_remote.py: both went to local paths)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from seqpt_jax.train import events as events_lib
    (tmp_path / "bkt").mkdir()
    (tmp_path / "bkt" / "spm.model").write_bytes(b"not parsed here")
    with _fake_gcs(tmp_path):
        assert sources.vocab_fingerprint("gs://bkt/spm.model") == sources.vocab_fingerprint(
            str(tmp_path / "bkt" / "spm.model"))
        events = events_lib.EventFile("gs://bkt/run/tb")
        events.scalars(3, {"train/loss": 1.5})
        events.close()
    files = os.listdir(tmp_path / "bkt" / "run" / "tb")
    assert len(files) == 1 and files[0].startswith("events.out.tfevents.")
    steps = [e.step for e in EventFileLoader(str(tmp_path / "bkt" / "run" / "tb" / files[0])).Load()]
    assert steps == [0, 3]  # the file_version record, then the scalars
