"""The step/loop/controller layers: exact math, no retracing, learning, outputs."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from mnist_core import loop as loop_lib
from mnist_core import step as step_lib
from mnist_core.config import TrainConfig
from mnist_core.trainer import Trainer
from mnist_core.reporting import Reporter


def _config(idx_dir, tmp_path, **changes):
    values = dict(data_dir=str(idx_dir), model="mlp_small", epochs=2, batch_size=64,
                  output_dir=str(tmp_path / "run"), quiet=True)
    values.update(changes)
    return TrainConfig(**values)


def test_loop_never_retraces_and_model_learns(idx_dir, tmp_path):
    traces = []
    # 512 examples / 64 = 8 steps per epoch in loops of 3, 3, 2: three loop lengths, 3 epochs.
    config = _config(idx_dir, tmp_path, epochs=3, steps_per_loop=3, optimizer="adam", lr=3e-3)
    summary = Trainer(config, Reporter(quiet=True), on_trace=lambda: traces.append(1)).run()
    assert len(traces) == 1, f"train loop traced {len(traces)} times"
    assert summary["steps"] == 24
    assert summary["test_accuracy"] > 0.9, summary
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [e["epoch"] for e in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "images_per_second", "seconds"):
        assert key in history[0]
    assert history[1]["images_per_second"] > 0
    assert all(e["test_examples"] == 200 for e in history), "every test example, exactly once"


@pytest.mark.parametrize("target, expected", [(1e-9, 1), (1e9, 8)], ids=["fast-calls", "an-epoch-a-call"])
def test_automatic_steps_per_loop_are_chosen_by_time(idx_dir, tmp_path, monkeypatch, target, expected):
    """--steps-per-loop 0 times a call of the first length (a tenth of an epoch: 1 step of
    the 8 here) and then makes calls of TARGET_CALL_SECONDS: with a tiny target every call
    is 1 step, with a huge one an epoch. The weights do not depend on it."""
    from mnist_core import program as program_lib

    monkeypatch.setattr(program_lib, "TARGET_CALL_SECONDS", target)
    calls = []

    class Calls(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            calls.append(batch)

    config = _config(idx_dir, tmp_path, epochs=3, steps_per_loop=0, output_dir=str(tmp_path / str(target)))
    summary = Trainer(config, Reporter(quiet=True), callbacks=[Calls()]).run()
    assert summary["steps_per_loop"] == expected
    # Calls of 1 step (traced, then timed), then the chosen length up to each epoch's end:
    # 1, 1, 6, 8, 8 steps, or 24 calls of 1.
    assert len(calls) == {1: 24, 8: 5}[expected]
    fixed = Trainer(_config(idx_dir, tmp_path, epochs=3, steps_per_loop=3, output_dir=str(tmp_path / "fixed")),
                    Reporter(quiet=True)).run()
    assert fixed["weights_sha256"] == summary["weights_sha256"]


def test_train_step_is_bitwise_model_fit(tmp_path):
    """Same init, same batches: our compiled loop and model.fit end with identical weights."""
    keras.utils.set_random_seed(1)

    def make():
        return keras.Sequential([
            keras.Input((784,)),
            keras.layers.Dense(32, kernel_regularizer=keras.regularizers.L2(1e-3)),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
            keras.layers.Dense(10),
        ])

    rng = np.random.default_rng(0)
    x = rng.random((512, 784), dtype=np.float32)
    y = rng.integers(0, 10, 512).astype(np.int32)
    fit_model, our_model = make(), make()
    our_model.set_weights(fit_model.get_weights())
    fit_model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    fit_model.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0)

    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(our_model.trainable_variables)
    strategy = tf.distribute.get_strategy()
    iterator = iter(tf.data.Dataset.from_tensor_slices((x, y)).batch(64).repeat())
    train_loop = loop_lib.make_train_loop(strategy, step_lib.make_train_step(our_model, optimizer, 64))
    train_loop(iterator, tf.constant(10))
    train_loop(iterator, tf.constant(6))
    for a, b in zip(fit_model.get_weights(), our_model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_loss_includes_regularisation_once():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((784,)),
                              keras.layers.Dense(16, kernel_regularizer=keras.regularizers.L1(1e-2)),
                              keras.layers.Dense(10)])
    x = np.random.default_rng(1).random((32, 784), dtype=np.float32)
    y = np.arange(32, dtype=np.int32) % 10
    expected_ce = float(tf.reduce_mean(step_lib.per_example_loss(y, model(x))))
    expected_reg = float(sum(model.losses))
    assert expected_reg > 0.1
    optimizer = keras.optimizers.SGD(0.0)
    optimizer.build(model.trainable_variables)
    train_loop = loop_lib.make_train_loop(tf.distribute.get_strategy(),
                                          step_lib.make_train_step(model, optimizer, 32))
    out = train_loop(iter(tf.data.Dataset.from_tensors((x, y)).repeat()), tf.constant(1))
    assert float(out["loss"]) == pytest.approx(expected_ce + expected_reg, rel=1e-5)


@pytest.mark.parametrize("optimizer, schedule", [("sgd", "cosine"), ("rmsprop", "exponential"),
                                                 ("adadelta", "constant")])
def test_optimizers_and_schedules(idx_dir, tmp_path, optimizer, schedule):
    config = _config(idx_dir, tmp_path, optimizer=optimizer, lr_schedule=schedule, lr=0.05,
                     lr_decay_rate=0.5, epochs=2)
    Trainer(config, Reporter(quiet=True)).run()
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    rates = [e["learning_rate"] for e in history]
    if schedule == "constant":
        assert rates == pytest.approx([0.05, 0.05])
    elif schedule == "exponential":
        assert rates == pytest.approx([0.025, 0.0125])  # halved once per epoch
    else:
        assert rates[0] == pytest.approx(0.025) and rates[1] == pytest.approx(0.0, abs=1e-7)
    assert np.isfinite(history[-1]["train_loss"])


def test_jit_compile_trains(idx_dir, tmp_path):
    config = _config(idx_dir, tmp_path, model="lenet", jit_compile=True, epochs=3, optimizer="adam", lr=3e-3)
    assert Trainer(config, Reporter(quiet=True)).run()["test_accuracy"] > 0.9


def test_same_seed_same_run(idx_dir, tmp_path):
    runs = []
    for name in ("a", "b"):
        config = _config(idx_dir, tmp_path, model="mlp_l1", output_dir=str(tmp_path / name))
        trainer = Trainer(config, Reporter(quiet=True))
        trainer.run()
        runs.append(trainer.model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_validation_split_is_reported(idx_dir, tmp_path):
    Trainer(_config(idx_dir, tmp_path, val_split=0.25, epochs=1), Reporter(quiet=True)).run()
    entry = json.loads((tmp_path / "run" / "history.json").read_text())[0]
    assert entry["val_examples"] == 128 and entry["test_examples"] == 200
    assert 0 <= entry["val_accuracy"] <= 1


def test_target_accuracy_stops_after_the_first_epoch_reaching_it(idx_dir, tmp_path):
    config = _config(idx_dir, tmp_path, model="mlp_small", epochs=30, target_accuracy=0.9, lr=1e-3)
    summary = Trainer(config, Reporter(quiet=True)).run()
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    accuracies = [e["test_accuracy"] for e in history]
    assert accuracies[-1] >= 0.9 and all(a < 0.9 for a in accuracies[:-1])
    assert len(history) < 30 and summary["epochs"] == len(history)
