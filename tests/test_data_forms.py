"""Data as users hold it: arrays in fit's forms, tf.data.Datasets, CSV files, image folders,
TFDS names; any image shape and class count; sample and class weights (fit parity)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import mnist_core
from mnist_core import data as data_lib
from mnist_core.errors import ConfigError, DataError

from conftest import REPO, error_lines, learnable_digits, run_cli


def letters(n, seed=0, shape=(12, 12), classes=26):
    """Learnable images of ``classes`` classes: a bright 2x2 block whose position is the class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = rng.integers(0, 40, (n, *shape)).astype(np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 6)
        images[i, row * 2:row * 2 + 2, col * 2:col * 2 + 2] = 255
    return images, labels


# ----------------------------------------------------------------------------- arrays


def test_the_forms_fit_and_load_data_use():
    x, y = learnable_digits(64, seed=1)
    xt, yt = learnable_digits(16, seed=2)
    four = data_lib.from_arrays((x, y, xt, yt))
    nested = data_lib.from_arrays(((x, y), (xt, yt)))  # keras.datasets.mnist.load_data()
    for data in (four, nested):
        assert data.num_train == 64 and data.num_test == 16 and data.num_classes == 10
        assert data.image_shape == (28, 28, 1)
    np.testing.assert_array_equal(four.train_images, nested.train_images)
    pair = data_lib.from_arrays((x, y))
    assert pair.test_labels is None and pair.num_train == 64
    no_test = data_lib.from_arrays((x, y, None, None))
    assert no_test.test_labels is None
    weighted = data_lib.from_arrays(((x, y, np.full(64, 2.0)), (xt, yt)))
    assert weighted.train_weights.dtype == np.float32 and weighted.train_weights.sum() == 128


def test_any_image_shape_and_class_count():
    x, y = letters(40, shape=(32, 32, 3))
    data = data_lib.from_arrays((x, y))
    assert data.image_shape == (32, 32, 3) and data.stored_shape == (32, 32, 3)
    assert data.num_classes == int(y.max()) + 1
    # Labels 1..26 (EMNIST letters' numbering): 27 classes, class 0 never seen.
    one_based = data_lib.from_arrays((x, y % 26 + 1), name="letters")
    assert one_based.num_classes == 27 and one_based.classes[26] == "26"
    # One-hot rows give the class count, whatever the labels present.
    one_hot = np.eye(47)[y % 5]
    assert data_lib.from_arrays((x, one_hot)).num_classes == 47
    flat = data_lib.from_arrays((np.zeros((4, 784), np.uint8), np.arange(4)))
    assert flat.stored_shape == (28, 28)
    # MNIST keeps its 10 classes when a subset lacks some.
    assert data_lib.from_arrays((np.zeros((4, 28, 28), np.uint8), np.zeros(4, int))).num_classes == 10


@pytest.mark.parametrize("arrays, message", [
    ((np.zeros((4, 28, 28)), np.zeros(4), np.zeros((4, 28, 27)), np.zeros(4)), "x_test images are"),
    ((np.zeros((4, 28, 28)), np.zeros(4), np.ones(3)), "sample_weight has shape"),
    ((np.zeros((4, 28, 28)), np.zeros(4), -np.ones(4)), "negative, NaN or infinite weights"),
    ((np.zeros((4, 28, 28)), np.zeros(4), np.zeros(4)), "all zeros"),
    ((np.zeros((4, 28, 28)), np.zeros(4), np.zeros((2, 28, 28)), None), "both be given or both be None"),
    ((np.zeros((4, 30)), np.zeros(4)), "expected images (N, H, W)"),
    ((np.zeros((4, 8, 8)), -np.ones(4)), "class indices 0 or more"),
    ((1, 2, 3, 4, 5), "a sequence of 5"),
])
def test_bad_arrays_are_named(arrays, message):
    with pytest.raises(DataError) as e:
        data_lib.from_arrays(arrays)
    assert message in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------- tf.data


def test_a_tf_data_dataset_batched_or_not_with_weights_and_tfds_dicts():
    x, y = letters(50)
    w = np.linspace(0.5, 1.5, 50).astype(np.float32)
    unbatched = tf.data.Dataset.from_tensor_slices((x, y))
    for dataset in (unbatched, unbatched.batch(8), unbatched.batch(5, drop_remainder=True),
                    tf.data.Dataset.from_tensor_slices({"image": x[..., None], "label": y})):
        data = data_lib.from_arrays(dataset, name="letters")
        np.testing.assert_array_equal(data.train_images, x)
        np.testing.assert_array_equal(data.train_labels, y)
        assert data.test_labels is None and data.source == "a tf.data.Dataset"
    weighted = data_lib.from_arrays((tf.data.Dataset.from_tensor_slices((x, y, w)).batch(16),
                                     tf.data.Dataset.from_tensor_slices((x[:10], y[:10]))))
    np.testing.assert_allclose(weighted.train_weights, w)
    assert weighted.num_test == 10
    one_hot = data_lib.from_arrays(tf.data.Dataset.from_tensor_slices((x, np.eye(30)[y])))
    assert one_hot.num_classes == 30
    np.testing.assert_array_equal(one_hot.train_labels, y)


def test_tf_data_refusals(monkeypatch):
    x, y = letters(50)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    with pytest.raises(DataError, match=r"endless \(repeat\(\)\)"):
        data_lib.from_arrays(dataset.repeat())
    with pytest.raises(DataError, match="is empty"):
        data_lib.from_arrays(dataset.take(0))
    with pytest.raises(DataError, match="test dataset has sample weights"):
        data_lib.from_arrays((dataset, tf.data.Dataset.from_tensor_slices((x, y, np.ones(50)))))
    monkeypatch.setenv("MNIST_CORE_MAX_DATA_BYTES", "1000")
    streamed = data_lib.from_arrays(dataset.batch(10))  # too large: streamed, all labels read
    assert streamed.train_stream is not None and streamed.num_train == 50
    np.testing.assert_array_equal(streamed.train_labels, y)
    assert streamed.train_stream.element_spec[0].shape == (12, 12)


# ----------------------------------------------------------------------------- files


def write_csv(path, images, labels=None, label_name="label"):
    flat = images.reshape(len(images), -1)
    header = ([label_name] if labels is not None else []) + [f"pixel{i}" for i in range(flat.shape[1])]
    rows = [",".join(map(str, ([int(l)] if labels is not None else []) + list(map(int, r))))
            for r, l in zip(flat, labels if labels is not None else [None] * len(flat))]
    path.write_text("\n".join([",".join(header), *rows]) + "\n")
    return path


def test_kaggle_csv_layout(tmp_path):
    x, y = learnable_digits(40, seed=3)
    write_csv(tmp_path / "train.csv", x, y)
    write_csv(tmp_path / "test.csv", x[:5])  # Kaggle's: pixels only, nothing to evaluate against
    data = data_lib.load("mnist", str(tmp_path))
    np.testing.assert_array_equal(data.train_images, x)
    np.testing.assert_array_equal(data.train_labels, y)
    assert data.test_labels is None and "has no labels" in data.source
    write_csv(tmp_path / "test.csv", x[:5], y[:5])
    assert data_lib.load("mnist", str(tmp_path)).num_test == 5
    rgb, classes = letters(6, shape=(4, 4, 3), classes=3)
    one = write_csv(tmp_path / "rgb.csv", rgb, classes, label_name="class")
    loaded = data_lib.load("shapes", str(one))
    assert loaded.image_shape == (4, 4, 3) and loaded.num_classes == int(classes.max()) + 1


@pytest.mark.parametrize("text, message", [
    ("label,p0,p1,p2,p3\n1,0,0,0,0\n2,0,0,x,0\n", "line 3 is not all numbers"),
    ("label,p0,p1,p2,p3\n1,0,0,0\n", "line 2 has 4 values"),
    ("label,p0,p1,p2,p3,p4\n1,0,0,0,0,0\n", "neither a square grey image"),
    ("label,p0,p1,p2,p3\n1.5,0,0,0,0\n", "must hold class indices"),
    ("1,2,3\n", "first line is numbers"),
])
def test_bad_csv_is_named_with_its_line(tmp_path, text, message):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(DataError) as e:
        data_lib.load("mnist", str(path))
    assert message in str(e.value) and str(path) in str(e.value)


def write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(image if image.ndim == 3 else image[..., None]).numpy())


def test_image_folders_per_class(tmp_path):
    x, y = letters(30, shape=(8, 8), classes=3)
    names = ["cat", "dog", "eel"]
    for split, part in (("train", slice(0, 24)), ("test", slice(24, 30))):
        for i in range(30)[part]:
            write_png(tmp_path / "pets" / split / names[y[i]] / f"{i:03}.png", x[i])
    (tmp_path / "pets" / "train" / "cat" / "notes.txt").write_text("not an image")
    data = data_lib.load("pets", str(tmp_path / "pets"))
    assert data.classes == tuple(names) and data.num_train == 24 and data.num_test == 6
    assert data.image_shape == (8, 8, 1) and "1 other files skipped" in data.source
    # Sorted by class then file name, as written.
    order = sorted(range(24), key=lambda i: (y[i], i))
    np.testing.assert_array_equal(data.train_images, x[order])
    np.testing.assert_array_equal(data.train_labels, y[order])
    # Colour, one folder of class folders, no test split.
    rgb, _ = letters(4, shape=(6, 6, 3))
    for i in range(4):
        write_png(tmp_path / "flat" / f"c{i % 2}" / f"{i}.png", rgb[i])
    flat = data_lib.load("flat", str(tmp_path / "flat"))
    assert flat.image_shape == (6, 6, 3) and flat.test_labels is None and flat.classes == ("c0", "c1")
    write_png(tmp_path / "flat" / "c1" / "big.png", np.zeros((7, 6, 3), np.uint8))
    with pytest.raises(DataError, match=r"big.png: is 6x7 pixels.*resize them first"):
        data_lib.load("flat", str(tmp_path / "flat"))


def test_an_unknown_layout_lists_the_layouts(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "readme.txt").write_text("hello")
    with pytest.raises(DataError) as e:
        data_lib.load("mnist", str(tmp_path / "stuff"))
    for layout in ("IDX", ".npz", "CSV", "image folders", "TFDS"):
        assert layout in str(e.value)


# ----------------------------------------------------------------------------- TFDS


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """A TFDS data directory with ``tiny_letters`` prepared (tests/tiny_tfds.py), offline."""
    directory = tmp_path_factory.mktemp("tfds")
    subprocess.run([sys.executable, str(REPO / "tests" / "tiny_tfds.py"), str(directory)], check=True,
                   capture_output=True, timeout=300)
    return directory


def test_a_tfds_name_from_its_info(tfds_dir):
    data = data_lib.load("tiny_letters", str(tfds_dir))
    assert data.classes[:3] == ("a", "b", "c") and data.num_classes == 26
    assert data.image_shape == (12, 12, 1) and (data.num_train, data.num_test) == (260, 52)


def test_unknown_and_unprepared_tfds_names_are_one_line():
    with pytest.raises(DataError) as e:
        mnist_core.load_data("kmnistt")
    assert "kmnistt: not a dataset mnist_core or TensorFlow Datasets knows" in str(e.value)
    assert "--" not in str(e.value), "Python words from Python"
    with pytest.raises(DataError, match=r"dataset kmnist: not prepared .*\$MNIST_CORE_NO_DOWNLOAD"):
        data_lib.load("kmnist")  # known to TFDS, not prepared here, no network


# ----------------------------------------------------------------------------- weights


def test_class_weights():
    x, y = np.zeros((6, 4, 4), np.uint8), np.array([0, 0, 0, 0, 1, 2])
    data = data_lib.from_arrays((x, y), name="abc")
    balanced = data_lib.with_class_weight(data, "balanced")
    np.testing.assert_allclose(balanced.train_weights, [0.5, 0.5, 0.5, 0.5, 2, 2])
    given = data_lib.with_class_weight(data, {2: 4.0})
    np.testing.assert_allclose(given.train_weights, [1, 1, 1, 1, 1, 4])
    with pytest.raises(DataError, match="class 5 is not one of the data's 3 classes"):
        data_lib.with_class_weight(data, {5: 1.0})
    with pytest.raises(DataError, match="not both"):
        data_lib.with_class_weight(given, "balanced")
    assert mnist_core.TrainConfig(class_weight={0: 1, 3: 2.5}).class_weights == {0: 1.0, 3: 2.5}
    with pytest.raises(ConfigError, match="^class_weight must be balanced"):
        mnist_core.TrainConfig(class_weight="0:x")


@pytest.mark.parametrize("replicas", [1, 2])
def test_weighted_training_is_fit_with_sample_and_class_weights(replicas):
    """From the same weights on the same batches, mnist_core with per-example weights in its
    data, and with class_weight, updates exactly as fit(sample_weight=...) and
    fit(class_weight=...) (--update keras), on 1 and 2 replicas; and so does a model compiled
    by the user, trained through Keras' train_step with the weights."""
    result = subprocess.run([sys.executable, str(REPO / "tests" / "weight_parity.py"), str(replicas)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert {row["case"] for row in rows} == {"sample_weight", "class_weight", "compiled_by_user"}
    for row in rows:
        assert row["max_update"] > 1e-3, row  # the steps moved the weights
        assert row["max_weight_diff"] <= 1e-6 * row["max_update"] * 10, row


# ----------------------------------------------------------------------------- end to end


def test_26_classes_of_32x32_rgb_images_from_python_end_to_end(tmp_path):
    """Train, save, predict and evaluate a 26-class model of 32x32 RGB images given as a
    tf.data.Dataset with sample weights and no test split (held out by val_split)."""
    x, y = letters(800, shape=(32, 32, 3))
    w = np.where(y < 13, 1.0, 2.0).astype(np.float32)
    config = mnist_core.TrainConfig(model="cnn", dataset="letters", epochs=3, batch_size=32, val_split=0.2,
                                    output_dir=str(tmp_path / "run"), quiet=True, export_savedmodel=True)
    summary = mnist_core.train(config, data=tf.data.Dataset.from_tensor_slices((x, y, w)).batch(64))
    assert summary["image_shape"] == [32, 32, 3] and len(summary["class_names"]) == 26
    assert summary["test_examples"] == 160 and summary["test_accuracy"] > 0.5, summary
    probabilities = mnist_core.predict_proba(tmp_path / "run" / "model.keras", x[:5])
    assert probabilities.shape == (5, 26)
    served = mnist_core.predict_proba(tmp_path / "run" / "saved_model", x[:5])
    np.testing.assert_allclose(served, probabilities, atol=1e-5)
    # mnist-predict on image files: scaled to the model's 32x32 RGB ("resize", its default).
    write_png(tmp_path / "same.png", x[0])
    write_png(tmp_path / "large.png", np.kron(x[1], np.ones((2, 2, 1), np.uint8)))  # 64x64, same picture
    predicted = run_cli("mnist_core.predict", "--model-path", str(tmp_path / "run" / "model.keras"), "--json",
                        str(tmp_path / "same.png"), str(tmp_path / "large.png"))
    assert predicted.returncode == 0, predicted.stderr
    classes = [json.loads(line)["predictions"][0]["class"] for line in predicted.stdout.splitlines()]
    assert classes == list(probabilities[:2].argmax(axis=1)), (classes, probabilities[:2].argmax(axis=1))
    with pytest.raises(DataError, match="trained on data passed from Python"):
        mnist_core.evaluate_model(tmp_path / "run" / "model.keras")  # nothing to load it from
    result = mnist_core.evaluate_model(tmp_path / "run" / "model.keras", data=(x[:100], y[:100]))
    assert result["test_examples"] == 100 and len(result["per_class"]) == 26
    assert [row["name"] for row in result["per_class"][:2]] == ["0", "1"]


def test_python_refusals_name_arguments(tmp_path):
    x, y = letters(64)
    config = mnist_core.TrainConfig(model="mlp_small", output_dir=str(tmp_path / "run"), quiet=True)
    with pytest.raises(DataError) as e:
        mnist_core.train(config, data=(x, y))
    assert "hold out part of the training set with val_split" in str(e.value) and "--" not in str(e.value)
    with pytest.raises(ConfigError, match=r"^batch_size=128 is larger than the 51 training examples"):
        mnist_core.train(config.replace(val_split=0.2), data=(x, y))
    assert not (tmp_path / "run").exists()


def test_csv_and_tfds_from_the_command_line(tmp_path, tfds_dir):
    """A CSV named relative to the working directory, in a folder whose name has a space and
    a non-ASCII letter, held out by --val-split and evaluated again by mnist-evaluate from
    another directory; a TFDS dataset prepared in a data directory, with class weights."""
    x, y = learnable_digits(400, seed=3)
    (tmp_path / "my data é").mkdir()
    write_csv(tmp_path / "my data é" / "train.csv", x, y)
    out = tmp_path / "csv run"
    result = run_cli("mnist_core.train", "--data-dir", "my data é/train.csv", "--model", "mlp_small",
                     "--epochs", "2", "--batch-size", "32", "--val-split", "0.25", "--output-dir", str(out),
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert error_lines(result.stderr) == [], result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_examples"] == 100 and summary["test_accuracy"] > 0.5
    evaluated = run_cli("mnist_core.evaluate", "--model-path", str(out / "model.keras"), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["test_accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)
    refused = run_cli("mnist_core.train", "--data-dir", str(tmp_path / "my data é" / "train.csv"), "--output-dir",
                      str(tmp_path / "refused"))
    assert refused.returncode == 2 and len(error_lines(refused.stderr)) == 1
    assert "has no labelled test split; hold out part of the training set with --val-split" in refused.stderr
    letters_run = run_cli("mnist_core.train", "--dataset", "tiny_letters", "--data-dir", str(tfds_dir), "--model",
                          "mlp_small", "--epochs", "1", "--batch-size", "26", "--class-weight", "balanced",
                          "--output-dir", str(tmp_path / "letters"))
    assert letters_run.returncode == 0, letters_run.stderr
    assert error_lines(letters_run.stderr) == [], letters_run.stderr
    summary = json.loads((tmp_path / "letters" / "summary.json").read_text())
    assert summary["class_names"][:2] == ["a", "b"] and summary["test_examples"] == 52


# ----------------------------------------------------------------------------- streamed


def test_a_dataset_too_large_for_memory_is_streamed_and_resumes_exactly(tmp_path, monkeypatch, capsys):
    """Over $MNIST_CORE_MAX_DATA_BYTES a dataset is streamed: each epoch one pass in its own
    order, every test example evaluated once; a run resumed from its first epoch's checkpoint
    ends with the uninterrupted run's weights (the dataset yields the same order each pass),
    and a dataset that reshuffles at every pass is said to make the resume inexact."""
    monkeypatch.setenv("MNIST_CORE_MAX_DATA_BYTES", "10000")
    x, y = learnable_digits(600, seed=1)
    xt, yt = learnable_digits(150, seed=2)
    w = np.where(y < 5, 1.0, 2.0).astype(np.float32)
    train = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(50)
    test = tf.data.Dataset.from_tensor_slices((xt, yt))
    base = mnist_core.TrainConfig(model="mlp_small", epochs=2, batch_size=64, quiet=True)
    full = mnist_core.train(base.replace(output_dir=str(tmp_path / "full")), data=(train, test))
    assert "streamed" in full["dataset"] and full["steps_per_epoch"] == 600 // 64
    assert full["test_examples"] == 150 and full["test_accuracy"] > 0.8, full
    mnist_core.train(base.replace(epochs=1, output_dir=str(tmp_path / "part")), data=(train, test))
    resumed = mnist_core.train(base.replace(output_dir=str(tmp_path / "part"), resume=True), data=(train, test))
    assert resumed["weights_sha256"] == full["weights_sha256"]
    assert "not exactly" not in capsys.readouterr().err
    shuffled = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(600, reshuffle_each_iteration=True)
    mnist_core.train(base.replace(epochs=1, output_dir=str(tmp_path / "shuffled")), data=(shuffled, test))
    mnist_core.train(base.replace(output_dir=str(tmp_path / "shuffled"), resume=True), data=(shuffled, test))
    assert "not exactly as the uninterrupted run would have" in capsys.readouterr().err
    with pytest.raises(DataError, match=r"val_split=0.2: the training dataset is streamed"):
        mnist_core.train(base.replace(output_dir=str(tmp_path / "val"), val_split=0.2), data=(train, test))
    with pytest.raises(DataError, match=r"streamed .* pass a test dataset too, data=\(train, test\)"):
        mnist_core.train(base.replace(output_dir=str(tmp_path / "no-test")), data=train)


def test_factories_are_given_the_datas_classes_and_shape():
    """A factory naming num_classes gets the data's; one naming input_shape gets the data's
    images only when they are not MNIST's (flat when its own default is flat)."""
    import keras

    from mnist_core import models

    calls = []

    def make(input_shape=(784,), num_classes=10):
        calls.append((input_shape, num_classes))
        return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(), keras.layers.Dense(num_classes)])

    spec = models.spec_for(make)
    models.build(spec)
    models.build(spec, image_shape=(12, 12, 3), num_classes=26)
    assert calls == [((784,), 10), ((432,), 26)]
    lenet = models.build(models.get("lenet"), image_shape=(32, 32, 3), num_classes=26)
    assert tuple(lenet.inputs[0].shape[1:]) == (32, 32, 3) and lenet.outputs[0].shape[-1] == 26
    with pytest.raises(mnist_core.MnistCoreError, match=r"output has shape \(2, 10\), expected \(batch, 26\)"):
        models.build(models.spec_for(lambda: keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)])),
                     image_shape=(28, 28, 1), num_classes=26)
