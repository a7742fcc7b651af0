"""Runs users move, reproduce and share: nothing overwritten, no false alarms, exports that stand alone.

Run directories are given as users give them — relative, absolute, through a symlink, with
spaces and non-ASCII letters — and used from another working directory than the one they
were made in.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, error_lines, learnable_digits, make_idx_dir, run_cli
from mnist_core.data import FASHION_CLASSES

# Part of the full suite (`python -m pytest -m "not slow"`, what CI runs), not of the quick
# `python -m pytest` a contributor runs between edits: its commands and harnesses take minutes.
pytestmark = pytest.mark.full

NAMES = {"absolute": None, "symlinked": "linked/a", "spaces-unicode": "my runs/ünïcode a"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_idx_dir(tmp_path_factory.mktemp("portability") / "data", n_train=256, n_test=64)


def _train(cwd, *args, env=None):
    defaults = [] if "--config" in args else ["--model", "mlp_small", "--batch-size", "32"]
    result = run_cli("mnist_core.train", *defaults, *args, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    return result


def _run_dir(tmp_path, kind):
    """``(cwd, the --output-dir argument as typed)`` for a way of naming a run directory."""
    work = tmp_path / "work"
    work.mkdir()
    if kind == "absolute":
        return work, str(tmp_path / "elsewhere" / "a")
    if kind == "symlinked":
        (tmp_path / "real").mkdir()
        (work / "linked").symlink_to(tmp_path / "real")
    return work, NAMES[kind]


# ---------------------------------------------------------------- nothing overwritten


def test_a_reproduction_never_writes_over_another_run(data_dir, tmp_path):
    """The replayed transcript: a summary that recorded --overwrite reproduced into a run
    of another model, and without --output-dir."""
    work = tmp_path / "work"
    work.mkdir()
    d = str(data_dir)
    _train(work, "--data-dir", d, "--model", "lenet", "--epochs", "2", "--output-dir", "runs/lenet", "--overwrite")
    _train(work, "--data-dir", d, "--epochs", "1", "--output-dir", "runs/mine", "--export-savedmodel")
    mine = sorted(p.relative_to(work) for p in (work / "runs" / "mine").rglob("*"))
    again = run_cli("mnist_core.train", "--config", "runs/lenet/summary.json", "--output-dir", "runs/mine",
                    "--epochs", "1", cwd=work)
    assert again.returncode == 2
    [line] = error_lines(again.stderr)
    assert "--output-dir runs/mine: not empty" in line
    assert sorted(p.relative_to(work) for p in (work / "runs" / "mine").rglob("*")) == mine
    assert (work / "runs" / "mine" / "saved_model" / "saved_model.pb").exists()
    lenet = (work / "runs" / "lenet" / "summary.json").read_text()
    _train(work, "--config", "runs/lenet/summary.json", "--epochs", "1")
    assert (work / "runs" / "lenet" / "summary.json").read_text() == lenet, "the recorded run was retrained"
    [new] = [p for p in (work / "runs").iterdir() if p.name not in ("lenet", "mine")]  # runs/<timestamp>
    reproduced = json.loads((new / "summary.json").read_text())
    assert reproduced["config"]["model"] == "lenet" and reproduced["config"]["overwrite"] is False


def test_a_resumed_runs_summary_reproduces(data_dir, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    _train(work, "--data-dir", str(data_dir), "--epochs", "1", "--output-dir", "rep")
    _train(work, "--data-dir", str(data_dir), "--epochs", "2", "--output-dir", "rep", "--resume")
    reproduced = _train(work, "--config", "rep/summary.json", "--output-dir", "rep2", "--quiet")
    assert json.loads((work / "rep2" / "summary.json").read_text())["epochs"] == 2, reproduced.stdout


def test_export_never_replaces_a_directory_that_is_not_its_savedmodel(tmp_path):
    import keras

    import mnist_core
    from mnist_core.errors import ConfigError

    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)])
    docs = tmp_path / "mydocs"
    docs.mkdir()
    (docs / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="mydocs: a directory of other files, not a SavedModel of mnist_core; "
                                          "not replaced"):
        mnist_core.export_savedmodel(model, (784,), docs)
    assert (docs / "notes.txt").read_text() == "mine"
    exported = mnist_core.export_savedmodel(model, (784,), tmp_path / "sm")
    mnist_core.export_savedmodel(model, (784,), exported)  # its own export: replaced
    mnist_core.export_savedmodel(model, (784,), docs, overwrite=True)
    assert not (docs / "notes.txt").exists()


# ---------------------------------------------------------------- no false alarms, from any directory


# Relative with a space and non-ASCII letters (the hardest relative name), absolute, and
# relative through a symbolic link.
@pytest.mark.parametrize("kind", ["spaces-unicode", "absolute", "symlinked"])
def test_resume_from_any_path_finds_its_checkpoints_and_rotates_them(data_dir, tmp_path, kind):
    work, out = _run_dir(tmp_path, kind)
    _train(work, "--data-dir", str(data_dir), "--epochs", "1", "--keep-checkpoints", "1", "--output-dir", out)
    # The order of a set of paths, random per process, once decided whether a relative
    # directory's checkpoint was tried twice (once as a damaged one): several hash seeds.
    seeds = ("0", "1", "2") if kind == "spaces-unicode" else ("3",)
    for epochs, hashseed in enumerate(seeds, start=2):
        result = _train(work, "--data-dir", str(data_dir), "--epochs", str(epochs), "--keep-checkpoints", "1",
                        "--output-dir", out, "--resume", env={"PYTHONHASHSEED": hashseed})
        assert result.stderr == "", result.stderr
        assert "damaged" not in result.stdout
    checkpoints = work / out / "checkpoints"  # an absolute out replaces work
    assert sorted(p.name for p in checkpoints.glob("ckpt-*.index")) == [f"ckpt-{8 * (len(seeds) + 1)}.index"]
    assert not (checkpoints / "damaged").exists()


def test_a_run_is_used_from_another_directory_and_after_it_is_moved(data_dir, tmp_path):
    # A relative --output-dir with a space and non-ASCII letters: the hardest of the names.
    work, out = _run_dir(tmp_path, "spaces-unicode")
    relative_data = os.path.relpath(data_dir, work)
    _train(work, "--data-dir", relative_data, "--epochs", "1", "--output-dir", out, "--export-savedmodel")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = tmp_path / "moved run"
    os.rename(work / out, moved)
    summary = json.loads((moved / "summary.json").read_text())
    assert os.path.isabs(summary["config"]["data_dir"])
    for path in (moved / "model.keras", moved / "saved_model"):
        evaluated = run_cli("mnist_core.evaluate", "--model-path", str(path), "--json", cwd=elsewhere)
        assert evaluated.returncode == 0, evaluated.stderr
        assert json.loads(evaluated.stdout)["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    plotted = run_cli("mnist_core.plot", str(moved), "--out", "plots", cwd=elsewhere)
    assert plotted.returncode == 0, plotted.stderr
    assert (elsewhere / "plots" / "curves.png").exists() and (elsewhere / "plots" / "samples.png").exists()
    _train(elsewhere, "--config", str(moved / "summary.json"), "--output-dir", "again", "--quiet")
    _train(elsewhere, "--data-dir", str(data_dir), "--epochs", "2", "--output-dir", str(moved), "--resume",
           "--quiet")


# ---------------------------------------------------------------- exports that stand alone


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("fashion")
    data = make_idx_dir(base / "fashion-data", n_train=256, n_test=64)
    out = base / "run"
    _train(base, "--dataset", "fashion_mnist", "--data-dir", str(data), "--epochs", "2", "--output-dir", str(out),
           "--export-savedmodel", "--export-h5", "--model", "deep_mlp")
    return out, data


def test_a_copied_model_predicts_and_evaluates_as_the_original(fashion_run, tmp_path):
    out, data = fashion_run
    x, _ = learnable_digits(4, seed=2)
    np.save(tmp_path / "four.npy", x)
    before = {}
    for name in ("model.keras", "saved_model", "model.h5"):
        before[name] = run_cli("mnist_core.predict", "--model-path", str(out / name), str(tmp_path / "four.npy"),
                               "--preprocess", "none").stdout
    copies = tmp_path / "copies"
    copies.mkdir()
    import shutil

    for name in ("model.keras", "saved_model", "model.h5"):
        copy = copies / name
        (shutil.copytree if (out / name).is_dir() else shutil.copy)(out / name, copy)
        predicted = run_cli("mnist_core.predict", "--model-path", str(copy), str(tmp_path / "four.npy"),
                            "--preprocess", "none", cwd=copies)
        assert predicted.returncode == 0, predicted.stderr
        assert predicted.stdout.replace(str(copies), "") == before[name].replace(str(out), ""), name
        assert any(c in predicted.stdout for c in FASHION_CLASSES), predicted.stdout
        evaluated = run_cli("mnist_core.evaluate", "--model-path", str(copy), "--data-dir", str(data), "--json",
                            cwd=copies)
        assert evaluated.returncode == 0, evaluated.stderr
        report = json.loads(evaluated.stdout)
        assert report["dataset"].startswith("fashion_mnist") and report["per_class"][9]["name"] == "Ankle boot"


def test_evaluating_a_model_on_another_dataset_is_refused(data_dir, fashion_run, tmp_path):
    out, _ = fashion_run
    result = run_cli("mnist_core.evaluate", "--model-path", str(out / "model.keras"), "--dataset", "mnist",
                     "--data-dir", str(data_dir))
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert "--dataset mnist: the model was trained on fashion_mnist (its classes are T-shirt/top, Trouser, " \
           "Pullover, ...)" in line
    import mnist_core

    x, y = learnable_digits(16, seed=3)
    report = mnist_core.evaluate_model(out / "model.keras", (x, y))
    assert [row["name"] for row in report["per_class"]] == list(FASHION_CLASSES)


# ---------------------------------------------------------------- smaller, same theme


def test_predict_keeps_the_good_images_of_a_stack_and_refuses_an_empty_one(fashion_run, tmp_path):
    out, _ = fashion_run
    x, _ = learnable_digits(3, seed=4)
    x[1] = 0  # blank
    np.save(tmp_path / "stack.npy", x)
    np.save(tmp_path / "empty.npy", np.zeros((0, 28, 28), np.uint8))
    result = run_cli("mnist_core.predict", "--model-path", str(out / "model.keras"), str(tmp_path / "stack.npy"),
                     str(tmp_path / "empty.npy"))
    assert result.returncode == 2
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [f"{tmp_path}/stack.npy[0]",
                                                                          f"{tmp_path}/stack.npy[2]"]
    errors = error_lines(result.stderr)
    assert len(errors) == 2
    assert errors[0] == f"mnist-predict: error: {tmp_path}/stack.npy[1]: no digit or article found (the image is blank)"
    assert errors[1].startswith(f"mnist-predict: error: {tmp_path}/empty.npy: an empty stack of images")


def test_classifiers_take_float_images_and_name_their_own_arguments(fashion_run, tmp_path):
    import mnist_core
    from mnist_core.errors import DataError, ModelError

    out, _ = fashion_run
    x, _ = learnable_digits(8, seed=5)
    classifier = mnist_core.load_classifier(out / "model.keras")
    np.testing.assert_allclose(classifier.probabilities(x.astype("float32") / 255.0), classifier.probabilities(x),
                               atol=1e-6)
    with pytest.raises(DataError, match=r"^predict_proba images has shape \(8, 27\)"):
        mnist_core.predict_proba(out / "model.keras", np.zeros((8, 27)))
    (tmp_path / "fake.keras").write_bytes(b"junk")
    with pytest.raises(ModelError, match="fake.keras: not a Keras model file"):
        mnist_core.load_classifier(tmp_path / "fake.keras")


def test_predict_proba_on_a_model_object_traces_once(monkeypatch):
    import keras
    import tensorflow as tf

    import mnist_core

    traces = []
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)])
    real = tf.function

    def counting(fn=None, **kwargs):
        def wrapped(*args, **kw):
            traces.append(1)
            return fn(*args, **kw)
        return real(wrapped, **kwargs)

    x, _ = learnable_digits(4, seed=6)
    monkeypatch.setattr(tf, "function", counting)
    for _ in range(3):
        mnist_core.predict_proba(model, x)
    assert len(traces) == 1


def test_plot_writes_nothing_when_it_fails_and_draws_whole_epochs(data_dir, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    _train(work, "--data-dir", str(data_dir), "--epochs", "1", "--output-dir", "one")
    (work / "one" / "model.keras").unlink()
    failed = run_cli("mnist_core.plot", "one", "--out", "plots", cwd=work)
    assert failed.returncode == 2 and not (work / "plots").exists()
    plotted = run_cli("mnist_core.plot", "one", "--out", "plots", "--no-samples", cwd=work)
    assert plotted.returncode == 0, plotted.stderr
    from mnist_core import plotting

    captured = {}
    real = plotting.pyplot

    def spy():
        plt = real()
        original = plt.close

        def close(fig):
            captured["ticks"] = [list(ax.get_xticks()) for ax in fig.axes]
            return original(fig)

        plt.close = close
        return plt

    plotting.pyplot = spy
    try:
        plotting.plot_curves([{"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5}], tmp_path / "c.png",
                             "x" * 300)
    finally:
        plotting.pyplot = real
    assert captured["ticks"] == [[1.0], [1.0]]


def test_our_lines_only_warnings_on_stderr(data_dir, tmp_path):
    deterministic = _train(tmp_path, "--data-dir", str(data_dir), "--epochs", "1", "--deterministic",
                           "--output-dir", str(tmp_path / "det"))
    assert deterministic.stderr == ""
    half = _train(tmp_path, "--data-dir", str(data_dir), "--epochs", "1", "--precision", "mixed_float16",
                  "--output-dir", str(tmp_path / "half"))
    assert half.stderr == ""
    ema = _train(tmp_path, "--data-dir", str(data_dir), "--epochs", "1", "--ema", "--quiet",
                 "--output-dir", str(tmp_path / "ema"))
    assert ema.stderr.startswith("warning: --ema 0.999 averages over about 1,000 updates")
    assert len(ema.stdout.splitlines()) == 1 and ema.stdout.startswith("test_accuracy ")


def test_gpu_indices_on_a_machine_without_gpus_are_refused(data_dir, tmp_path):
    result = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--devices", "5,7", "--strategy", "mirrored",
                     "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "mnist-train: error: --devices 5,7: TensorFlow sees no GPU on this machine; drop --devices to train on the "
        "CPU (--cpu-replicas N splits it for --strategy mirrored)"]
    assert not (tmp_path / "run").exists()


def test_ctrl_c_after_the_result_line_is_quiet(data_dir, tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "mnist_core.train", "--data-dir", str(data_dir), "--model", "mlp_small", "--epochs",
         "1", "--strategy", "mirrored", "--cpu-replicas", "2", "--output-dir", str(tmp_path / "run"), "--quiet"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.startswith("test_accuracy"), line
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0
    assert "Traceback" not in stderr and "Exception ignored" not in stderr and "KeyboardInterrupt" not in stderr, stderr
