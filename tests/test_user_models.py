"""Users' own models with every flag that transforms a model: each trains or is refused in
one line naming the flag — never silently ignored, never a traceback."""

import io
import json
import math
import subprocess
import sys

import keras
import pytest
from rich.console import Console

import user_model_kinds as kinds
from conftest import REPO, error_lines, make_idx_dir, run_cli
from mnist_core import program as program_lib
from mnist_core.config import TrainConfig
from mnist_core.errors import ConfigError, MnistCoreError, ModelError
from mnist_core.reporting import Reporter
from mnist_core.trainer import Trainer
from mnist_core.errors import python_words

# Part of the full suite (`python -m pytest -m "not slow"`, what CI runs), not of the quick
# `python -m pytest` a contributor runs between edits: its commands and harnesses take minutes.
pytestmark = pytest.mark.full

TESTS = str(REPO / "tests")

FLAGS = {
    "plain": {},
    "mixed_bfloat16": {"precision": "mixed_bfloat16"},
    "mixed_float16": {"precision": "mixed_float16"},
    "sync_batchnorm": {"sync_batchnorm": True},
    "xla_on": {"jit_compile": "on"},
    "xla_auto": {"jit_compile": "auto"},
    "ema": {"ema": 0.5},
    "grad_accum": {"grad_accum_steps": 2},
    "label_smoothing": {"label_smoothing": 0.1},
    "skip_nonfinite": {"on_nonfinite": "skip"},
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_idx_dir(tmp_path_factory.mktemp("user_models") / "data", n_train=128, n_test=64)


def _train(data_dir, out, model=None, **options):
    values = dict(data_dir=str(data_dir), epochs=1, batch_size=32, output_dir=str(out), quiet=True, jit_compile="off")
    values.update(options)
    return Trainer(TrainConfig(**values), Reporter(quiet=True), model=model).run(), Trainer


def _expected_refusal(kind, flag, form):
    """The flag a combination must be refused for (None: it must train)."""
    if flag == "sync_batchnorm" and kind not in kinds.HAS_BATCHNORM:
        return "--sync-batchnorm"
    if flag == "xla_on" and kind in kinds.AUGMENTS:
        return "--jit-compile on"
    if flag.startswith("mixed") and form == "object":
        return "--precision"
    return None


def _compute_dtypes(model):
    return {str(layer.compute_dtype) for layer in model._flatten_layers(include_self=False) if layer.weights}


def _check(data_dir, tmp_path, monkeypatch, kind, flag, form):
    # --jit-compile auto times XLA against the plain loop only for runs of 400 steps or
    # more; here every run is 4 steps, so the bar is lowered to make auto really decide.
    monkeypatch.setattr(program_lib, "AUTO_JIT_MIN_STEPS", 0)
    factory = getattr(kinds, kind)
    options = dict(FLAGS[flag])
    if form == "factory":
        source, model = None, None
        options["model"] = f"user_model_kinds:{kind}"
    else:
        source = model = factory()
    refusal = _expected_refusal(kind, flag, form)
    trainer = Trainer(TrainConfig(data_dir=str(data_dir), epochs=1, batch_size=32, output_dir=str(tmp_path / "run"),
                                  quiet=True, **{"jit_compile": "off", **options}), Reporter(quiet=True), model=source)
    if refusal:
        with pytest.raises(MnistCoreError) as raised:
            trainer.run()
        assert str(raised.value).startswith(python_words(refusal)), str(raised.value)
        assert "\n" not in str(raised.value)
        assert not (tmp_path / "run").exists(), "a refused run touched its directory"
        return
    summary = trainer.run()
    trained = trainer.model
    assert math.isfinite(summary["test_loss"]) and summary["test_examples"] == 64
    if flag.startswith("mixed"):
        assert ("bfloat16" if flag.endswith("bfloat16") else "float16") in _compute_dtypes(trained)
    else:
        assert _compute_dtypes(trained) == {"float32"}
    if flag == "sync_batchnorm":
        assert all(layer.synchronized for layer in trained._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization))
        saved = keras.models.load_model(tmp_path / "run" / "model.keras")
        assert [l.synchronized for l in saved._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)] == [True]
    if flag == "xla_on":
        assert summary["jit_compile"] is True
    if flag == "xla_auto" and kind in kinds.AUGMENTS:
        assert summary["jit_compile"] is False
        assert summary["jit_decision"]["reason"].startswith("XLA cannot compile the step: no XLA kernel for ")
    if model is not None:
        assert trained is model, "a model object is trained in place"


@pytest.mark.parametrize("flag", sorted(FLAGS))
@pytest.mark.parametrize("kind", kinds.KINDS)
def test_every_kind_of_model_with_every_flag(data_dir, tmp_path, monkeypatch, kind, flag):
    _check(data_dir, tmp_path, monkeypatch, kind, flag, "factory")


@pytest.mark.parametrize("flag", ["plain", "mixed_bfloat16", "sync_batchnorm", "xla_on"])
@pytest.mark.parametrize("kind", ["subclassed", "batchnorm", "augmentation", "flat_input"])
def test_model_objects_with_the_flags_that_transform_a_model(data_dir, tmp_path, monkeypatch, kind, flag):
    _check(data_dir, tmp_path, monkeypatch, kind, flag, "object")


# ---------------------------------------------------------------- the items one by one, as users met them


def test_augmentation_layer_with_default_flags_keeps_xla_off_and_says_why(data_dir, tmp_path):
    # 40 steps under the real 400-step bar would not time; the CLI with enough steps does.
    out = tmp_path / "run"
    result = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--model", "user_model_kinds:augmentation",
                     "--epochs", "100", "--batch-size", "32", "--output-dir", str(out),
                     env={"PYTHONPATH": TESTS, "MNIST_CORE_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    line = next(l for l in result.stdout.splitlines() if l.startswith("--jit-compile auto:"))
    assert line == "--jit-compile auto: off (XLA cannot compile the step: no XLA kernel for ImageProjectiveTransformV3)"


def test_xla_on_that_cannot_compile_is_one_line_before_the_directory_exists(data_dir, tmp_path):
    out = tmp_path / "run"
    result = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--model", "user_model_kinds:augmentation",
                     "--epochs", "1", "--jit-compile", "on", "--output-dir", str(out), env={"PYTHONPATH": TESTS})
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "mnist-train: error: --jit-compile on: XLA cannot compile the step of --model 'user_model_kinds:augmentation' "
        "(no XLA kernel for ImageProjectiveTransformV3); use --jit-compile off, or auto, which keeps XLA off where "
        "it cannot compile"]
    assert not out.exists()


LOAD = "import keras, sys; m = keras.models.load_model(sys.argv[1]); print(type(m.optimizer).__name__)"
LOAD_EACH = ("import keras, sys\nfor path in sys.argv[1:]:\n"
             "    print(type(keras.models.load_model(path).optimizer).__name__, flush=True)")


class SavesEveryEpoch(keras.callbacks.Callback):
    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        self.model.save(self.path)


@pytest.mark.parametrize("options", [{"label_smoothing": 0.1}, {"on_nonfinite": "skip"},
                                     {"precision": "mixed_float16"}, {"lr_schedule": "onecycle", "warmup_epochs": 0.5},
                                     {"ema": 0.5, "weight_decay": 0.01, "grad_accum_steps": 2}],
                         ids=lambda o: "+".join(o))
def test_models_saved_by_user_code_load_in_plain_keras(data_dir, tmp_path, options):
    """model.save() in a callback, ModelCheckpoint, and model.save() after train(model=m):
    each file loads with keras.models.load_model in a process that never imports mnist_core,
    with no warning (its optimizer state is loaded too)."""
    if options.get("precision"):
        keras.config.set_dtype_policy(options["precision"])
    try:
        model = kinds.flat_input()
    finally:
        keras.config.set_dtype_policy("float32")
    paths = [tmp_path / "callback.keras", tmp_path / "checkpoint.keras", tmp_path / "after.keras"]
    Trainer(TrainConfig(data_dir=str(data_dir), epochs=2, batch_size=32, output_dir=str(tmp_path / "run"), quiet=True,
                        jit_compile="off", **options), Reporter(quiet=True), model=model,
            callbacks=[SavesEveryEpoch(str(paths[0])), keras.callbacks.ModelCheckpoint(str(paths[1]))]).run()
    model.save(paths[2])
    # One process loads the three files, one after the other (TensorFlow starts once).
    loaded = subprocess.run([sys.executable, "-c", LOAD_EACH, *map(str, paths)], capture_output=True, text=True,
                            cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    assert "Warning" not in loaded.stderr and "Could not locate" not in loaded.stderr, loaded.stderr
    names = loaded.stdout.split()  # each file's optimizer class, restored with the model
    assert len(names) == len(paths) and len(set(names)) == 1, loaded.stdout


def test_saved_models_load_in_plain_keras_under_mirrored(data_dir, tmp_path):
    out = tmp_path / "run"
    result = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--model", "user_model_kinds:batchnorm",
                     "--strategy", "mirrored", "--cpu-replicas", "2", "--sync-batchnorm", "--label-smoothing", "0.1",
                     "--on-nonfinite", "skip", "--lr-schedule", "onecycle", "--epochs", "2", "--batch-size", "32",
                     "--callback", "user_callbacks:checkpoint_to_cwd", "--output-dir", str(out), "--quiet",
                     cwd=tmp_path, env={"PYTHONPATH": TESTS})
    assert result.returncode == 0, result.stderr
    loaded = subprocess.run([sys.executable, "-c", LOAD + "; print([l.synchronized for l in m.layers if "
                             "isinstance(l, keras.layers.BatchNormalization)])", str(tmp_path / "checkpoint.keras")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["LossScaleOptimizer", "[True]"] and "Warning" not in loaded.stderr


def test_a_model_object_trained_twice_continues(data_dir, tmp_path):
    model = kinds.functional()
    first, _ = _train(data_dir, tmp_path / "first", model=model, epochs=2)
    reporter = Reporter(quiet=False, console=Console(file=io.StringIO(), width=1000, soft_wrap=True))
    second = Trainer(TrainConfig(data_dir=str(data_dir), epochs=1, batch_size=32, output_dir=str(tmp_path / "second"),
                                 jit_compile="off"), reporter, model=model).run()
    text = reporter.console.file.getvalue()
    assert "model=: trained by an earlier run in this process; continuing from its weights, with a new adam " \
           "optimizer" in text
    history = json.loads((tmp_path / "first" / "history.json").read_text())
    assert second["metrics"]["train_loss"] < history[0]["train_loss"], "the second run started from the trained weights"


def test_register_model_with_a_zero_argument_factory(data_dir, tmp_path):
    from mnist_core import models

    models.register("zero_argument_factory", lambda: kinds.flat_input(), (784,))
    summary, _ = _train(data_dir, tmp_path / "run", model="zero_argument_factory")
    assert summary["model"] == "zero_argument_factory" and summary["input_shape"] == [784]


def test_a_factorys_own_input_is_the_shape_it_is_fed(data_dir, tmp_path):
    result = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--model", "user_model_kinds:flat_input",
                     "--epochs", "1", "--output-dir", str(tmp_path / "run"), "--quiet", env={"PYTHONPATH": TESTS})
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["input_shape"] == [784]


def test_a_model_that_cannot_take_the_input_says_how_to_declare_it(data_dir, tmp_path):
    (tmp_path / "wrong_shape.py").write_text(
        "import keras\n"
        "class Flat(keras.Model):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.dense = keras.layers.Dense(10)\n"
        "    def call(self, x):\n"
        "        return self.dense(keras.ops.reshape(x, (-1, 700)))\n")
    result = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--model", "wrong_shape:Flat", "--epochs", "1",
                     "--output-dir", str(tmp_path / "run"), env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert line.startswith("mnist-train: error: --model 'wrong_shape:Flat': calling the model on a batch of shape "
                           "(2, 28, 28, 1) failed (")
    assert "mnist_input_shape = (784,)" in line and "[[" not in line and len(line) < 700, line


def test_messages_name_what_the_user_passed(data_dir, tmp_path):
    with pytest.raises(ModelError, match=r"^model='user_model_kinds:two_outputs': returns 2 outputs; mnist_core "
                                         r"trains a model with one output of shape \(batch, 10\)$"):
        _train(data_dir, tmp_path / "a", model="user_model_kinds:two_outputs")
    built = kinds.functional()
    with pytest.raises(ConfigError, match=r"^strategy=\"one_device\": the keras.Model object passed as model= "
                                          r"\(Functional\) already has its variables"):
        _train(data_dir, tmp_path / "b", model=built, strategy="one_device")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_model_objects_summary_says_it_cannot_be_rebuilt_from_its_name(data_dir, tmp_path):
    summary, _ = _train(data_dir, tmp_path / "run", model=kinds.functional())
    assert summary["model_reproducible"] is False
    assert summary["model"].startswith("python-object:")
    result = run_cli("mnist_core.train", "--config", str(tmp_path / "run" / "summary.json"), "--output-dir",
                     str(tmp_path / "again"))
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert "the run trained a model passed from Python" in line and "mnist_core.train(config, model=...)" in line
    named, _ = _train(data_dir, tmp_path / "named", model="user_model_kinds:functional")
    assert named["model_reproducible"] is True


def test_xla_that_cannot_compile_under_mirrored_is_refused_too(data_dir, tmp_path):
    out = tmp_path / "run"
    result = run_cli("mnist_core.train", "--data-dir", str(data_dir), "--model", "user_model_kinds:augmentation",
                     "--strategy", "mirrored", "--cpu-replicas", "2", "--jit-compile", "on", "--epochs", "1",
                     "--output-dir", str(out), env={"PYTHONPATH": TESTS})
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert line.startswith("mnist-train: error: --jit-compile on: XLA cannot compile the step of --model "
                           "'user_model_kinds:augmentation' (no XLA kernel for ImageProjectiveTransformV3)"), line
    assert not out.exists()
