"""Non-finite losses and gradients: skipped (weights and slots untouched) or the run stops.

The faults come from ``fault_models``: a NaN multiplied into the float32 logits, or an
infinite factor in the backward pass only, so they reach the loss or the gradients on any
CPU, whichever kernels TensorFlow fuses. Each test fails if the skip or the stop logic is
removed (checked by replacing ``SkipNonFinite`` with the plain optimizer, and by making
``Trainer._handle_nonfinite`` return without raising).
"""

import math

import numpy as np
import pytest
import tensorflow as tf

import fault_models
from conftest import error_lines, run_cli
from mnist_core import loop as loop_lib, models, optim, precision, step as step_lib
from mnist_core.config import TrainConfig
from mnist_core.errors import NonFiniteLossError
from mnist_core.trainer import Trainer
from mnist_core.reporting import Reporter

FAULTS = {"loss": {"forward": float("nan")}, "gradients": {"backward": float("inf")}}


def _loop(model, optimizer):
    return loop_lib.make_train_loop(
        tf.distribute.get_strategy(), step_lib.make_train_step(model, optimizer, 16),
        variables=model.trainable_variables, update_counter=optimizer.iterations if optim.skips_updates(optimizer) else None)


def _trainable(model):
    return [np.array(v.numpy()) for v in model.trainable_variables]


def _run(train_loop, images, labels):
    iterator = iter(tf.data.Dataset.from_tensors((images, labels)).repeat())
    return {k: float(v) for k, v in train_loop(iterator, tf.constant(1)).items()}


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("precision_name, on_nonfinite", [
    ("float32", "skip"), ("mixed_bfloat16", "skip"), ("mixed_float16", "stop"), ("mixed_float16", "skip"),
])
def test_a_skipped_update_leaves_weights_and_slots_untouched(precision_name, on_nonfinite, fault):
    config = TrainConfig(precision=precision_name, on_nonfinite=on_nonfinite)
    rng = np.random.default_rng(0)
    images = rng.random((16, 784), dtype=np.float32)
    labels = (np.arange(16) % 10).astype(np.int32)
    with precision.policy(config.precision):
        model = models.build(models.ModelSpec("poisoned", fault_models.poisoned_mlp, (784,), ""))
        optimizer = optim.make_optimizer(config, steps_per_epoch=10)
        optimizer.build(model.trainable_variables)
        train_loop = _loop(model, optimizer)
        poison = model.get_layer("poison")
        scale = float(optimizer.dynamic_scale.numpy())
        before = _trainable(model)

        for name, value in FAULTS[fault].items():
            getattr(poison, name).assign(value)
        out = _run(train_loop, images, labels)
        assert out["skipped"] == 1, out
        assert out["weights_finite"] == 1
        if fault == "gradients":
            assert out["nonfinite"] == 0 and math.isfinite(out["loss"]), "only the gradients are non-finite"
        else:
            assert out["nonfinite"] == 1
        for a, b in zip(before, _trainable(model)):
            np.testing.assert_array_equal(a, b)
        assert int(optimizer.iterations.numpy()) == 0, "slots and iterations untouched"
        expected = scale / 2 if precision_name == "mixed_float16" else 1.0
        assert float(optimizer.dynamic_scale.numpy()) == expected

        for name in FAULTS[fault]:
            getattr(poison, name).assign(1.0)
        out = _run(train_loop, images, labels)
        assert out["skipped"] == 0 and out["nonfinite"] == 0 and math.isfinite(out["loss"])
        assert int(optimizer.iterations.numpy()) == 1
        assert any(not np.array_equal(a, b) for a, b in zip(before, _trainable(model)))


@pytest.mark.parametrize("factory", ["nan_loss_at_step_3", "inf_gradients_at_step_3"])
@pytest.mark.parametrize("precision_name", ["float32", "mixed_bfloat16"])
def test_stop_mode_stops_at_the_step_and_saves_nothing_non_finite(idx_dir, tmp_path, precision_name, factory):
    out = tmp_path / "run"
    config = TrainConfig(data_dir=str(idx_dir), model=f"fault_models:{factory}", precision=precision_name,
                         batch_size=64, epochs=1, steps_per_loop=1, checkpoint_every=2, output_dir=str(out),
                         quiet=True)
    with pytest.raises(NonFiniteLossError) as raised:
        Trainer(config, Reporter(quiet=True)).run()
    message = str(raised.value)
    assert "within steps 3..3" in message and "ckpt-2" in message, message
    assert ("loss" if factory.startswith("nan_loss") else "weights") in message.split("within")[0]
    assert not (out / "model.keras").exists() and not (out / "summary.json").exists()
    assert sorted(p.name for p in (out / "checkpoints").glob("*.index")) == ["ckpt-2.index"]
    reader = tf.train.load_checkpoint(str(out / "checkpoints" / "ckpt-2"))
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.all(np.isfinite(value)), f"{name} in the last good checkpoint is not finite"


def test_cli_skip_mode_warns_and_finishes(idx_dir, tmp_path):
    from conftest import REPO

    result = run_cli("mnist_core.train", "--data-dir", str(idx_dir), "--output-dir", str(tmp_path / "run"),
                     "--model", "fault_models:inf_gradients_at_step_3", "--on-nonfinite", "skip",
                     "--batch-size", "64", "--epochs", "1", "--steps-per-loop", "1",
                     env={"PYTHONPATH": str(REPO / "tests")})
    assert result.returncode == 0, result.stderr
    # A warning, on stderr: the run's record on stdout stays its results.
    assert error_lines(result.stderr) == ["warning: 1 update(s) with non-finite gradients skipped in steps 3..3"]
    assert (tmp_path / "run" / "model.keras").exists()
