"""Keras callbacks through mnist_core.train(config, callbacks=[...]) and --callback, with fit's contract."""

import csv
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, error_lines, make_idx_dir, run_cli
from mnist_core import TrainConfig, train
from mnist_core.errors import ConfigError
from mnist_core.reporting import Reporter
from mnist_core.errors import python_words

ENV = {"PYTHONPATH": str(REPO / "tests")}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # 512 examples, batch 64: 8 steps per epoch.
    return make_idx_dir(tmp_path_factory.mktemp("callbacks") / "data", n_train=512, n_test=200)


def _config(data_dir, out, **changes):
    values = dict(data_dir=str(data_dir), model="mlp_small", batch_size=64, epochs=6, lr=3e-3,
                  output_dir=str(out), quiet=True)
    values.update(changes)
    return TrainConfig(**values)


def test_early_stopping_with_restore_best_weights_ends_the_run_with_everything_written(data_dir, tmp_path):
    out = tmp_path / "run"
    # min_delta 10: nothing after the first epoch counts as better, so it stops after epoch 3
    # (patience 2) and puts back epoch 1's weights.
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=10, patience=2, restore_best_weights=True)
    summary = train(_config(data_dir, out), callbacks=[stopper], reporter=Reporter(quiet=True))
    history = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in history] == [1, 2, 3] and summary["epochs"] == 3
    assert summary["stopped_early"] and summary["weights_restored_by_callback"]
    assert summary["test_loss"] == pytest.approx(history[0]["test_loss"], rel=1e-6), "epoch 1's weights evaluated"
    assert (out / "model.keras").exists() and (out / "checkpoints" / "ckpt-24.index").exists()
    evaluated = __import__("mnist_core").evaluate_model(out / "model.keras")
    assert evaluated["test_loss"] == pytest.approx(summary["test_loss"], rel=1e-5)


def test_reduce_lr_on_plateau_changes_the_rate_and_the_checkpoint_keeps_it(data_dir, tmp_path):
    out = tmp_path / "run"
    reduce = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", min_delta=10, patience=0, factor=0.5)
    train(_config(data_dir, out, epochs=3), callbacks=[reduce], reporter=Reporter(quiet=True))
    rates = [e["learning_rate"] for e in json.loads((out / "history.json").read_text())]
    # Epoch 1 improves on nothing-yet; after epochs 2 and 3 the rate halves.
    assert rates == pytest.approx([3e-3, 3e-3, 1.5e-3])
    reader = tf.train.load_checkpoint(str(out / "checkpoints" / "ckpt-24"))
    stored = [reader.get_tensor(n) for n in reader.get_variable_to_shape_map() if "learning_rate" in n]
    assert stored and float(stored[0]) == pytest.approx(7.5e-4)


def test_csv_logger_model_checkpoint_and_fit_hook_order(data_dir, tmp_path):
    out = tmp_path / "run"
    calls = []
    recorder = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: calls.append(("train_begin",)),
        on_epoch_begin=lambda epoch, logs: calls.append(("epoch_begin", epoch)),
        on_train_batch_begin=lambda batch, logs: calls.append(("batch_begin", batch)),
        on_train_batch_end=lambda batch, logs: calls.append(("batch_end", batch, sorted(logs))),
        on_epoch_end=lambda epoch, logs: calls.append(("epoch_end", epoch)),
        on_train_end=lambda logs: calls.append(("train_end",)),
    )
    test_hooks = []
    recorder.on_test_begin = lambda logs=None: test_hooks.append("begin")
    recorder.on_test_end = lambda logs=None: test_hooks.append(sorted(logs))
    callbacks = [keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
                 keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="val_accuracy",
                                                 save_best_only=True),
                 recorder]
    model_holder = []
    callbacks.append(keras.callbacks.LambdaCallback(on_train_end=lambda logs: model_holder.append(recorder.model)))
    train(_config(data_dir, out, epochs=2, steps_per_loop=3), callbacks=callbacks, reporter=Reporter(quiet=True))
    # Loop calls of 3, 3 and 2 steps: on_train_batch_* once per call, with its first and last step.
    epoch_calls = [("epoch_begin", 0), ("batch_begin", 0), ("batch_end", 2, ["accuracy", "loss"]),
                   ("batch_begin", 3), ("batch_end", 5, ["accuracy", "loss"]),
                   ("batch_begin", 6), ("batch_end", 7, ["accuracy", "loss"]), ("epoch_end", 0)]
    assert calls[:len(epoch_calls) + 1] == [("train_begin",)] + epoch_calls
    assert calls[-1] == ("train_end",) and len(calls) == 2 + 2 * len(epoch_calls)
    assert test_hooks == ["begin", ["accuracy", "loss"]] * 2
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert {"loss", "accuracy", "test_loss", "test_accuracy", "val_loss", "val_accuracy"} <= set(rows[0])
    assert isinstance(keras.models.load_model(tmp_path / "best.keras"), keras.Model)
    assert model_holder[0].history.history["loss"], "model.history, as after fit"


def test_terminate_on_nan_stops_a_run_whose_bad_steps_are_skipped(data_dir, tmp_path):
    out = tmp_path / "run"
    config = _config(data_dir, out, model="fault_models:nan_loss_at_step_3", on_nonfinite="skip", steps_per_loop=1)
    import sys

    sys.path.insert(0, ENV["PYTHONPATH"])
    summary = train(config, callbacks=[keras.callbacks.TerminateOnNaN()], reporter=Reporter(quiet=True))
    assert summary["steps"] == 3 and summary["epochs"] == 1 and summary["stopped_early"]
    assert np.isfinite(summary["test_loss"]) and (out / "model.keras").exists()


@pytest.mark.parametrize("callback, message", [
    (keras.callbacks.ProgbarLogger(), "keras.callbacks.ProgbarLogger is not supported: mnist_core prints its own "
                                      "progress bar"),
    (keras.callbacks.SwapEMAWeights(), "keras.callbacks.SwapEMAWeights is not supported: mnist_core evaluates and "
                                       "saves the weights' moving average itself"),
    (keras.callbacks.BackupAndRestore("/tmp/x"), "--resume"),
    (keras.callbacks.EarlyStopping, "is a class; pass an instance"),
    (lambda epoch: None, "is not a keras.callbacks.Callback"),
])
def test_callbacks_that_cannot_work_are_refused(data_dir, tmp_path, callback, message):
    with pytest.raises(ConfigError, match=python_words(message)):
        train(_config(data_dir, tmp_path / "run"), callbacks=[callback])
    assert not (tmp_path / "run").exists()


def test_learning_rate_callbacks_are_refused_under_a_schedule(data_dir, tmp_path):
    with pytest.raises(ConfigError, match=python_words("ReduceLROnPlateau sets the learning rate, which --lr-schedule cosine")):
        train(_config(data_dir, tmp_path / "run", lr_schedule="cosine"),
              callbacks=[keras.callbacks.ReduceLROnPlateau()])


def test_cli_callback_flag(data_dir, tmp_path):
    marker = tmp_path / "epochs.jsonl"
    out = tmp_path / "run"
    result = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--output-dir", str(out), "--model",
                     "mlp_small", "--batch-size", "64", "--epochs", "4", "--callback", "user_callbacks:EpochMarker",
                     "--callback", "user_callbacks:stop_after_first_epoch",
                     env={**ENV, "EPOCH_MARKER": str(marker)})
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in marker.read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [0] and "test_accuracy" in lines[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["config"]["callbacks"] == ["user_callbacks:EpochMarker",
                                                                         "user_callbacks:stop_after_first_epoch"]
    assert "a callback set model.stop_training after epoch 1; stopping" in result.stdout

    broken = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "b"),
                     "--model", "mlp_small", "--batch-size", "64", "--callback", "user_callbacks:Broken", env=ENV)
    assert broken.returncode == 2
    assert error_lines(broken.stderr) == [
        "mnist-train: error: callback Broken.on_train_batch_end raised RuntimeError: disk quota of the "
        "callback's own log exceeded"], broken.stderr
    missing = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "m"),
                      "--callback", "no_such_module:make", env=ENV)
    assert missing.returncode == 2
    assert error_lines(missing.stderr) == ["mnist-train: error: --callback no_such_module:make: cannot import "
                                           "module 'no_such_module' (ModuleNotFoundError: No module named "
                                           "'no_such_module')"]
