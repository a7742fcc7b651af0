"""The command-line tools as users run them: subprocesses, exit codes, files written."""

import json
import os
import textwrap

import numpy as np
import pytest

from conftest import error_lines, run_cli, write_idx


def _train(idx_dir, out, *extra, cwd=None, env=None):
    return run_cli("mnist_core.train", "--data-dir", str(idx_dir), "--output-dir", str(out),
                   "--batch-size", "64", *extra, cwd=cwd, env=env)


def test_train_then_evaluate_end_to_end(idx_dir, tmp_path):
    out = tmp_path / "run"
    result = _train(idx_dir, out, "--model", "lenet", "--epochs", "3", "--lr", "3e-3", "--export-tflite", "int8")
    assert result.returncode == 0, result.stderr
    # Nor TensorFlow Lite's own prints (the converter's int8 calibration, the interpreter).
    assert result.stderr == "", "no TensorFlow start-up noise: the first line is ours"
    assert any(line.startswith("model.tflite (int8, ") for line in result.stdout.splitlines())
    # stdout is not a terminal here: plain one-line-per-epoch logs, then the result line.
    lines = result.stdout.splitlines()
    assert lines[0].startswith("data: mnist from IDX files in")
    assert lines[1].startswith("--jit-compile auto: off (a run of 24 steps")
    assert [line.split(":")[0] for line in lines[2:5]] == ["epoch 1", "epoch 2", "epoch 3"]
    assert lines[-1].startswith("test_accuracy ")

    history = json.loads((out / "history.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert len(history) == 3
    assert summary["test_accuracy"] == history[-1]["test_accuracy"] > 0.9
    assert summary["config"]["model"] == "lenet" and summary["config"]["epochs"] == 3
    for key in ("test_loss", "images_per_second", "seconds"):
        assert key in summary
    assert (out / "model.keras").is_file()
    events = list((out / "tensorboard" / "train").glob("events.out.tfevents.*"))
    assert events and b"learning_rate" in events[0].read_bytes()

    evaluated = run_cli("mnist_core.evaluate", "--model-path", str(out / "model.keras"), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stderr == ""
    report = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert report["test_examples"] == 200
    assert report["test_accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "resnet9000"], "--model 'resnet9000': unknown model"),
        (["--optimizer", "adamw"], "argument --optimizer: invalid choice: 'adamw'"),
        (["--epochs", "0"], "argument --epochs: must be a positive integer, got 0"),
        (["--batch-size", "-5"], "argument --batch-size: must be a positive integer, got -5"),
        (["--batch-size", "100000"], "--batch-size 100000 is larger than the 512 training examples"),
        (["--model", "no_such_module:Net"], "cannot import module 'no_such_module'"),
    ],
)
def test_bad_flags_one_line_exit_2(idx_dir, tmp_path, args, message):
    out = tmp_path / "run"
    result = _train(idx_dir, out, *args)
    assert result.returncode == 2
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_bad_data_one_line_exit_2(idx_dir, tmp_path):
    write_idx(idx_dir / "t10k-images-idx3-ubyte.gz", np.zeros((4, 28, 28)), dims=(5, 28, 28))
    result = _train(idx_dir, tmp_path / "run", "--epochs", "1")
    assert result.returncode == 2
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "t10k-images-idx3-ubyte.gz: header declares 5 images" in lines[0]
    missing = _train(tmp_path / "nowhere", tmp_path / "run2")
    assert missing.returncode == 2 and "no such file or directory" in error_lines(missing.stderr)[0]


def test_nonempty_output_dir_is_refused_and_untouched(idx_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "history.json").write_text("precious")
    result = _train(idx_dir, out, "--epochs", "1")
    assert result.returncode == 2
    assert "not empty" in error_lines(result.stderr)[0]
    assert (out / "history.json").read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == ["history.json"]


def test_user_subclassed_model_trains_with_its_losses(idx_dir, tmp_path):
    (tmp_path / "my_models.py").write_text(textwrap.dedent(
        """
        import keras

        class Penalised(keras.Model):
            def __init__(self):
                super().__init__()
                self.flatten = keras.layers.Flatten()
                self.hidden = keras.layers.Dense(32, activation="relu")
                self.dropout = keras.layers.Dropout(0.1)
                self.out = keras.layers.Dense(10)

            def call(self, x, training=False):
                self.add_loss(keras.ops.convert_to_tensor(5.0))  # a constant penalty: must appear in the reported loss
                return self.out(self.dropout(self.hidden(self.flatten(x)), training=training))
        """
    ))
    out = tmp_path / "run"
    result = _train(idx_dir, out, "--model", "my_models:Penalised", "--epochs", "3", "--lr", "3e-3",
                    cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    history = json.loads((out / "history.json").read_text())
    for entry in history:
        assert 5.0 < entry["train_loss"] < 8.0, entry
        assert 5.0 < entry["test_loss"] < 8.0, entry
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_accuracy"] > 0.9


def test_example_model_runs_from_the_cli(idx_dir, tmp_path):
    result = _train(idx_dir, tmp_path / "run", "--model", "mnist_core.models.example:SmallResNet",
                    "--epochs", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("test_accuracy")
    assert len(result.stdout.strip().splitlines()) == 1, "--quiet prints only the final line"
    evaluated = run_cli("mnist_core.evaluate", "--model-path", str(tmp_path / "run" / "model.keras"))
    assert evaluated.returncode == 0, evaluated.stderr


def test_gpu_memory_grows_unless_the_user_chose(monkeypatch):
    """Seen on an H200: with TensorFlow's default (all GPU memory at start-up) a second
    process on the same GPU cannot create its cuBLAS handle. No GPU here, so the call is
    checked with stand-ins for the devices."""
    import tensorflow as tf

    from mnist_core import strategy

    grown = []
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", lambda gpu, on: grown.append((gpu, on)))
    monkeypatch.delenv("TF_FORCE_GPU_ALLOW_GROWTH", raising=False)
    strategy._grow_gpu_memory(["gpu0", "gpu1"])
    assert grown == [("gpu0", True), ("gpu1", True)]
    grown.clear()
    monkeypatch.setenv("TF_FORCE_GPU_ALLOW_GROWTH", "false")  # the user's choice stands
    strategy._grow_gpu_memory(["gpu0"])
    assert grown == []
    # Every command sets the same default before TensorFlow starts, keeping the user's value.
    from mnist_core import cli

    cli.quiet_tensorflow_logs()
    assert os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] == "false"
    monkeypatch.delenv("TF_FORCE_GPU_ALLOW_GROWTH")
    cli.quiet_tensorflow_logs()
    assert os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"


def test_a_long_library_message_is_cut_where_a_sentence_or_word_ends():
    from mnist_core.errors import brief

    keras_like = ("Object GAN was created by passing non-serializable argument values in `__init__()`, and "
                  "therefore the object must override `get_config()`. Please implement `get_config()`. "
                  "Example:\n\n    class CustomLayer(keras.layers.Layer):\n        def __init__(self, arg):")
    assert brief(keras_like, 150) == ("Object GAN was created by passing non-serializable argument values in "
                                      "`__init__()`, and therefore the object must override `get_config()`.")
    words = "word " * 100
    cut = brief(words, 52)
    assert cut.endswith("word ...") and len(cut) <= 56 and "\n" not in cut
    assert brief("short\nmessage") == "short message"
