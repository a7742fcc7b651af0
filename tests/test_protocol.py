"""Keras' model protocol in mnist_core's loop: a model's train_step, test_step, compute_loss
and compute_metrics run as model.fit runs them, on every strategy, and show in every output."""

import io
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import REPO, error_lines, learnable_digits, make_idx_dir, run_cli
from mnist_core import TrainConfig, train
from mnist_core.errors import NonFiniteLossError, python_words
from mnist_core.trainer import Trainer
from mnist_core.reporting import Reporter

TESTS = str(REPO / "tests")
ENV = {"PYTHONPATH": TESTS}


def _parity(replicas, models):
    result = subprocess.run([sys.executable, str(REPO / "tests" / "protocol_parity.py"), str(replicas),
                             ",".join(models)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, **ENV})
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {r["model"] + ("+jit" if r["jit"] else ""): r for r in rows}


@pytest.mark.parametrize("replicas, xla_model", [(1, "GuideTrainStep"), (2, "ShiftedLabels")])
def test_same_weights_as_model_fit_from_the_same_start_and_batches(replicas, xla_model):
    """8 Adam steps from the same weights on the same batches, mnist_core vs model.fit.

    Without XLA: bitwise equal to fit (observed 0.0 on 1 and 2 replicas): the graphs run the
    same ops on the same batches; 1e-6 leaves room for a platform whose graph optimiser
    fuses the two programs differently. With XLA, 1 replica: the user's train_step compiled
    whole, as fit(jit_compile=True) compiles it (bitwise here). 2 replicas: compute_loss's
    forward and backward under XLA, the update outside it, against plain fit (which cannot
    use XLA there): 2.2e-7 here, XLA reassociates; bound 1e-5.
    """
    rows = _parity(replicas, ["Plain", "ShiftedLabels", "GuideTrainStep", "WithTopK", f"{xla_model}+jit"])
    assert rows["Plain"]["protocol"] == [] and rows["ShiftedLabels"]["protocol"] == ["compute_loss"]
    assert rows["GuideTrainStep"]["protocol"] == ["train_step", "test_step"]
    for name, row in rows.items():
        assert row["max_update"] > 1e-3, row  # it trained
        bound = 1e-5 if name.endswith("+jit") and replicas > 1 else 1e-6
        assert row["max_weight_diff"] <= bound, row


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_idx_dir(tmp_path_factory.mktemp("protocol") / "data", n_train=512, n_test=200)


def _cli(data_dir, out, model, *extra):
    return run_cli("mnist_core.train", "--data-dir", str(data_dir), "--output-dir", str(out), "--model",
                   f"protocol_models:{model}", "--batch-size", "64", "--quiet", *extra, env=ENV)


_VISIBLE = """
import json, sys
from mnist_core import TrainConfig, train
from mnist_core.reporting import Reporter
data_dir, out, strategy = sys.argv[1:4]
extra = {"strategy": "mirrored", "cpu_replicas": 2} if strategy == "mirrored" else {}
for model in ("Plain", "ShiftedLabels", "NoUpdate"):
    config = TrainConfig(data_dir=data_dir, model=f"protocol_models:{model}", epochs=3, lr=3e-3, batch_size=64,
                         output_dir=f"{out}/{model}", quiet=True, **extra)
    train(config, Reporter(quiet=True))
"""


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_overrides_visibly_change_training(data_dir, tmp_path, strategy):
    result = subprocess.run([sys.executable, "-c", _VISIBLE, str(data_dir), str(tmp_path), strategy],
                            capture_output=True, text=True, timeout=600, cwd=REPO, env={**os.environ, **ENV})
    assert result.returncode == 0, result.stderr
    runs = {m: json.loads((tmp_path / m / "summary.json").read_text()) for m in ("Plain", "ShiftedLabels", "NoUpdate")}
    assert all(r["num_replicas"] == (2 if strategy == "mirrored" else 1) for r in runs.values())
    assert runs["Plain"]["test_accuracy"] > 0.9
    # Trained on label + 1: right on the shifted labels, wrong on the true ones.
    assert runs["ShiftedLabels"]["test_accuracy"] < 0.2
    assert runs["ShiftedLabels"]["keras_protocol"] == ["compute_loss"]
    # Never applies its gradients: chance accuracy, the same loss every epoch.
    history = json.loads((tmp_path / "NoUpdate" / "history.json").read_text())
    assert runs["NoUpdate"]["test_accuracy"] < 0.3
    assert len({round(e["test_loss"], 6) for e in history}) == 1


def test_custom_logs_reach_history_tensorboard_callbacks_and_console(data_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    seen = {}
    logger = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.setdefault("batch", logs),
        on_epoch_end=lambda epoch, logs: seen.setdefault("epoch", logs))
    buffer = io.StringIO()
    from rich.console import Console

    reporter = Reporter(console=Console(file=buffer, width=200))
    config = TrainConfig(data_dir=str(data_dir), model="protocol_models:GuideTrainStep", epochs=2, batch_size=64,
                         lr=3e-3, output_dir=str(tmp_path / "run"))
    summary = Trainer(config, reporter, callbacks=[logger]).run()
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert {"train_loss", "train_accuracy", "train_grad_norm", "test_loss", "test_accuracy"} <= set(history[0])
    assert history[-1]["train_grad_norm"] > 0 and summary["metrics"]["train_grad_norm"] > 0
    assert {"loss", "accuracy", "grad_norm"} <= set(seen["batch"])
    assert {"loss", "accuracy", "grad_norm", "test_loss", "test_accuracy", "val_loss"} <= set(seen["epoch"])
    assert "grad_norm" in buffer.getvalue()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard" / "train"))
    events.Reload()
    assert "grad_norm" in events.Tags()["tensors"]

    config = config.replace(model="protocol_models:WithTopK", output_dir=str(tmp_path / "topk"))
    Trainer(config, Reporter(quiet=True)).run()
    entry = json.loads((tmp_path / "topk" / "history.json").read_text())[-1]
    assert entry["test_top2"] >= entry["test_accuracy"] and entry["train_top2"] > 0


@pytest.mark.parametrize("model, method, why", [
    ("NumpyInStep", "train_step()", "not numpy"),
    ("CountsInPython", "changed self.steps_seen", "keras.Variable"),
    ("PrintsInStep", "printed 'training on a batch'", "tf.print"),
])
def test_untraceable_overrides_stop_before_training(data_dir, tmp_path, model, method, why):
    from mnist_core.errors import ModelError

    out = tmp_path / "run"
    config = TrainConfig(data_dir=str(data_dir), model=f"protocol_models:{model}", epochs=1, batch_size=64,
                         output_dir=str(out), quiet=True)
    with pytest.raises(ModelError) as raised:
        Trainer(config, Reporter(quiet=True)).run()
    message = str(raised.value)
    assert message.startswith(python_words(f"--model 'protocol_models:{model}': "))
    assert method in message and why in message
    assert not out.exists(), "nothing written"


def test_a_step_that_mixes_dtypes_under_mixed_precision_is_refused_with_the_cast_it_needs(data_dir, tmp_path):
    from mnist_core.errors import ModelError

    config = TrainConfig(data_dir=str(data_dir), model="protocol_models:MixesDtypes", epochs=1, batch_size=64,
                         precision="mixed_bfloat16", output_dir=str(tmp_path / "run"), quiet=True)
    with pytest.raises(ModelError) as raised:
        Trainer(config, Reporter(quiet=True)).run()
    message = str(raised.value)
    assert "train_step() cannot be traced" in message and "keras.ops.cast" in message, message
    assert not (tmp_path / "run").exists()
    # In float32 the same step trains.
    summary = Trainer(config.replace(precision="float32"), Reporter(quiet=True)).run()
    assert summary["steps"] > 0


@pytest.mark.parametrize("model, extra, message", [
    ("compiled_already", {"lr": 0.01}, "--lr 0.01: --model 'protocol_models:compiled_already' comes compiled"),
    ("TestStepWithoutAccuracy", {"target_accuracy": 0.9},
     "--target-accuracy: the model's test_step reports no 'accuracy' (it returns loss)"),
])
def test_what_cannot_be_honoured_is_refused(data_dir, tmp_path, model, extra, message):
    from mnist_core.errors import MnistCoreError

    config = TrainConfig(data_dir=str(data_dir), model=f"protocol_models:{model}", epochs=1, batch_size=64,
                         output_dir=str(tmp_path / "run"), quiet=True, **extra)
    with pytest.raises(MnistCoreError, match=python_words(message).replace("(", r"\(").replace(")", r"\)")):
        Trainer(config, Reporter(quiet=True)).run()
    assert not (tmp_path / "run").exists()


def test_cli_refusals_are_one_line(data_dir, tmp_path):
    """As a user sees them: XLA with a train_step override under mirrored, and numpy in a step."""
    result = _cli(data_dir, tmp_path / "run", "GuideTrainStep", "--epochs", "1", "--jit-compile", "--strategy",
                  "mirrored", "--cpu-replicas", "2")
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "mnist-train: error: --jit-compile: --model 'protocol_models:GuideTrainStep' overrides train_step, which "
        "applies its gradients itself; under 2 replicas that update is a cross-replica all-reduce, which cannot "
        "run inside an XLA cluster (model.fit turns XLA off under tf.distribute for the same reason); drop "
        "--jit-compile, or override compute_loss instead of train_step"], result.stderr
    result = _cli(data_dir, tmp_path / "run", "NumpyInStep", "--epochs", "1")
    assert result.returncode == 2 and len(error_lines(result.stderr)) == 1, result.stderr


@pytest.mark.parametrize("changes", [{"precision": "mixed_float16"}, {"precision": "mixed_bfloat16"},
                                     {"jit_compile": True}], ids=["float16", "bfloat16", "xla"])
def test_protocol_model_learns_with_mixed_precision_and_xla(data_dir, tmp_path, changes):
    config = TrainConfig(data_dir=str(data_dir), model="protocol_models:GuideTrainStep", epochs=3, batch_size=64,
                         lr=3e-3, output_dir=str(tmp_path / "run"), quiet=True, **changes)
    summary = Trainer(config, Reporter(quiet=True)).run()
    assert summary["test_accuracy"] > 0.9, summary


def test_protocol_model_resumes_exactly(data_dir, tmp_path):
    base = TrainConfig(data_dir=str(data_dir), model="protocol_models:WithTopK", epochs=2, batch_size=64,
                       steps_per_loop=3, deterministic=True, quiet=True)
    full = Trainer(base.replace(output_dir=str(tmp_path / "full")), Reporter(quiet=True)).run()
    Trainer(base.replace(output_dir=str(tmp_path / "part"), epochs=1), Reporter(quiet=True)).run()
    resumed = Trainer(base.replace(output_dir=str(tmp_path / "part"), resume=True), Reporter(quiet=True)).run()
    assert resumed["weights_sha256"] == full["weights_sha256"]
    assert resumed["metrics"]["test_top2"] == full["metrics"]["test_top2"]


def test_protocol_model_nonfinite_gradients_skip_and_stop(data_dir, tmp_path):
    base = TrainConfig(data_dir=str(data_dir), model="protocol_models:PoisonedLoss", epochs=1, batch_size=64,
                       steps_per_loop=1, checkpoint_every=2, quiet=True)
    buffer = io.StringIO()
    from rich.console import Console

    summary = Trainer(base.replace(output_dir=str(tmp_path / "skip"), on_nonfinite="skip"),
                      Reporter(quiet=True, console=Console(file=buffer))).run()
    assert "1 update(s) with non-finite gradients skipped in steps 3..3" in buffer.getvalue()
    assert np.isfinite(summary["test_loss"])
    with pytest.raises(NonFiniteLossError, match="within steps 3..3"):
        Trainer(base.replace(output_dir=str(tmp_path / "stop")), Reporter(quiet=True)).run()
    assert not (tmp_path / "stop" / "model.keras").exists()


def test_multi_worker_runs_a_protocol_model(data_dir, tmp_path):
    out = tmp_path / "mw"
    result = run_cli("mnist_core.launch", "--workers", "2", "--", "--data-dir", str(data_dir), "--output-dir",
                     str(out), "--epochs", "2", "--batch-size", "64", "--model", "protocol_models:ShiftedLabels",
                     env=ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_replicas"] == 2 and summary["keras_protocol"] == ["compute_loss"]
    assert summary["test_accuracy"] < 0.2


def test_a_model_object_and_numpy_arrays_from_python(tmp_path):
    import protocol_models

    x, y = learnable_digits(512, seed=1)
    xt, yt = learnable_digits(200, seed=2)
    model = protocol_models.ShiftedLabels()
    summary = train(TrainConfig(epochs=2, batch_size=64, lr=3e-3, output_dir=str(tmp_path / "run"), quiet=True),
                    model=model, data=(x.reshape(-1, 784) / 255.0, y, xt, yt.astype(np.int64)))
    # An object: named by its class, and marked as not rebuildable from that name.
    assert summary["config"]["model"] == "python-object:protocol_models:ShiftedLabels"
    assert summary["model_reproducible"] is False
    assert summary["dataset"].startswith("mnist from numpy arrays")
    # The object itself was trained (on label + 1).
    predicted = np.argmax(model.predict(xt.reshape(-1, 784).astype("float32") / 255.0, verbose=0), axis=1)
    assert np.mean(predicted == (yt + 1) % 10) > 0.8
