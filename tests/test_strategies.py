"""Strategy and precision proofs on CPU: choosing a strategy changes speed, not the math.

Multi-replica runs need the CPU split into logical devices before TensorFlow starts, so
they run as subprocesses of the real CLI (``--cpu-replicas 2``) and the saved models are
compared weight by weight.
"""

import json
import os
import re

import keras
import numpy as np
import pytest

from conftest import REPO, error_lines, make_idx_dir, run_cli
from mnist_core import models, precision
from mnist_core.config import TrainConfig
from mnist_core.trainer import Trainer
from mnist_core.reporting import Reporter

# Part of the full suite (`python -m pytest -m "not slow"`, what CI runs), not of the quick
# `python -m pytest` a contributor runs between edits: its commands and harnesses take minutes.
pytestmark = pytest.mark.full

TESTS = str(REPO / "tests")
# 193 test examples in batches of 64: the last batch holds 1 example for 2 replicas.
N_TEST = 193


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_idx_dir(tmp_path_factory.mktemp("strategies") / "data", n_train=512, n_test=N_TEST)


def _train(data_dir, out, *args):
    result = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--output-dir", str(out), "--epochs", "2",
                     "--batch-size", "64", "--steps-per-loop", "3", "--quiet", *args, env={"PYTHONPATH": TESTS})
    assert result.returncode == 0, result.stderr
    return out


def _weights(run_dir):
    import parity_models  # noqa: F401  (the models' module must be importable to load them)

    return keras.models.load_model(run_dir / "model.keras").get_weights()


def _assert_same_weights(a, b, atol=1e-5):
    wa, wb = _weights(a), _weights(b)
    assert len(wa) == len(wb)
    worst = max(float(np.max(np.abs(x - y))) for x, y in zip(wa, wb))
    assert worst <= atol, f"max |difference| {worst:g} > {atol:g}"


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory):
    """The same job (model with L2 losses, 16 steps) on 1 replica and on 2 CPU replicas."""
    base = tmp_path_factory.mktemp("runs")
    model = ["--model", "parity_models:dense_l2"]
    return {
        "single": _train(data_dir, base / "single", *model),
        "mirrored": _train(data_dir, base / "mirrored", *model, "--strategy", "mirrored", "--cpu-replicas", "2"),
    }


def test_whole_runs_on_1_and_2_replicas_agree_statistically(runs):
    """Over a whole run parity is statistical: 1 and 2 replicas sum each batch's gradient
    in a different order, and on CPU kernels (oneDNN on AVX-512, say) such last-bit
    differences can grow over many steps. The exact statement is one step, tested below."""
    single = json.loads((runs["single"] / "summary.json").read_text())
    mirrored = json.loads((runs["mirrored"] / "summary.json").read_text())
    assert mirrored["num_replicas"] == 2 and single["num_replicas"] == 1
    assert single["test_accuracy"] > 0.9 and mirrored["test_accuracy"] > 0.9
    assert abs(mirrored["test_accuracy"] - single["test_accuracy"]) <= 0.03
    assert mirrored["test_loss"] == pytest.approx(single["test_loss"], rel=0.1)


def test_evaluation_counts_each_example_once_with_tiny_last_batch(runs):
    for run in runs.values():
        history = json.loads((run / "history.json").read_text())
        assert all(e["test_examples"] == N_TEST for e in history)


# One step from the same weights and batch: ||update(1) - update(2)|| / ||update(1)||.
# Measured on AVX-512 (oneDNN on and off): <= 8e-7 for dense_l2, <= 4.6e-6 with
# synchronised BatchNorm, and >= 2.4e-4 for per-replica BatchNorm (the control).
ONE_STEP_TOLERANCE = 3e-5


def _one_step(onednn, models, batches, *extra):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(REPO / "tests" / "replica_parity.py"), ",".join(models),
                             ",".join(map(str, batches)), *extra],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn})
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("onednn", ["1", "0"])
def test_one_step_on_2_replicas_equals_1_replica(onednn):
    """The distributed math (loss over the global batch, regulariser per replica, synchronised
    BatchNorm, XLA under mirrored) gives the single-replica update to float tolerance."""
    rows = _one_step(onednn, ["dense_l2", "conv_sync_bn", "conv_bn@128", "dense_l2+jit@128"], [64, 128, 256])
    assert len(rows) == 8 and sum(row["jit"] for row in rows) == 1
    for row in rows:
        if row["model"] == "conv_bn":
            # Per-replica statistics normalise each half of the batch on its own: a real
            # difference, which shows this comparison detects one.
            assert row["relative_update_diff"] > 4 * ONE_STEP_TOLERANCE, row
        else:
            assert row["loss_mirrored"] == pytest.approx(row["loss_single"], rel=1e-5), row
            assert row["relative_update_diff"] <= ONE_STEP_TOLERANCE, row


def test_sync_batchnorm_with_xla_under_mirrored_is_refused(data_dir, tmp_path):
    result = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "r"),
                     "--model", "deep_mlp", "--sync-batchnorm", "--jit-compile", "--strategy", "mirrored",
                     "--cpu-replicas", "2", "--epochs", "1")
    assert result.returncode == 2
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "--jit-compile" in lines[0] and "synchronized BatchNormalization" in lines[0], \
        result.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_builtin_sync_batchnorm_flag_builds_synchronized_layers():
    model = models.build(models.get("deep_mlp"), sync_batchnorm=True)
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bn and all(layer.synchronized for layer in bn)


def test_multi_worker_two_local_workers_match_mirrored(runs, data_dir, tmp_path):
    out = tmp_path / "mw"
    result = run_cli("mnist_core.launch", "--workers", "2", "--", "--data-dir", str(data_dir),
                     "--output-dir", str(out), "--epochs", "2", "--batch-size", "64", "--steps-per-loop", "3",
                     "--model", "parity_models:dense_l2", env={"PYTHONPATH": TESTS})
    assert result.returncode == 0, result.stdout + result.stderr
    assert not re.search(r"cuda|absl::InitializeLog", result.stdout + result.stderr), "workers start quietly"
    digests = dict(re.findall(r"\[worker (\d)\] weights sha256 (\w+)", result.stdout))
    assert set(digests) == {"0", "1"}, result.stdout
    assert digests["0"] == digests["1"], "both workers must end with identical weights"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["weights_sha256"] == digests["0"] and summary["num_replicas"] == 2
    assert summary["test_examples"] == N_TEST
    _assert_same_weights(runs["mirrored"], out)
    # Only the chief writes the run directory.
    assert not list(tmp_path.glob("mnist_core_worker_*"))


def test_launcher_fails_as_a_whole(data_dir, tmp_path):
    result = run_cli("mnist_core.launch", "--workers", "2", "--", "--data-dir", str(tmp_path / "missing"),
                     "--output-dir", str(tmp_path / "mw"))
    assert result.returncode == 2
    assert "no such file or directory" in result.stdout


def test_batch_not_divisible_by_replicas(data_dir, tmp_path):
    result = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "r"),
                     "--batch-size", "65", "--strategy", "mirrored", "--cpu-replicas", "2", "--model", "mlp_small")
    assert result.returncode == 2
    assert error_lines(result.stderr) == ["mnist-train: error: --batch-size 65 is not divisible by the 2 replicas"]
    assert not (tmp_path / "r" / "history.json").exists()


def test_multi_worker_needs_tf_config(data_dir, tmp_path):
    result = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "r"),
                     "--strategy", "multi_worker", env={"TF_CONFIG": ""})
    assert result.returncode == 2
    assert "needs $TF_CONFIG" in error_lines(result.stderr)[0]


# ---------------------------------------------------------------- precision (in-process)


def test_mixed_precision_computes_in_16_bits_with_float32_logits():
    with precision.policy("mixed_float16"):
        model = models.build(models.get("cnn"))
    conv = model.layers[0]
    assert conv.compute_dtype == "float16" and conv.kernel.dtype == "float32"
    assert model(np.zeros((2, 28, 28, 1), np.float32)).dtype == "float32"
    assert keras.config.dtype_policy().name == "float32", "the policy is restored afterwards"


@pytest.mark.parametrize("name", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_runs_learn(tmp_path, name):
    idx = make_idx_dir(tmp_path / "data", n_train=512, n_test=200)
    config = TrainConfig(data_dir=str(idx), model="mlp_small", epochs=3, batch_size=64, lr=3e-3,
                         precision=name, output_dir=str(tmp_path / "run"), quiet=True)
    summary = Trainer(config, Reporter(quiet=True)).run()
    assert summary["test_accuracy"] > 0.9
    if name == "mixed_float16":
        events = next((tmp_path / "run" / "tensorboard" / "train").glob("events.out.tfevents.*"))
        assert b"loss_scale" in events.read_bytes()


# ---------------------------------------------------------------- multi_worker preemption


def _start_workers(args, out, n=2):
    import subprocess
    import sys

    from mnist_core.launch import free_ports, tf_config

    ports = free_ports(n)
    return [
        subprocess.Popen(
            [sys.executable, "-m", "mnist_core.train", "--strategy", "multi_worker", "--output-dir", str(out), *args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "TF_CONFIG": tf_config(ports, i), "PYTHONPATH": TESTS},
        )
        for i in range(n)
    ]


def test_multi_worker_sigterm_to_one_worker_checkpoints_all_then_resumes(tmp_path):
    """SIGTERM to the non-chief only: every worker saves at the same step and stops (143).

    A checkpoint under MultiWorkerMirroredStrategy is a collective; without
    PreemptionCheckpointHandler the signalled worker would save alone and hang. Resuming
    with the launcher then finishes with the weights of an uninterrupted 2-replica run.
    """
    import signal
    import time

    data = make_idx_dir(tmp_path / "data", n_train=4096, n_test=N_TEST)
    args = ["--data-dir", str(data), "--epochs", "3", "--batch-size", "64", "--steps-per-loop", "1",
            "--checkpoint-every", "4", "--model", "parity_models:dense_l2", "--quiet"]
    out = tmp_path / "mw"
    workers = _start_workers(args, out)
    index = out / "checkpoints" / "checkpoint"
    deadline = time.monotonic() + 180
    while not index.exists():
        assert all(w.poll() is None for w in workers), [w.communicate() for w in workers]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    workers[1].send_signal(signal.SIGTERM)
    results = [w.communicate(timeout=180) for w in workers]
    codes = [w.returncode for w in workers]
    assert codes == [143, 143], results
    steps = set()
    for _, stderr in results:
        lines = error_lines(stderr)
        assert len(lines) == 1 and "SIGTERM received; stopped after step" in lines[0], stderr
        steps.add(int(lines[0].split("stopped after step ")[1].split()[0]))
    assert len(steps) == 1, f"workers stopped at different steps: {steps}"
    step = steps.pop()
    assert step < 3 * 64, "stopped before the end of the run"
    assert (out / "checkpoints" / f"ckpt-{step}.index").exists()
    assert not (out / "summary.json").exists()

    resumed = run_cli("mnist_core.launch", "--workers", "2", "--", *args, "--output-dir", str(out), "--resume",
                      env={"PYTHONPATH": TESTS})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads((out / "summary.json").read_text())["steps"] == 3 * 64
    reference = tmp_path / "mirrored"
    result = run_cli("mnist_core.train", *args, "--output-dir", str(reference), "--strategy", "mirrored",
                     "--cpu-replicas", "2", env={"PYTHONPATH": TESTS})
    assert result.returncode == 0, result.stderr
    _assert_same_weights(reference, out)
