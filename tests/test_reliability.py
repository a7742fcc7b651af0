"""Runs that survive: exact resume, SIGTERM/SIGKILL mid-epoch, non-finite loss, bad resumes."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, error_lines, make_idx_dir, run_cli

# Part of the full suite (`python -m pytest -m "not slow"`, what CI runs), not of the quick
# `python -m pytest` a contributor runs between edits: its commands and harnesses take minutes.
pytestmark = pytest.mark.full

# cnn (with dropout: the RNG state must be restored too) on 2048 examples: 32 steps/epoch,
# slow enough on CPU to be interrupted mid-epoch. --deterministic makes it bitwise exact.
ARGS = ["--model", "cnn", "--epochs", "2", "--batch-size", "64", "--steps-per-loop", "1",
        "--checkpoint-every", "4", "--deterministic", "--quiet"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_idx_dir(tmp_path_factory.mktemp("reliability") / "data", n_train=2048, n_test=200)


def _train(data_dir, out, *extra):
    return run_cli("mnist_core.train", "--data-dir", str(data_dir), "--output-dir", str(out), *ARGS, *extra)


def _summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def full_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    result = _train(data_dir, out)
    assert result.returncode == 0, result.stderr
    return out


def _start(data_dir, out, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_core.train", "--data-dir", str(data_dir), "--output-dir", str(out), *ARGS,
         *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_checkpoint(proc, out, timeout=120):
    index = out / "checkpoints" / "checkpoint"
    deadline = time.monotonic() + timeout
    while not index.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def test_deterministic_runs_are_bitwise_identical(data_dir, full_run, tmp_path):
    again = tmp_path / "again"
    assert _train(data_dir, again).returncode == 0
    assert _summary(again)["weights_sha256"] == _summary(full_run)["weights_sha256"]


def test_one_epoch_then_resume_equals_two_epochs(data_dir, full_run, tmp_path):
    out = tmp_path / "run"
    assert _train(data_dir, out, "--epochs", "1").returncode == 0
    resumed = _train(data_dir, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = _summary(full_run), _summary(out)
    assert a["weights_sha256"] == b["weights_sha256"]
    assert (a["test_loss"], a["test_accuracy"]) == (b["test_loss"], b["test_accuracy"])
    assert [e["epoch"] for e in json.loads((out / "history.json").read_text())] == [1, 2]


def test_sigkill_mid_epoch_then_resume_is_exact(data_dir, full_run, tmp_path):
    out = tmp_path / "run"
    proc = _start(data_dir, out)
    _wait_for_checkpoint(proc, out)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists(), "killed before the end"
    resumed = _train(data_dir, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert _summary(out)["weights_sha256"] == _summary(full_run)["weights_sha256"]


def test_sigterm_checkpoints_and_says_how_to_resume(data_dir, full_run, tmp_path):
    out = tmp_path / "run"
    proc = _start(data_dir, out)
    _wait_for_checkpoint(proc, out)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    lines = error_lines(stderr)
    assert len(lines) == 1 and "SIGTERM received; stopped after step" in lines[0], stderr
    assert "--resume" in lines[0] and "Traceback" not in stderr
    step = int(lines[0].split("stopped after step ")[1].split()[0])
    assert step < 64, "stopped before the end of the run"
    assert (out / "checkpoints" / f"ckpt-{step}.index").exists(), "a checkpoint of the stopping step"
    resumed = _train(data_dir, out, "--resume", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert _summary(out)["weights_sha256"] == _summary(full_run)["weights_sha256"]


def test_mirrored_sigkill_mid_epoch_then_resume_is_exact(data_dir, tmp_path):
    """The resume mechanism under 2 replicas: same weights as an uninterrupted 2-replica run."""
    mirrored = ["--strategy", "mirrored", "--cpu-replicas", "2"]
    reference = tmp_path / "reference"
    assert _train(data_dir, reference, *mirrored).returncode == 0
    out = tmp_path / "run"
    proc = _start(data_dir, out, *mirrored)
    _wait_for_checkpoint(proc, out)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not (out / "summary.json").exists(), "killed before the end"
    resumed = _train(data_dir, out, *mirrored, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert _summary(out)["num_replicas"] == 2
    assert _summary(out)["weights_sha256"] == _summary(reference)["weights_sha256"]


def test_nonfinite_loss_stops_with_step_and_checkpoint(data_dir, tmp_path):
    out = tmp_path / "run"
    result = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--output-dir", str(out), "--model",
                     "fault_models:nan_loss_at_step_3", "--steps-per-loop", "1", "--checkpoint-every", "2",
                     "--epochs", "1", env={"PYTHONPATH": str(REPO / "tests")})
    assert result.returncode == 3, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "non-finite loss (NaN/Inf) within steps 3..3" in lines[0], result.stderr
    assert "last good checkpoint" in lines[0] and "ckpt-2" in lines[0]
    assert not (out / "model.keras").exists(), "a diverged model is not saved"


def test_resume_errors(data_dir, full_run, tmp_path):
    empty = tmp_path / "empty"
    result = _train(data_dir, empty, "--resume")
    assert result.returncode == 2 and "--resume: no checkpoint in" in error_lines(result.stderr)[0]
    other = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--output-dir", str(full_run),
                    "--model", "mlp", "--resume", "--epochs", "3")
    assert other.returncode == 2
    assert error_lines(other.stderr) == [
        "mnist-train: error: --resume: --model mlp differs from the run's cnn, which would change what its saved "
        "steps mean; resume with the run's value, or start a new run in another --output-dir"], other.stderr
    assert _summary(full_run)["config"]["model"] == "cnn", "the earlier run is untouched"
    # A run without its config (an older mnist_core's): the checkpoint itself is checked.
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(full_run, bare)
    (bare / "config.json").unlink()
    (bare / "summary.json").unlink()
    other = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--output-dir", str(bare),
                    "--model", "mlp", "--resume", "--epochs", "3")
    assert other.returncode == 2
    assert len(error_lines(other.stderr)) == 1 and "does not match this model" in error_lines(other.stderr)[0], \
        other.stderr


def test_output_dir_that_cannot_be_created(data_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = _train(data_dir, blocker / "run")
    assert result.returncode == 2
    assert "--output-dir" in error_lines(result.stderr)[0] and "not writable" in error_lines(result.stderr)[0]
    if os.geteuid() != 0:  # root ignores permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        result = _train(data_dir, locked / "run")
        assert result.returncode == 2 and "not writable" in error_lines(result.stderr)[0]
