"""The subclassed models Keras' guides teach on MNIST — a GAN, a VAE, a Distiller — trained
as written by mnist_core's compiled loop: their own logs, every optimizer checkpointed,
resumed exactly, classifier-only features skipped or refused in one line, fit's updates."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras_io_models
from conftest import REPO, error_lines, learnable_digits, run_cli
from mnist_core import TrainConfig, train
from mnist_core.errors import ConfigError

ENV = {"PYTHONPATH": str(REPO / "tests")}


@pytest.fixture(scope="module")
def digits():
    images, labels = learnable_digits(384, seed=3)
    return images, labels


def _config(out, **options):
    return TrainConfig(epochs=options.pop("epochs", 2), batch_size=64, output_dir=str(out), overwrite=True,
                       quiet=True, **options)


def test_gan_trains_with_both_its_optimizers_checkpointed_and_resumes_exactly(tmp_path, digits):
    images, labels = digits
    data = (images, labels, images[:64], labels[:64])
    whole = train(_config(tmp_path / "whole"), model=keras_io_models.make_gan, data=data)
    assert whole["classifier"] is False and whole["test_accuracy"] is None
    assert sorted(whole["metrics"]) == ["train_d_loss", "train_g_loss"]
    assert all(np.isfinite(v) for v in whole["metrics"].values())
    # No get_config (its __init__ takes the two networks): the weights, not a failed model.keras.
    assert whole["model_path"] is None and os.path.isfile(whole["weights_path"])
    checkpoint = tf.train.latest_checkpoint(str(tmp_path / "whole" / "checkpoints"))
    names = [name for name, _ in tf.train.list_variables(checkpoint)]
    for optimizer in ("optimizer_d_optimizer", "optimizer_g_optimizer"):
        assert any(name.startswith(optimizer + "/") for name in names), optimizer
    history = json.loads((tmp_path / "whole" / "history.json").read_text())
    assert [sorted(k for k in e if k.startswith("train_") and k != "train_seconds") for e in history] == \
        [["train_d_loss", "train_g_loss"]] * 2

    plotted = run_cli("mnist_core.plot", str(tmp_path / "whole"))
    assert plotted.returncode == 0, plotted.stderr
    assert "not a classifier: no samples.png" in plotted.stdout and (tmp_path / "whole" / "curves.png").is_file()

    train(_config(tmp_path / "halves", epochs=1), model=keras_io_models.make_gan, data=data)
    resumed = train(TrainConfig(epochs=2, batch_size=64, output_dir=str(tmp_path / "halves"), resume=True,
                                quiet=True), model=keras_io_models.make_gan, data=data)
    assert resumed["weights_sha256"] == whole["weights_sha256"]
    assert resumed["metrics"] == whole["metrics"]


def test_vae_trains_on_images_alone_and_on_labelled_data_without_its_labels(tmp_path, digits):
    images, labels = digits
    alone = train(_config(tmp_path / "alone", epochs=1), model=keras_io_models.make_vae,
                  data=images.astype("float32") / 255.0)
    assert sorted(alone["metrics"]) == ["train_kl_loss", "train_loss", "train_reconstruction_loss"]
    assert "without labels" in alone["dataset"]
    # Labelled data: its train_step cannot take (images, labels), so it is fed the images, and told.
    result = run_cli("mnist_core.train", "--model", "keras_io_models:make_vae", "--dataset", "synthetic",
                     "--synthetic-train-size", "256", "--batch-size", "64", "--epochs", "1",
                     "--output-dir", str(tmp_path / "labelled"), env=ENV)
    assert result.returncode == 0, result.stderr
    assert "fed images without labels, as fit(x) feeds them" in result.stdout
    assert "model is not a classifier (VAE.call() is not implemented" in result.stdout
    summary = json.loads((tmp_path / "labelled" / "summary.json").read_text())
    assert summary["metrics"]["train_loss"] == pytest.approx(
        summary["metrics"]["train_reconstruction_loss"] + summary["metrics"]["train_kl_loss"], rel=1e-4)


def test_distiller_is_a_classifier_whose_accuracy_is_found_under_its_own_name(tmp_path, digits):
    images, labels = digits
    summary = train(_config(tmp_path / "d", epochs=1), model=keras_io_models.make_distiller,
                    data=(images, labels, images[:100], labels[:100]))
    assert summary["classifier"] is True and summary["test_examples"] == 100
    assert summary["test_accuracy"] == summary["metrics"]["test_sparse_categorical_accuracy"]
    assert summary["model_path"] is None and os.path.isfile(summary["weights_path"])


def test_what_only_a_classifier_has_is_refused_for_a_gan_before_anything_is_written(tmp_path):
    out = tmp_path / "gan"
    result = run_cli("mnist_core.train", "--model", "keras_io_models:make_gan", "--dataset", "synthetic",
                     "--synthetic-train-size", "256", "--epochs", "1", "--export-savedmodel",
                     "--output-dir", str(out), env=ENV)
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert "--export-savedmodel" in line and "is not a classifier" in line
    assert not out.exists()


@pytest.mark.parametrize("factory, where", [("make_vae", "building the model failed"),
                                             ("make_gan", "train_step() cannot be traced")])
def test_the_guides_models_under_mixed_precision_are_refused_with_the_cast_they_need(tmp_path, digits, factory,
                                                                                      where):
    """As keras.io writes them, the VAE's Sampling layer and the GAN's train_step combine a
    layer's bfloat16 output with float32 noise or images: model.fit fails on both too."""
    from mnist_core.errors import ModelError

    out = tmp_path / "run"
    with pytest.raises(ModelError) as raised:
        train(_config(out, epochs=1, precision="mixed_bfloat16"), model=getattr(keras_io_models, factory),
              data=digits)
    message = str(raised.value)
    assert where in message and "keras.ops.cast" in message and "\n" not in message, message
    assert not out.exists()


def test_images_without_labels_are_refused_for_a_classifier(digits):
    images, _ = digits
    with pytest.raises(ConfigError, match="has no labels.*is a classifier"):
        train(TrainConfig(model="mlp", epochs=1, quiet=True), data=images)


@pytest.mark.full
@pytest.mark.parametrize("replicas", [1, 2])
def test_gan_vae_and_distiller_update_as_fit_does(replicas):
    """8 steps from the same variables on the same batches, against model.fit: observed
    bitwise equal (0.0) on 1 and 2 replicas, logs included; 1e-6 leaves room for a platform
    whose graph optimiser fuses the two programs differently."""
    cases = ["make_gan", "make_vae", "make_distiller"]
    result = subprocess.run([sys.executable, str(REPO / "tests" / "subclass_parity.py"), str(replicas),
                             ",".join(cases)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, **ENV})
    assert result.returncode == 0, result.stderr
    rows = {r["case"]: r for r in map(json.loads, (l for l in result.stdout.splitlines() if l.startswith("{")))}
    assert set(rows) == set(cases)
    assert rows["make_gan"]["optimizers"] == ["d_optimizer", "g_optimizer"]
    for case, row in rows.items():
        assert row["max_update"] > 1e-6, row
        assert row["max_weight_diff"] <= 1e-6, row
        assert row["logs"].keys() == row["fit_logs"].keys(), row
        for key, value in row["logs"].items():
            assert value == pytest.approx(row["fit_logs"][key], rel=1e-5, abs=1e-6), (case, key)


@pytest.mark.full
def test_gan_from_the_command_line_on_two_replicas(tmp_path):
    out = tmp_path / "a run dir"
    result = run_cli("mnist_core.train", "--model", "keras_io_models:make_gan", "--dataset", "synthetic",
                     "--synthetic-train-size", "256", "--batch-size", "64", "--epochs", "1",
                     "--strategy", "mirrored", "--cpu-replicas", "2", "--output-dir", str(out), env=ENV)
    assert result.returncode == 0, result.stderr
    # mnist_core's warning that the GAN is saved as weights only, and nothing from TensorFlow
    # (Grappler's failed rewrite of the GAN's step is not the user's to act on).
    assert [line for line in error_lines(result.stderr) if not line.startswith("warning: ")] == [], result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_replicas"] == 2 and summary["classifier"] is False
    assert sorted(summary["metrics"]) == ["train_d_loss", "train_g_loss"]
    assert (out / "model.weights.h5").is_file()


@pytest.mark.full
def test_a_killed_gan_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    """SIGKILL mid-epoch, then --resume: both optimizers, the generators' random state and
    the data order come back from the last checkpoint (every 4 steps)."""
    import signal
    import time

    args = ["--model", "keras_io_models:make_gan", "--dataset", "synthetic", "--synthetic-train-size", "1024",
            "--batch-size", "64", "--epochs", "2", "--steps-per-loop", "1", "--checkpoint-every", "4",
            "--deterministic", "--quiet"]
    reference = run_cli("mnist_core.train", *args, "--output-dir", str(tmp_path / "reference"), env=ENV)
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "mnist_core.train", *args, "--output-dir", str(out)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **ENV})
    index, deadline = out / "checkpoints" / "checkpoint", time.monotonic() + 180
    while not index.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not (out / "summary.json").exists(), "killed before the end"
    resumed = run_cli("mnist_core.train", *args, "--output-dir", str(out), "--resume", env=ENV)
    assert resumed.returncode == 0, resumed.stderr
    summaries = [json.loads((d / "summary.json").read_text()) for d in (tmp_path / "reference", out)]
    assert summaries[0]["weights_sha256"] == summaries[1]["weights_sha256"]
    assert summaries[0]["metrics"] == summaries[1]["metrics"]


def _uncompiled_vae():
    vae = keras_io_models.make_vae()
    return keras_io_models.VAE(vae.encoder, vae.decoder)


def _uncompiled_gan():
    gan = keras_io_models.make_gan()
    return keras_io_models.GAN(gan.discriminator, gan.generator, gan.latent_dim)


def test_an_uncompiled_vae_trains_with_the_runs_optimizer_and_an_uncompiled_gan_is_refused(tmp_path, digits):
    from mnist_core.errors import ModelError

    images, _ = digits
    summary = train(_config(tmp_path / "vae", epochs=1, optimizer="sgd", lr=0.01), model=_uncompiled_vae, data=images)
    assert summary["config"]["optimizer"] == "sgd" and summary["compiled_by_user"] is None
    assert np.isfinite(summary["metrics"]["train_loss"])
    # compile(d_optimizer, g_optimizer, loss_fn) is the GAN's own: mnist_core cannot make it up.
    with pytest.raises(ModelError, match=r"its compile\(\) takes its own arguments.*compile it yourself"):
        train(_config(tmp_path / "gan", epochs=1), model=_uncompiled_gan, data=images)
    assert not (tmp_path / "gan").exists()
