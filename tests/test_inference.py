"""Using a trained model: SavedModel export, evaluate, predict, plots, TensorBoard extras.

One small run (trained once per module, in a subprocess as users run it) serves every
test here; tests that need no model use hand-made inputs whose answers are known.
"""

import json
import sys

import numpy as np
import pytest

from conftest import error_lines, learnable_digits, make_idx_dir, run_cli

BATCH = 64  # 512 training examples: 8 steps per epoch


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished 3-epoch ``mlp_l1`` (L1-regularised) run with a SavedModel, histograms and a profile of steps 10..12."""
    base = tmp_path_factory.mktemp("inference")
    data = make_idx_dir(base / "data")
    out = base / "run"
    result = run_cli("mnist_core.train", "--data-dir", str(data), "--output-dir", str(out), "--model", "mlp_l1",
                     "--batch-size", str(BATCH), "--epochs", "3", "--lr", "1e-2", "--export-savedmodel",
                     "--histograms", "--profile-steps", "10,12", "--steps-per-loop", "3")
    assert result.returncode == 0, result.stderr
    return out


def _test_set():
    return learnable_digits(200, seed=2)  # what make_idx_dir writes as the test split


def _keras_logits(run_dir, images):
    import keras
    import tensorflow as tf

    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    return np.asarray(model(tf.constant(images.reshape(len(images), -1), tf.float32) / 255.0, training=False))


# --------------------------------------------------------------------------- SavedModel


def test_savedmodel_signature_serves_uint8_images_like_the_keras_model(run_dir):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(run_dir / "saved_model"))
    serve = loaded.signatures["serving_default"]
    spec = serve.structured_input_signature[1]["images"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, 28, 28]
    assert set(serve.structured_outputs) == {"probabilities", "classes", "logits"}
    assert float(loaded.signatures["regularization_loss"]()["loss"]) > 0  # mlp_l1's L1 term

    images, _ = _test_set()
    out = serve(images=tf.constant(images))
    logits = _keras_logits(run_dir, images)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(out["classes"].numpy(), logits.argmax(1))
    assert json.loads((run_dir / "summary.json").read_text())["savedmodel_path"] == str(run_dir / "saved_model")


# --------------------------------------------------------------------------- evaluate


def test_metrics_per_class_from_a_known_confusion():
    from mnist_core.evaluation import metrics

    labels = np.array([0, 0, 1, 1, 2])
    predicted = np.array([0, 1, 1, 1, 0])
    logits = np.eye(3)[predicted] * 5.0
    result = metrics(logits, labels, ["a", "b", "c"])
    assert result["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    rows = {r["name"]: r for r in result["per_class"]}
    assert rows["a"]["precision"] == pytest.approx(1 / 2) and rows["a"]["recall"] == pytest.approx(1 / 2)
    assert rows["b"]["precision"] == pytest.approx(2 / 3) and rows["b"]["recall"] == 1.0
    assert rows["b"]["f1"] == pytest.approx(0.8)
    assert rows["c"]["precision"] == 0.0 and rows["c"]["recall"] == 0.0 and rows["c"]["support"] == 1
    assert result["test_accuracy"] == pytest.approx(3 / 5)
    # Cross-entropy of logits 5·onehot: -log(e^5 / (e^5 + 2)) for right, -log(1 / (e^5 + 2)) for wrong.
    right, wrong = -np.log(np.e ** 5 / (np.e ** 5 + 2)), -np.log(1 / (np.e ** 5 + 2))
    assert result["test_loss"] == pytest.approx((3 * right + 2 * wrong) / 5)


@pytest.mark.parametrize("target", ["model.keras", "saved_model"])
def test_evaluate_reproduces_the_run_on_both_formats(run_dir, target):
    summary = json.loads((run_dir / "summary.json").read_text())
    result = run_cli("mnist_core.evaluate", "--model-path", str(run_dir / target), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["model_format"] == ("keras" if target == "model.keras" else "savedmodel")
    assert report["test_examples"] == 200
    assert report["test_accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-9)
    # The run's loss includes the L1 term; the SavedModel carries it as a signature.
    assert report["test_loss"] == pytest.approx(summary["test_loss"], rel=1e-5)
    matrix = np.array(report["confusion_matrix"])
    _, labels = _test_set()
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(labels, minlength=10))
    assert np.trace(matrix) == round(report["test_accuracy"] * 200)
    assert [r["support"] for r in report["per_class"]] == matrix.sum(axis=1).tolist()


def test_evaluate_prints_tables(run_dir):
    result = run_cli("mnist_core.evaluate", "--model-path", str(run_dir / "model.keras"))
    assert result.returncode == 0, result.stderr
    for text in ("per class", "precision", "macro avg", "confusion matrix", "test_accuracy"):
        assert text in result.stdout


def test_evaluate_bad_model_path_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    for path, message in ((tmp_path / "missing.keras", "no such file"),
                          (tmp_path / "empty", "neither a SavedModel (no saved_model.pb) nor a run with a saved model"),
                          (tmp_path / "junk.keras", "not a Keras model file (a .keras file is a zip archive")):
        result = run_cli("mnist_core.evaluate", "--model-path", str(path), "--dataset", "synthetic")
        assert result.returncode == 2
        lines = error_lines(result.stderr)
        assert len(lines) == 1 and str(path) in lines[0] and message in lines[0], result.stderr


def test_a_run_directory_is_its_model_and_a_weights_file_says_how_to_use_it(run_dir, tmp_path):
    import keras

    from mnist_core.errors import ModelError
    from mnist_core.inference import load_classifier

    whole = load_classifier(run_dir)
    assert whole.path == run_dir / "model.keras"
    # A run of a model Keras cannot save whole keeps its weights only.
    weights_run = tmp_path / "weights run"
    weights_run.mkdir()
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(weights_run / "model.weights.h5")
    for path, message in ((weights_run, "this run saved its weights only"),
                          (weights_run / "model.weights.h5", "a weights file holds no architecture")):
        with pytest.raises(ModelError, match=message) as raised:
            load_classifier(path)
        assert "model.load_weights" in str(raised.value)


# --------------------------------------------------------------------------- TensorBoard


def test_tensorboard_has_the_graph_once_histograms_and_the_profile(run_dir):
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(run_dir / "tensorboard" / "train"),
                                             size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    tags = acc.Tags()
    assert tags["graph"], "the model graph is written"
    assert {"loss", "accuracy", "learning_rate", "images_per_second"} <= set(tags["tensors"])
    kernels = [t for t in tags["tensors"] if t.endswith("kernel")]
    assert len(kernels) == 3, tags["tensors"]  # mlp_l1: three Dense layers
    assert [e.step for e in acc.Tensors(kernels[0])] == [8, 16, 24], "one histogram per epoch"
    traces = list((run_dir / "tensorboard" / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0


def test_step_profiler_cuts_loop_calls_at_the_profiled_steps():
    from types import SimpleNamespace

    from mnist_core.actions import StepProfiler

    profiler = StepProfiler(10, 12, logdir="unused")

    def clip(step, n):
        limit = profiler.steps_until_boundary(SimpleNamespace(step=step))
        return min(n, limit) if limit else n

    # Calls of 3 steps from step 0: 0-3, 3-6, 6-9 (ends at A-1 = 9), 9-12 (exactly A..B), 12-15.
    step, calls = 0, []
    while step < 15:
        n = clip(step, 3)
        calls.append((step + 1, step + n))
        step += n
    assert calls == [(1, 3), (4, 6), (7, 9), (10, 12), (13, 15)]
    assert clip(0, 100) == 9 and clip(9, 100) == 3 and clip(12, 100) == 100


def test_profile_steps_beyond_the_run_is_refused(tmp_path):
    data = make_idx_dir(tmp_path / "data")
    result = run_cli("mnist_core.train", "--data-dir", str(data), "--output-dir", str(tmp_path / "run"),
                     "--batch-size", "64", "--epochs", "1", "--profile-steps", "5,20")
    assert result.returncode == 2
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "--profile-steps 5,20: the run has only 8 steps" in lines[0], result.stderr
    assert not (tmp_path / "run" / "history.json").exists()


# --------------------------------------------------------------------------- predict


def _ring(size=28, radius=6.0, width=1.6, center=(14.0, 14.0)):
    """A light ring on black: a stand-in "zero" whose geometry is known."""
    y, x = np.mgrid[0:size, 0:size]
    distance = np.hypot(y - center[0], x - center[1])
    return np.clip(1.0 - np.abs(distance - radius) / width, 0.0, 1.0)


def test_mnist_preprocessing_undoes_inversion_scale_colour_and_position():
    from mnist_core.images import to_model_input

    canonical = to_model_input(_ring(), "mnist")
    # The same ring as a photo would have it: 4x larger, dark on light, off-centre, RGB.
    big = _ring(size=150, radius=24.0, width=6.4, center=(50.0, 90.0))
    photo = np.repeat((1.0 - big)[..., None], 3, axis=-1)
    from_photo = to_model_input(photo @ np.array([0.2989, 0.5870, 0.1140]), "mnist")
    assert from_photo.dtype == np.uint8 and from_photo.shape == (28, 28)
    assert np.corrcoef(from_photo.ravel(), canonical.ravel())[0, 1] > 0.8
    assert from_photo[0].max() == 0 and from_photo[14, 14] < 30, "light ring on black, hole in the middle"
    ys, xs = np.mgrid[0:28, 0:28]
    mass = from_photo.astype(float)
    # Centred on pixel 14 by mass, to within the half pixel that whole-pixel placement allows.
    assert (mass * ys).sum() / mass.sum() == pytest.approx(14.0, abs=0.5)
    assert (mass * xs).sum() / mass.sum() == pytest.approx(14.0, abs=0.5)
    rows, cols = np.nonzero(from_photo > 50)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 <= 20, "fits MNIST's 20x20 box"


def test_mnist_preprocessing_keeps_real_digits(shared_data):
    from mnist_core import data
    from mnist_core.images import to_model_input

    digits = data.load_idx_dir(shared_data / "mnist-5k").test_images[:500]
    processed = np.stack([to_model_input(d / 255.0, "mnist") for d in digits])
    # MNIST digits already are 20x20-boxed and mass-centred: the recipe leaves them be.
    assert np.abs(processed.astype(int) - digits.astype(int)).mean() < 1.0
    inverted = np.stack([to_model_input(1.0 - d / 255.0, "mnist") for d in digits])
    np.testing.assert_array_equal(inverted, processed)


def test_transparent_png_strokes_read_as_ink(tmp_path):
    import tensorflow as tf

    from mnist_core.images import read_images, to_model_input

    rgba = np.zeros((40, 40, 4), np.uint8)  # black strokes on a fully transparent background
    rgba[..., 3] = (_ring(40, 10.0, 2.0, (20.0, 20.0)) * 255).astype(np.uint8)
    (tmp_path / "ring.png").write_bytes(tf.io.encode_png(rgba).numpy())
    [(name, gray)] = list(read_images(str(tmp_path / "ring.png")))
    assert gray.shape == (40, 40) and gray[0, 0] == 1.0 and gray[20, 10] < 0.1  # white paper, dark ink
    assert to_model_input(gray, "mnist").max() > 150


def test_predict_cli_files_npy_stacks_and_bad_files(run_dir, tmp_path):
    import tensorflow as tf

    images, _ = _test_set()
    expected = _keras_logits(run_dir, images[:5]).argmax(1)
    (tmp_path / "a.png").write_bytes(tf.io.encode_png(images[0][..., None]).numpy())
    (tmp_path / "b.jpg").write_bytes(tf.io.encode_jpeg(images[1][..., None], quality=100).numpy())
    np.save(tmp_path / "stack.npy", images[2:5])
    (tmp_path / "bad.png").write_bytes(b"\x89PNG but not really")
    files = [tmp_path / "a.png", tmp_path / "bad.png", tmp_path / "b.jpg", tmp_path / "missing.png",
             tmp_path / "stack.npy"]
    # The test blocks' class is their position: centring would erase it, so use them as they are.
    result = run_cli("mnist_core.predict", "--model-path", str(run_dir / "saved_model"), "--preprocess", "none",
                     "--json", "--top-k", "3", *map(str, files))
    assert result.returncode == 2, "a bad file makes the exit status 2"
    errors = error_lines(result.stderr)
    assert len(errors) == 2, result.stderr
    assert "bad.png: not a decodable" in errors[0] and "missing.png: no such file" in errors[1]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in rows] == [str(files[0]), str(files[2])] + [f"{files[4]}[{i}]" for i in range(3)]
    for row, label in zip(rows, expected):
        probabilities = [p["probability"] for p in row["predictions"]]
        assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
        assert row["predictions"][0]["class"] == label
    text = run_cli("mnist_core.predict", "--model-path", str(run_dir / "model.keras"), "--preprocess", "none",
                   str(files[0]))
    assert text.returncode == 0, text.stderr
    assert text.stdout.strip() == f"{files[0]}: {expected[0]} {rows[0]['predictions'][0]['probability']:.4f}"


def test_predict_none_needs_28x28(run_dir, tmp_path):
    np.save(tmp_path / "big.npy", np.zeros((30, 30), np.uint8))
    result = run_cli("mnist_core.predict", "--model-path", str(run_dir / "model.keras"), "--preprocess", "none",
                     str(tmp_path / "big.npy"))
    assert result.returncode == 2
    assert "big.npy: --preprocess none needs a 28x28 image, got 30x30" in error_lines(result.stderr)[0]


# --------------------------------------------------------------------------- plots


def test_plot_writes_curves_and_samples(run_dir, tmp_path):
    import tensorflow as tf

    result = run_cli("mnist_core.plot", str(run_dir), "--out", str(tmp_path), "--samples", "12")
    assert result.returncode == 0, result.stderr
    for name in ("curves.png", "samples.png"):
        image = tf.io.decode_png((tmp_path / name).read_bytes()).numpy()
        assert image.shape[0] > 100 and image.shape[1] > 300
        assert image.std() > 10, f"{name} is not blank"


def test_sample_indices_show_the_first_images_then_the_mistakes():
    from mnist_core.plotting import sample_indices

    labels = np.arange(20) % 10
    predicted = labels.copy()
    predicted[[1, 7, 12, 15]] = 0
    assert sample_indices(predicted, labels, 8).tolist() == [0, 1, 2, 3, 7, 12, 15, 4]
    assert sample_indices(predicted, labels, 100).tolist()[:10] == list(range(10))


def test_plot_without_matplotlib_says_how_to_install(run_dir, monkeypatch, capsys):
    from mnist_core import plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert plot.main([str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "matplotlib is not installed" in err[0] and 'pip install -e ".[plot]"' in err[0]


def test_plot_of_a_directory_without_history(tmp_path, capsys):
    from mnist_core import plot

    assert plot.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "history.json: no such file" in err[0]
