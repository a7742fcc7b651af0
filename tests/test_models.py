import sys
import textwrap

import keras
import numpy as np
import pytest

from mnist_core import models
from mnist_core.errors import ModelError

# Parameter counts worked out by hand from the layer specs in the issue, e.g. cnn:
# conv 3*3*1*32+32=320, conv 3*3*32*32+32=9248, dense (13*13*32)*128+128=692352, 128*10+10=1290.
EXPECTED_PARAMS = {
    "mlp": 784 * 1024 + 1024 + 1024 * 512 + 512 + 512 * 128 + 128 + 128 * 10 + 10,  # 1,395,594
    "mlp_small": 784 * 32 + 32 + 32 * 10 + 10,  # 25,450
    "mlp_l1": 784 * 128 + 128 + 128 * 32 + 32 + 32 * 10 + 10,  # 104,938
    "deep_mlp": 784 * 512 + 512 + 512 * 512 + 512 + 4 * 512 + 512 * 10 + 10,  # 671,754 (1,024 non-trainable)
    "cnn": 320 + 9248 + 13 * 13 * 32 * 128 + 128 + 1290,  # 703,210
    "lenet": (9 * 6 + 6) + (9 * 6 * 16 + 16) + (9 * 16 * 120 + 120) + (3 * 3 * 120 * 84 + 84) + (84 * 10 + 10),  # 109,994
}


def test_registry_has_every_tutorial_model():
    assert set(EXPECTED_PARAMS) <= set(models.names())


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_exact_parameter_counts_and_logits(name):
    spec = models.get(name)
    model = models.build(spec)
    assert model.count_params() == EXPECTED_PARAMS[name]
    out = model(np.random.rand(3, *spec.input_shape).astype("float32"), training=False)
    assert tuple(out.shape) == (3, 10)
    # Logits, not probabilities: rows need not sum to one and may be negative.
    assert not np.allclose(np.sum(out, axis=1), 1.0)


def test_regularised_models_expose_losses():
    for name in ("mlp_l1", "deep_mlp"):
        assert models.build(models.get(name)).losses, name
    assert not models.build(models.get("cnn")).losses


def test_unknown_name_lists_choices():
    with pytest.raises(ModelError, match="unknown model; choose one of mlp, .*cnn"):
        models.get("resnet50")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    source = textwrap.dedent(
        """
        import keras

        class Good(keras.Model):
            mnist_input_shape = (784,)
            def __init__(self):
                super().__init__()
                self.dense = keras.layers.Dense(10)
            def call(self, x, training=False):
                return self.dense(x)

        def factory():
            return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])

        def wrong_output():
            return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(7)])

        def not_a_model():
            return 42

        class NotKeras:
            pass

        def broken():
            raise RuntimeError("boom")
        """
    )
    (tmp_path / "user_models_x.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_models_x"
    sys.modules.pop("user_models_x", None)


def test_user_class_and_factory(user_module):
    spec = models.get(f"{user_module}:Good")
    assert spec.input_shape == (784,)
    assert isinstance(models.build(spec), keras.Model)
    assert models.get(f"{user_module}:factory").input_shape == (28, 28, 1)


@pytest.mark.parametrize(
    "attr, message",
    [
        ("wrong_output", r"output has shape \(2, 7\), expected \(batch, 10\)"),
        ("not_a_model", "returned int, expected a keras.Model"),
        ("broken", "building the model failed \\(RuntimeError: boom\\)"),
    ],
)
def test_user_model_build_errors(user_module, attr, message):
    with pytest.raises(ModelError, match=message):
        models.build(models.get(f"{user_module}:{attr}"))


def test_user_model_resolution_errors(user_module):
    with pytest.raises(ModelError, match="cannot import module 'no_such_mod'"):
        models.get("no_such_mod:X")
    with pytest.raises(ModelError, match="has no attribute 'Missing'"):
        models.get(f"{user_module}:Missing")
    with pytest.raises(ModelError, match="not a keras.Model subclass"):
        models.get(f"{user_module}:NotKeras")


def test_example_model_has_regularisation_and_training_flag():
    spec = models.get("mnist_core.models.example:SmallResNet")
    model = models.build(spec)
    assert len(model.losses) == 4  # one L2 term per kernel
    x = np.random.rand(4, 28, 28, 1).astype("float32")
    np.testing.assert_allclose(model(x, training=False), model(x, training=False))
    assert not np.allclose(model(x, training=True), model(x, training=False)), "dropout must follow training="


def test_models_cli_lists_every_model_and_summarises_one():
    from conftest import error_lines, run_cli

    listing = run_cli("mnist_core.models")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split("│")[1].strip(): line for line in listing.stdout.splitlines() if line.count("│") >= 4}
    for name, params in EXPECTED_PARAMS.items():
        assert f"{params:,}" in rows[name], rows.get(name)
    assert "(28, 28, 1)" in rows["cnn"] and "(784,)" in rows["mlp"]

    summary = run_cli("mnist_core.models", "--model", "lenet", "--summary")
    assert summary.returncode == 0, summary.stderr
    assert "Total params" in summary.stdout and f"{EXPECTED_PARAMS['lenet']:,}" in summary.stdout

    bad = run_cli("mnist_core.models", "--model", "nope", "--summary")
    assert bad.returncode == 2 and "--model 'nope': unknown model" in error_lines(bad.stderr)[0]
