"""Users' fit code as the tutorials and Keras' guide write it: recipes per script, models ending
in softmax or sigmoid, compiled models with one-hot labels, stock callbacks, .h5 files."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import guide_models
from conftest import REPO, error_lines, learnable_digits, make_idx_dir, run_cli
from mnist_core import recipes
from mnist_core.config import TrainConfig
from mnist_core.errors import ConfigError, DataError, python_words
from mnist_core.reporting import Reporter
from mnist_core.trainer import Trainer

# Part of the full suite (`python -m pytest -m "not slow"`, what CI runs), not of the quick
# `python -m pytest` a contributor runs between edits: its commands and harnesses take minutes.
pytestmark = pytest.mark.full

TESTS = str(REPO / "tests")
SCRIPTS = ("000", "001a", "001b", "002a", "002b", "002c", "003a", "003b", "004")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_idx_dir(tmp_path_factory.mktemp("tutorials") / "data", n_train=256, n_test=100)


def _arrays(flat=True, scale=255.0):
    """The tutorials' own arrays: float32 pixels / 255 (or unscaled), one-hot labels."""
    x, y = learnable_digits(256, seed=1)
    xt, yt = learnable_digits(100, seed=2)
    shape = (-1, 784) if flat else (-1, 28, 28, 1)
    return (x.reshape(shape).astype("float32") / scale, keras.utils.to_categorical(y, 10),
            xt.reshape(shape).astype("float32") / scale, keras.utils.to_categorical(yt, 10))


def _train(tmp_path, model, data=None, callbacks=None, **options):
    values = dict(epochs=3, batch_size=32, output_dir=str(tmp_path / "run"), quiet=True, jit_compile="off")
    values.update(options)
    return Trainer(TrainConfig(**values), Reporter(quiet=True), model=model, data=data, callbacks=callbacks).run()


# ---------------------------------------------------------------- the same update as fit


def _parity(replicas, cases):
    result = subprocess.run([sys.executable, str(REPO / "tests" / "fit_parity.py"), str(replicas), ",".join(cases)],
                            capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return {row["case"]: row for row in map(json.loads, (l for l in result.stdout.splitlines() if l.startswith("{")))}


@pytest.mark.parametrize("replicas", [1, 2])
def test_scripts_and_guide_examples_update_as_fit_does(replicas):
    """8 steps from the same weights and dropout seeds on the same batches: each tutorial
    script's recipe against the script's own model and compile under fit, and each guide
    example (compiled by the user, trained through its own train_step) against fit. Observed
    bitwise equal (0.0) on 1 and 2 replicas; 1e-6 leaves room for a platform whose graph
    optimiser fuses the two programs differently."""
    cases = [f"script:{s}" for s in SCRIPTS] + [f"guide:{g}" for g in guide_models.EXAMPLES]
    rows = _parity(replicas, cases)
    assert set(rows) == set(cases)
    for case, row in rows.items():
        assert row["max_update"] > 1e-6, row  # it trained
        assert row["max_weight_diff"] <= 1e-6, row
    assert rows["script:003a"]["outputs"] == "sigmoid" and rows["script:004"]["outputs"] == "softmax"
    assert all(rows[f"guide:{g}"]["compiled_by_user"] for g in guide_models.EXAMPLES)


# ---------------------------------------------------------------- recipes, one per script


def test_one_recipe_per_script_listed_with_its_id():
    by_script = {r.meta.get("script"): r for r in recipes.all_recipes("tutorial")}
    assert sorted(by_script) == sorted(SCRIPTS)
    assert by_script["001a"].options["epsilon"] == 1e-08 and by_script["001a"].options["batch_size"] == 32
    assert by_script["003a"].options["model"] == "mlp15_sigmoid" and by_script["003a"].options["pixels"] == "raw"
    assert all(r.options["loss"] == "categorical_crossentropy" for r in by_script.values())
    listing = run_cli("mnist_core.recipes")
    assert listing.returncode == 0
    for script in SCRIPTS:
        assert f"tutorial-{script}" in listing.stdout


def test_a_script_recipe_trains_from_the_command_line(data_dir, tmp_path):
    out = tmp_path / "run"
    result = run_cli("mnist_core.train", "--config", "recipes/tutorial-003a.toml", "--data-dir", str(data_dir),
                     "--epochs", "2", "--output-dir", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "model ends in sigmoid: its outputs are probabilities" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outputs"] == "sigmoid" and summary["config"]["pixels"] == "raw"


# ---------------------------------------------------------------- seed 004 as written


def test_seed_004_as_written(tmp_path):
    """The tutorial's model ending in softmax, compiled with categorical_crossentropy,
    one-hot labels, its TensorBoard callback, an .h5 save and reload."""
    from tensorflow.keras import regularizers
    from tensorflow.keras.layers import Activation, BatchNormalization, Dense, Dropout
    from tensorflow.keras.models import Sequential
    import tensorflow as tf

    X_train, Y_train, X_test, Y_test = _arrays()
    model = Sequential()
    model.add(Dense(512, input_shape=(784,)))
    model.add(Activation("relu"))
    model.add(Dropout(0.2))
    model.add(Dense(512, kernel_regularizer=regularizers.l2(0.001)))
    model.add(BatchNormalization())
    model.add(Activation("relu"))
    model.add(Dropout(0.2))
    model.add(Dense(10))
    model.add(Activation("softmax"))
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    graph = tmp_path / "graph"
    tensorboard = tf.keras.callbacks.TensorBoard(log_dir=str(graph), histogram_freq=1, write_graph=True,
                                                 write_images=True)
    summary = _train(tmp_path, model, data=(X_train, Y_train, X_test, Y_test), callbacks=[tensorboard], epochs=4,
                     batch_size=128)
    assert summary["test_accuracy"] > 0.9 and summary["outputs"] == "softmax"
    history = model.history.history
    assert len(history["loss"]) == 4 and len(history["val_accuracy"]) == 4
    tags = _tensorboard_tags(graph / "train")
    assert {"epoch_loss", "epoch_accuracy", "keras"} <= tags
    assert any(t.endswith("/histogram") for t in tags) and any(t.endswith("/image") for t in tags)
    assert {"epoch_loss", "epoch_accuracy"} <= _tensorboard_tags(graph / "validation")
    assert (tmp_path / "run" / "tensorboard" / "train").is_dir(), "mnist_core's own logs are written beside"
    model.save(tmp_path / "my_model.h5")
    reloaded = tf.keras.models.load_model(tmp_path / "my_model.h5")
    for a, b in zip(model.get_weights(), reloaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(reloaded.predict(X_test[:8], verbose=0), model.predict(X_test[:8], verbose=0))


def _tensorboard_tags(directory):
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(str(directory), size_guidance={"tensors": 0})
    accumulator.Reload()
    return set(accumulator.Tags()["tensors"])


# ---------------------------------------------------------------- probabilities, never a second softmax


def _softmax_model():
    return keras.Sequential([keras.Input((784,)), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(10, activation="softmax")])


def test_a_softmax_model_is_evaluated_predicted_and_exported_as_probabilities(data_dir, tmp_path):
    import mnist_core
    from mnist_core import inference

    model = _softmax_model()
    summary = _train(tmp_path, model, data_dir=str(data_dir), export_savedmodel=True, export_h5=True)
    assert summary["outputs"] == "softmax" and summary["test_accuracy"] > 0.9
    x, y = learnable_digits(100, seed=2)
    expected = model.predict(x.reshape(-1, 784).astype("float32") / 255.0, verbose=0)
    for path in (tmp_path / "run" / "model.keras", tmp_path / "run" / "saved_model", tmp_path / "run" / "model.h5"):
        probabilities = mnist_core.predict_proba(path, x)
        np.testing.assert_allclose(probabilities, expected, atol=2e-6)
        report = mnist_core.evaluate_model(path, (x, y))
        cross_entropy = -np.mean(np.log(np.clip(expected[np.arange(len(y)), y], 1e-7, 1.0)))
        assert abs(report["test_loss"] - cross_entropy) < 1e-4, (path, report["test_loss"], cross_entropy)
        assert report["test_accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-9)
    np.testing.assert_allclose(mnist_core.predict_proba(model, x), expected, atol=2e-6)
    assert inference.load_classifier(tmp_path / "run" / "model.keras").info.outputs == "softmax"


def test_subclassed_models_are_read_by_their_outputs_or_their_declaration():
    from mnist_core.models.outputs import output_kind

    class Softmaxed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(10)

        def call(self, x):
            return keras.ops.softmax(self.dense(x))

    class Declared(Softmaxed):
        mnist_outputs = "logits"

    class Logits(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(10)

        def call(self, x):
            return self.dense(x)

    assert output_kind(Softmaxed(), (784,)) == "softmax"
    assert output_kind(Declared(), (784,)) == "logits"
    assert output_kind(Logits(), (784,)) == "logits"
    assert output_kind(keras.Sequential([keras.Input((4,)), keras.layers.Dense(10, activation="sigmoid")])) \
        == "sigmoid"
    assert output_kind(keras.Sequential([keras.Input((4,)), keras.layers.Dense(10), keras.layers.Softmax()])) \
        == "softmax"


def test_unscaled_pixels_as_the_tutorials_feed_them(tmp_path):
    X_train, Y_train, X_test, Y_test = _arrays(scale=1.0)  # astype('float'), never divided by 255
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(15, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.001), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    summary = _train(tmp_path, model, data=(X_train, Y_train, X_test, Y_test))
    assert summary["config"]["pixels"] == "raw" and summary["test_accuracy"] > 0.25  # learning, from 0-255 inputs
    import mnist_core

    # The saved model is fed raw pixels too: its predictions equal the model's own.
    x, _ = learnable_digits(16, seed=2)
    np.testing.assert_allclose(mnist_core.predict_proba(tmp_path / "run" / "model.keras", x),
                               model.predict(x.reshape(-1, 784).astype("float32"), verbose=0), atol=2e-6)


# ---------------------------------------------------------------- Keras' guide, as written


@pytest.mark.parametrize("example", guide_models.EXAMPLES)
def test_guide_examples_train_through_the_python_api(tmp_path, example):
    model = getattr(guide_models, example)()
    x, y, xt, yt = _arrays()
    summary = _train(tmp_path, model, data=(x, y.argmax(1), xt, yt.argmax(1)), epochs=3)
    assert summary["metrics"]["train_loss"] > 0 and summary["test_examples"] == 100
    assert summary["test_accuracy"] > 0.9, summary["metrics"]
    assert set(model.history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}


@pytest.mark.parametrize("half,strategy", [(0, []), (1, ["--strategy", "mirrored", "--cpu-replicas", "2"])],
                         ids=["1", "mirrored"])
def test_guide_examples_train_from_the_command_line(data_dir, tmp_path, half, strategy):
    # Each example once from the command line, half of them on one replica, half mirrored
    # (the parity test above runs every example on both).
    examples = sorted(guide_models.EXAMPLES)
    for example in examples[half::2]:
        out = tmp_path / example
        result = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--model", f"guide_models:{example}",
                         "--epochs", "2", "--batch-size", "32", "--output-dir", str(out), *strategy,
                         env={"PYTHONPATH": TESTS})
        assert result.returncode == 0, (example, result.stderr)
        assert result.stderr == ""
        assert "model comes compiled (" in result.stdout
        summary = json.loads((out / "summary.json").read_text())
        assert summary["test_accuracy"] > 0.5, (example, summary["metrics"])


# ---------------------------------------------------------------- what cannot be honoured: one line


def test_flags_a_compiled_model_cannot_take_are_refused(tmp_path):
    for option, value in (("lr", 0.01), ("optimizer", "sgd"), ("label_smoothing", 0.1), ("on_nonfinite", "skip"),
                          ("loss", "categorical_crossentropy"), ("ema", 0.9)):
        model = _softmax_model()
        model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
        with pytest.raises(ConfigError) as raised:
            _train(tmp_path, model, data=_arrays(), **{option: value})
        flag = "--" + option.replace("_", "-")
        # From Python, in Python words: lr=0.01, optimizer="sgd".
        assert str(raised.value).startswith(python_words(f"{flag} {value}: model= (a Sequential object) comes "
                                                         "compiled (RMSprop, loss categorical_crossentropy, "
                                                         "metrics accuracy)")), str(raised.value)
        assert python_words(f"drop {flag}, or pass the model uncompiled") in str(raised.value)
    eager = _softmax_model()
    eager.compile(optimizer="adam", loss="categorical_crossentropy", run_eagerly=True)
    with pytest.raises(ConfigError, match="run_eagerly=True"):
        _train(tmp_path, eager, data=_arrays())
    assert not (tmp_path / "run").exists()


def test_labels_and_pixels_that_are_not_what_they_seem_are_refused(tmp_path):
    x, y, xt, yt = _arrays()
    soft = y * 0.9 + 0.01
    with pytest.raises(DataError, match=r"^data= y_train has shape \(256, 10\) but its rows are not one-hot"):
        _train(tmp_path, _softmax_model(), data=(x, soft, xt, yt))
    with pytest.raises(DataError, match=r"^data= x_train has values in \[0, 65025\]"):
        _train(tmp_path, _softmax_model(), data=(x * 255 * 255, y, xt, yt))
    with pytest.raises(ConfigError, match="^pixels=\"raw\": data= x_train holds floats in \\[0, 1\\]"):
        _train(tmp_path, _softmax_model(), data=(x, y, xt, yt), pixels="raw")


def test_a_compiled_model_object_under_mirrored_is_refused_but_its_factory_trains(data_dir, tmp_path):
    result = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--model", "guide_models:first_simple_example",
                     "--strategy", "mirrored", "--cpu-replicas", "2", "--lr", "0.01", "--output-dir",
                     str(tmp_path / "run"), env={"PYTHONPATH": TESTS})
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert "--lr 0.01: --model 'guide_models:first_simple_example' comes compiled (Adam" in line


def test_h5_files_are_read_by_evaluate_and_predict(data_dir, tmp_path):
    out = tmp_path / "run"
    result = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--model", "mlp15_softmax", "--epochs", "2",
                     "--export-h5", "--output-dir", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert (out / "model.h5").exists()
    evaluated = run_cli("mnist_core.evaluate", "--model-path", str(out / "model.h5"), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["model_format"] == "h5"
    assert report["test_accuracy"] == pytest.approx(json.loads((out / "summary.json").read_text())["test_accuracy"])
    x, _ = learnable_digits(3, seed=2)
    np.save(tmp_path / "three.npy", x)
    predicted = run_cli("mnist_core.predict", "--model-path", str(out / "model.h5"), str(tmp_path / "three.npy"))
    assert predicted.returncode == 0, predicted.stderr
    assert len(predicted.stdout.splitlines()) == 3
    assert os.path.getsize(out / "model.h5") > 0
