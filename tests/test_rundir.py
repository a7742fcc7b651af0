"""A run directory nothing can corrupt: damaged checkpoints, a second run, changed flags, full disks."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys

import keras
import pytest
import tensorflow as tf

from conftest import REPO, make_idx_dir, run_cli
from mnist_core.checkpoint import verify
from mnist_core.config import TrainConfig
from mnist_core.trainer import Trainer
from mnist_core.errors import ConfigError
from mnist_core.reporting import Reporter
from mnist_core.errors import WriteError
from mnist_core.rundir import RunLock
from mnist_core.errors import python_words


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # 512 examples, batch 64: 8 steps per epoch; checkpoints every 4 steps.
    return make_idx_dir(tmp_path_factory.mktemp("rundir") / "data", n_train=512, n_test=200)


def _config(data_dir, out, **changes):
    values = dict(data_dir=str(data_dir), model="mlp_l1", batch_size=64, epochs=2, steps_per_loop=2,
                  checkpoint_every=4, deterministic=True, output_dir=str(out), quiet=True)
    values.update(changes)
    return TrainConfig(**values)


def _run(config, **kwargs):
    return Trainer(config, Reporter(quiet=True), **kwargs).run()


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    """The uninterrupted 2-epoch run every recovered run must end equal to."""
    return _run(_config(data_dir, tmp_path_factory.mktemp("reference") / "run"))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _overwrite(path):
    path.write_bytes(os.urandom(path.stat().st_size))


DAMAGE = {
    "truncated data": lambda ckpt: _truncate(next(ckpt.parent.glob(ckpt.name + ".data-*"))),
    "overwritten data": lambda ckpt: _overwrite(next(ckpt.parent.glob(ckpt.name + ".data-*"))),
    "missing data shard": lambda ckpt: next(ckpt.parent.glob(ckpt.name + ".data-*")).unlink(),
    "missing index": lambda ckpt: ckpt.with_name(ckpt.name + ".index").unlink(),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_newest_checkpoint_is_skipped_and_the_run_ends_exact(data_dir, tmp_path, reference, damage):
    out = tmp_path / "run"
    _run(_config(data_dir, out, epochs=1))  # checkpoints at steps 4 and 8
    DAMAGE[damage](out / "checkpoints" / "ckpt-8")
    assert verify(str(out / "checkpoints" / "ckpt-8")), "the damage is detected"
    from io import StringIO

    from rich.console import Console

    buffer = StringIO()
    summary = Trainer(_config(data_dir, out, resume=True), Reporter(console=Console(file=buffer, width=400))).run()
    text = buffer.getvalue()
    assert text.count("warning: checkpoint") == 1 and "ckpt-8 is damaged" in text, text
    assert "resumed from" in text and "ckpt-4 (step 4" in text
    assert summary["weights_sha256"] == reference["weights_sha256"], "resumed from step 4, exactly"
    assert (out / "checkpoints" / "damaged").is_dir(), "the damaged files are kept aside, not deleted"


def test_no_usable_checkpoint_is_one_line_exit_2(data_dir, tmp_path):
    out = tmp_path / "run"
    _run(_config(data_dir, out, epochs=1))
    for ckpt in ("ckpt-4", "ckpt-8"):
        _truncate(next((out / "checkpoints").glob(ckpt + ".data-*")))
    (out / "checkpoints" / "checkpoint").write_text("garbage {")
    result = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--output-dir", str(out), "--model", "mlp_l1",
                     "--batch-size", "64", "--epochs", "2", "--checkpoint-every", "4", "--steps-per-loop", "2",
                     "--deterministic", "--resume", "--quiet")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mnist-train: error: --resume: no usable checkpoint in {out}"), \
        result.stderr
    assert "ckpt-8: " in lines[0] and "ckpt-4: " in lines[0]


# ---------------------------------------------------------------- one run per directory


def _attempts(data_dir, out):
    base = ["--data-dir", str(data_dir), "--output-dir", str(out), "--model", "mlp_small", "--batch-size", "64",
            "--epochs", "1"]
    return {"plain": base, "resume": base + ["--resume"], "overwrite": base + ["--overwrite"]}


def test_a_second_run_into_a_live_directory_is_refused_and_touches_nothing(data_dir, tmp_path):
    out = tmp_path / "run"
    _run(_config(data_dir, out, epochs=1, model="mlp_small"))
    with RunLock(out):  # this process is "the running job"
        before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
        for mode, args in _attempts(data_dir, out).items():
            result = run_cli("mnist_core.train", *args)
            assert result.returncode == 2, (mode, result.stderr)
            assert result.stderr.splitlines() == [
                f"mnist-train: error: --output-dir {out}: in use by a running mnist_core run (pid {os.getpid()}); "
                "wait for it, or use another directory"], (mode, result.stderr)
            assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before, f"{mode} touched the directory"


def test_a_killed_run_leaves_no_lock_behind(data_dir, tmp_path):
    out = tmp_path / "run"
    _run(_config(data_dir, out, epochs=1, model="mlp_small"))
    holder = subprocess.run([sys.executable, "-c", "import os, signal, sys; from mnist_core.rundir import RunLock; "
                             "RunLock(sys.argv[1]).acquire(); os.kill(os.getpid(), signal.SIGKILL)", str(out)],
                            cwd=REPO)
    assert holder.returncode == -signal.SIGKILL
    assert (out / ".lock").read_text().strip().isdigit(), "the killed holder's pid is still in the file"
    summary = _run(_config(data_dir, out, epochs=2, model="mlp_small", resume=True))
    assert summary["epochs"] == 2


# ---------------------------------------------------------------- resume checks

GUARDED = {
    "model": "mlp_small", "dataset": "fashion_mnist", "batch_size": 32, "seed": 7, "optimizer": "sgd",
    "lr": 0.5, "lr_schedule": "cosine", "lr_decay_rate": 0.5, "momentum": 0.5, "precision": "mixed_bfloat16",
    "val_split": 0.25, "sync_batchnorm": True,
    # the training techniques
    "warmup_epochs": 0.5, "weight_decay": 0.01, "clipnorm": 1.0, "global_clipnorm": 1.0, "ema": 0.9,
    "grad_accum_steps": 2, "label_smoothing": 0.1, "augment": "digits",
    # the tutorials' settings
    "epsilon": 1e-08, "loss": "categorical_crossentropy", "pixels": "raw",
}


@pytest.fixture(scope="module")
def one_epoch(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("guarded") / "run"
    _run(_config(data_dir, out, epochs=1))
    return out


@pytest.mark.parametrize("field", sorted(GUARDED))
def test_resume_refuses_flags_that_change_the_runs_meaning(data_dir, one_epoch, field):
    before = sorted(p.name for p in one_epoch.rglob("*"))
    config = _config(data_dir, one_epoch, resume=True, **{field: GUARDED[field]})
    with pytest.raises(ConfigError) as raised:
        _run(config)
    message = str(raised.value)
    flag = "--" + field.replace("_", "-")
    assert message.startswith(python_words(f"--resume: {flag} {GUARDED[field]} differs from the run's ")), message
    assert sorted(p.name for p in one_epoch.rglob("*")) == before


def test_resume_accepts_flags_meant_to_change(data_dir, tmp_path):
    out = tmp_path / "run"
    _run(_config(data_dir, out, epochs=1))
    summary = _run(_config(data_dir, out, resume=True, epochs=3, checkpoint_every=0, keep_checkpoints=1,
                           steps_per_loop=5, histograms=True, quiet=False, jit_compile=True))
    assert summary["epochs"] == 3


@pytest.mark.parametrize("schedule, warned", [("cosine", True), ("onecycle", True), ("exponential", False)])
def test_resume_with_other_epochs_warns_where_the_schedule_spans_the_run(data_dir, tmp_path, schedule, warned):
    out = tmp_path / "run"
    _run(_config(data_dir, out, epochs=1, lr_schedule=schedule))
    reporter = Reporter(quiet=True)
    warnings = []
    reporter.warn = warnings.append
    Trainer(_config(data_dir, out, epochs=2, lr_schedule=schedule, resume=True), reporter).run()
    spans = [w for w in warnings if w.startswith(f"--epochs 2 (the run had 1) with --lr-schedule {schedule}")]
    assert len(spans) == int(warned), warnings


def test_resume_on_another_replica_count_is_refused_with_unsynchronized_batchnorm(data_dir, tmp_path):
    out = tmp_path / "run"
    _run(_config(data_dir, out, epochs=1, model="deep_mlp"))
    result = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--output-dir", str(out), "--model", "deep_mlp",
                     "--batch-size", "64", "--epochs", "2", "--checkpoint-every", "4", "--steps-per-loop", "2",
                     "--deterministic", "--resume", "--strategy", "mirrored", "--cpu-replicas", "2")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "the run trained on 1 replica(s), this one has 2" in lines[0], result.stderr


# ---------------------------------------------------------------- failing writes


def test_a_checkpoint_that_cannot_be_written_stops_the_run_and_keeps_the_previous(data_dir, tmp_path, reference,
                                                                                    monkeypatch):
    out = tmp_path / "run"
    real_save = tf.train.CheckpointManager.save
    calls = []

    def save(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the checkpoint of step 8
            raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
    with pytest.raises(WriteError) as raised:
        _run(_config(data_dir, out))
    assert raised.value.exit_code == 4
    message = str(raised.value)
    assert message.startswith(f"cannot write checkpoint {out / 'checkpoints' / 'ckpt-8'} (No space left on device)")
    assert "the previous checkpoint" in message and "ckpt-4 is intact" in message
    assert not list((out / "checkpoints").glob("ckpt-8*"))
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    summary = _run(_config(data_dir, out, resume=True))
    assert summary["weights_sha256"] == reference["weights_sha256"]


def test_a_model_that_cannot_be_saved_stops_the_run_and_resume_finishes_it(data_dir, tmp_path, reference,
                                                                             monkeypatch):
    out = tmp_path / "run"
    real_save = keras.Model.save

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", full_disk)
    with pytest.raises(WriteError, match=rf"^cannot write {out / 'model.keras'} \(No space left on device\)"):
        _run(_config(data_dir, out))
    assert sorted(p.name for p in out.iterdir() if p.name.startswith((".tmp", "model"))) == []
    monkeypatch.setattr(keras.Model, "save", real_save)
    summary = _run(_config(data_dir, out, resume=True))
    assert summary["weights_sha256"] == reference["weights_sha256"] and (out / "model.keras").exists()


def test_history_that_cannot_be_written_keeps_the_previous_file(data_dir, tmp_path, monkeypatch):
    from mnist_core import files

    out = tmp_path / "run"
    real_dump = json.dump
    calls = []

    def dump(value, f, **kwargs):
        if isinstance(value, list) and len(value) == 2:  # history.json after epoch 2
            calls.append(1)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_dump(value, f, **kwargs)

    monkeypatch.setattr(files.json, "dump", dump)
    with pytest.raises(WriteError, match="cannot write .*history.json \\(No space left on device\\); "
                                         "the previous history.json is intact"):
        _run(_config(data_dir, out))
    assert calls and len(json.loads((out / "history.json").read_text())) == 1
    assert not list(out.glob(".*.tmp"))


@pytest.fixture
def small_disk(tmp_path):
    """A 400 KB tmpfs: a real full disk (needs root and mount; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], capture_output=True)
    if result.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.decode().strip()[:80]})")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_full_disk_stops_the_run_with_exit_4_and_a_usable_checkpoint(data_dir, tmp_path, small_disk):
    out = small_disk / "run"
    # mlp_small with Adam: ~300 KB per checkpoint, so the second one does not fit.
    result = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--output-dir", str(out), "--model",
                     "mlp_small", "--batch-size", "64", "--epochs", "3", "--checkpoint-every", "4", "--quiet")
    assert result.returncode == 4, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0] and "is intact" in lines[0], result.stderr
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    kept = sorted(p.name[: -len(".index")] for p in (copy / "checkpoints").glob("ckpt-*.index"))
    assert kept and all(verify(str(copy / "checkpoints" / k)) is None for k in kept)
    resumed = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--output-dir", str(copy), "--model",
                      "mlp_small", "--batch-size", "64", "--epochs", "3", "--checkpoint-every", "4", "--quiet",
                      "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((copy / "summary.json").read_text())["steps"] == 24
