"""Models that leave mnist_core and come back: the same classes from the command line and
Python, no silent pixel scale, the model's own module imported, TFLite checked, Keras' loss."""

import json
import os
import sys

import keras
import numpy as np
import pytest

import mnist_core
from conftest import learnable_digits, run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small MNIST classifier trained by mnist_core on learnable digits, with TFLite int8."""
    from conftest import make_idx_dir

    root = tmp_path_factory.mktemp("exchange")
    data = make_idx_dir(root / "data")
    summary = mnist_core.train(mnist_core.TrainConfig(data_dir=str(data), model="mlp_small", epochs=3,
                                                      output_dir=str(root / "run"), quiet=True,
                                                      export_tflite="int8"))
    return root, data, summary


def test_tflite_int8_is_checked_against_the_keras_model_and_runs_from_its_file(trained):
    import tensorflow as tf

    root, data, summary = trained
    lite = summary["tflite"]
    assert lite["mode"] == "int8" and lite["examples"] == 200
    assert lite["agreement"] >= 0.95 and abs(lite["accuracy"] - lite["keras_accuracy"]) <= 0.05
    interpreter = tf.lite.Interpreter(model_path=str(root / "run" / "model.tflite"))
    entry = interpreter.get_input_details()[0]
    x, _ = learnable_digits(16, seed=2)
    inputs = (x.astype(np.float32) / 255.0).reshape(-1, *summary["input_shape"])
    interpreter.resize_tensor_input(entry["index"], inputs.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(entry["index"], inputs)
    interpreter.invoke()
    lite_classes = interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).argmax(1)
    model = keras.models.load_model(root / "run" / "model.keras")
    assert (lite_classes == model.predict(inputs, verbose=0).argmax(1)).mean() >= 0.9


def test_the_same_images_give_the_same_classes_from_the_command_line_and_python(trained, tmp_path):
    root, _, _ = trained
    x, _ = learnable_digits(12, seed=4)
    paper = 255 - x  # dark on light, as a scan of paper
    np.save(tmp_path / "paper.npy", paper)
    result = run_cli("mnist_core.predict", "--model-path", str(root / "run" / "model.keras"),
                     str(tmp_path / "paper.npy"), "--json")
    assert result.returncode == 0, result.stderr
    cli = [json.loads(line)["predictions"][0] for line in result.stdout.splitlines() if line.startswith("{")]
    python = mnist_core.predict_proba(root / "run" / "model.keras", paper)
    assert [p["class"] for p in cli] == python.argmax(1).tolist()
    assert [p["probability"] for p in cli] == pytest.approx(python.max(1).tolist(), abs=1e-6)
    prepared = mnist_core.preprocess(paper, "mnist")
    assert np.array_equal(mnist_core.predict_proba(root / "run" / "model.keras", prepared, preprocess="none"),
                          python)


def _plain_keras_model(path, rescaling: bool):
    x, y = learnable_digits(512, seed=1)
    keras.utils.set_random_seed(0)
    layers = [keras.Input((28, 28))] + ([keras.layers.Rescaling(1 / 255)] if rescaling else []) + \
        [keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")]
    model = keras.Sequential(layers)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x if rescaling else x / 255.0, y, epochs=2, verbose=0)
    model.save(path)
    return model


@pytest.mark.parametrize("rescaling", [True, False])
def test_a_plain_keras_model_is_fed_its_scale_as_keras_evaluates_it_and_the_guess_is_said(
        trained, tmp_path, capsys, rescaling):
    _, data, _ = trained
    path = tmp_path / "plain.keras"
    model = _plain_keras_model(path, rescaling)
    xt, yt = learnable_digits(200, seed=2)
    keras_loss, keras_accuracy = model.evaluate(xt if rescaling else xt / 255.0, yt, verbose=0)
    capsys.readouterr()
    result = mnist_core.evaluate_model(path, (xt, yt))
    warning = capsys.readouterr().err
    assert "carries no record of the pixel scale" in warning and "pixels=" in warning
    assert result["test_accuracy"] == pytest.approx(keras_accuracy, abs=1e-9)
    assert result["test_loss"] == pytest.approx(keras_loss, rel=1e-4)
    # Said explicitly: no warning; the other scale feeds other numbers (another answer).
    other = mnist_core.evaluate_model(path, (xt, yt), pixels="unit" if rescaling else "raw")
    assert "pixel scale" not in capsys.readouterr().err
    assert other["test_loss"] != pytest.approx(result["test_loss"], rel=1e-3)


def test_the_users_own_save_after_a_run_records_the_pixel_scale(tmp_path, capsys):
    x, y = learnable_digits(256, seed=1)
    raw = x.astype(np.float32)  # 0-255 floats, as some tutorials feed them: recorded as raw
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
    summary = mnist_core.train(mnist_core.TrainConfig(epochs=1, output_dir=str(tmp_path / "run"), quiet=True),
                               model=model, data=(raw, y, raw[:64], y[:64]))
    assert summary["config"]["pixels"] == "raw"
    model.save(tmp_path / "mine.keras")
    info = mnist_core.load_classifier(tmp_path / "mine.keras").info
    assert info.pixels == "raw" and info.source == "model"
    assert "pixel scale" not in capsys.readouterr().err
    assert keras.models.load_model(tmp_path / "mine.keras") is not None  # still plain Keras


def test_evaluate_imports_the_module_that_registers_the_models_class(tmp_path):
    (tmp_path / "mynets.py").write_text(
        "import keras\n\n"
        "@keras.saving.register_keras_serializable(package='mynets')\n"
        "class Net(keras.Model):\n"
        "    def __init__(self, **kwargs):\n"
        "        super().__init__(**kwargs)\n"
        "        self.flat = keras.layers.Flatten()\n"
        "        self.out = keras.layers.Dense(10)\n\n"
        "    def call(self, x):\n"
        "        return self.out(self.flat(x))\n")
    from conftest import make_idx_dir

    data = make_idx_dir(tmp_path / "data")
    trained = run_cli("mnist_core.train", "--model", "mynets:Net", "--data-dir", str(data), "--epochs", "1",
                      "--output-dir", "run", "--quiet", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    evaluated = run_cli("mnist_core.evaluate", "--model-path", "run/model.keras", "--json", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout.splitlines()[-1])["test_examples"] == 200
    # Without its run beside it, the module is named with --import.
    (tmp_path / "alone").mkdir()
    (tmp_path / "run" / "model.keras").rename(tmp_path / "alone" / "model.keras")
    refused = run_cli("mnist_core.evaluate", "--model-path", "alone/model.keras", "--data-dir", str(data),
                      cwd=tmp_path)
    assert refused.returncode == 2 and "--import MODULE" in refused.stderr
    imported = run_cli("mnist_core.evaluate", "--model-path", "alone/model.keras", "--data-dir", str(data),
                       "--import", "mynets", "--pixels", "unit", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert imported.returncode == 0, imported.stderr


def test_a_saturated_softmax_model_scores_keras_own_loss(tmp_path):
    x, y = learnable_digits(256, seed=1)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, activation="softmax")])
    model.build()
    model.layers[-1].kernel.assign(np.random.default_rng(0).normal(0, 3.0, (784, 10)).astype(np.float32))
    model.compile(loss="sparse_categorical_crossentropy")
    inputs = x.reshape(-1, 784).astype(np.float32) / 255.0
    keras_loss = model.evaluate(inputs, y, verbose=0)
    assert keras_loss > -np.log(1e-7)  # saturated: clipping at epsilon would cap it near 16.1
    result = mnist_core.evaluate_model(model, (x, y), pixels="unit")
    assert result["test_loss"] == pytest.approx(keras_loss, rel=1e-5)


def test_a_script_that_trains_and_exports_shows_only_mnist_cores_lines(tmp_path):
    """As a user copies it into a script: the first mnist_core call loads TensorFlow, whose
    start-up lines, and the TFLite converter's and interpreter's own prints, stay off stderr."""
    import subprocess

    from conftest import make_idx_dir

    data = make_idx_dir(tmp_path / "data")
    script = tmp_path / "train it.py"
    script.write_text(
        "import mnist_core\n"
        f"config = mnist_core.TrainConfig(data_dir={str(data)!r}, model='mlp_small', epochs=1,\n"
        f"                                output_dir={str(tmp_path / 'run')!r}, export_tflite='int8')\n"
        "print('tflite', mnist_core.train(config)['tflite']['mode'])\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP_")}  # a user's shell
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    assert "tflite int8" in result.stdout and "model.tflite (int8, " in result.stdout
