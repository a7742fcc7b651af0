"""Fast by default: --jit-compile auto decides by timing (once per machine and model), and
evaluation has its own batch size and cadence. Only behaviour is tested; the speeds are in
benchmarks/RESULTS.md."""

import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import make_idx_dir, run_cli
from mnist_core import autojit
from mnist_core.config import TrainConfig
from mnist_core.program import AUTO_JIT_MIN_STEPS, make_program
from mnist_core.trainer import Trainer
from mnist_core.errors import ConfigError
from mnist_core.reporting import Reporter


def _program(tmp_path, monkeypatch, **changes):
    monkeypatch.setenv("MNIST_CORE_CACHE_DIR", str(tmp_path / "cache"))
    values = dict(model="mlp_small", batch_size=64, epochs=100)  # 800 steps: enough to be worth timing
    values.update(changes)
    config = TrainConfig(**values)
    return make_program(config, tf.distribute.get_strategy(), 512, decide_jit=False)


def _state(program):
    return [v.numpy().copy() for v in [*program.model.variables, *program.optimizer.variables]]


def test_auto_times_both_restores_the_state_and_caches_the_decision(tmp_path, monkeypatch):
    program = _program(tmp_path, monkeypatch)
    assert set(program.train_loops) == {False, True} and program.jit is None
    before = _state(program)
    decision = program.resolve_jit()
    assert decision.reason == "timed" and decision.seconds > 0
    assert set(decision.ms_per_step) == {"on", "off"} and all(v > 0 for v in decision.ms_per_step.values())
    assert decision.choice == (decision.ms_per_step["on"] < (1 - autojit.MARGIN) * decision.ms_per_step["off"])
    for a, b in zip(before, _state(program)):
        np.testing.assert_array_equal(a, b)  # as if nothing had been timed
    assert program.train_loop is program.train_loops[decision.choice]
    entries = json.loads((tmp_path / "cache" / "jit.json").read_text())
    assert len(entries) == 1

    again = _program(tmp_path, monkeypatch).resolve_jit()
    assert again.reason == "cached" and again.choice == decision.choice and again.seconds == 0
    other = _program(tmp_path, monkeypatch, batch_size=32).resolve_jit()  # another key: decided anew
    assert other.reason == "timed"
    assert len(json.loads((tmp_path / "cache" / "jit.json").read_text())) == 2


@pytest.mark.parametrize("changes, reason", [
    ({"deterministic": True}, "--deterministic"),
    ({"epochs": 1}, f"under {AUTO_JIT_MIN_STEPS}"),
    ({"jit_compile": "on"}, "forced"),
    ({"jit_compile": False}, "forced"),
])
def test_auto_without_timing(tmp_path, monkeypatch, changes, reason):
    program = _program(tmp_path, monkeypatch, **changes)
    assert len(program.train_loops) == 1 and program.jit is not None
    assert reason in program.jit_decision.reason
    assert program.jit == (changes.get("jit_compile") == "on")
    assert not (tmp_path / "cache").exists()


def test_a_run_reports_its_decision_and_a_resume_reuses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_CORE_CACHE_DIR", str(tmp_path / "cache"))
    data_dir = make_idx_dir(tmp_path / "data", n_train=1024, n_test=100)
    out = tmp_path / "run"
    base = ["--data-dir", str(data_dir), "--output-dir", str(out), "--model", "mlp_small", "--batch-size", "32",
            "--steps-per-loop", "8", "--eval-every", "5"]
    # 13 epochs of 32 steps: 416 steps, enough to be timed; the target stops it at the first
    # evaluated epoch (5); the resume trains one more.
    first = run_cli("mnist_core.train", *base, "--epochs", "13", "--target-accuracy", "0.0001")
    assert first.returncode == 0, first.stderr
    line = next(l for l in first.stdout.splitlines() if l.startswith("--jit-compile auto: "))
    assert "deciding took" in line and "cached for next time" in line
    record = json.loads((out / "config.json").read_text())
    assert record["jit_decision"]["reason"] == "timed"
    resumed = run_cli("mnist_core.train", *base, "--epochs", "6", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "as the run recorded when it started" in resumed.stdout
    assert json.loads((out / "summary.json").read_text())["jit_compile"] == record["jit_compile_resolved"]


def test_eval_every_and_eval_batch_size(tmp_path):
    data_dir = make_idx_dir(tmp_path / "data", n_train=512, n_test=200)
    config = TrainConfig(data_dir=str(data_dir), model="mlp_small", batch_size=64, epochs=5, eval_every=2,
                         eval_batch_size=37, output_dir=str(tmp_path / "run"), quiet=True)
    summary = Trainer(config, Reporter(quiet=True)).run()
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert ["test_accuracy" in e for e in history] == [False, True, False, True, True]  # 2, 4 and the last
    assert all(e["test_examples"] == 200 for e in history if "test_examples" in e), "every example once"
    assert all(e["eval_seconds"] >= 0 and e["train_seconds"] > 0 for e in history)
    assert summary["test_examples"] == 200 and summary["test_accuracy"] == history[-1]["test_accuracy"]
    with pytest.raises(ConfigError, match="eval_every"):
        TrainConfig(eval_every=0)


def test_target_accuracy_checks_only_evaluated_epochs(tmp_path):
    data_dir = make_idx_dir(tmp_path / "data", n_train=512, n_test=200)
    config = TrainConfig(data_dir=str(data_dir), model="mlp_small", batch_size=64, epochs=10, eval_every=3,
                         lr=3e-3, target_accuracy=0.5, output_dir=str(tmp_path / "run"), quiet=True)
    summary = Trainer(config, Reporter(quiet=True)).run()
    assert summary["epochs"] == 3 and summary["test_accuracy"] >= 0.5
