"""The default update (TensorFlow's fused training kernels) against Keras' own update.

Each case trains the same model from the same weights on the same batches twice, once with
``update="fused"`` and once with ``update="keras"`` (what ``model.fit`` runs), and compares
the weights after 10 steps. The kernels compute Keras' formulas in another order of
rounding, so the bound is float round-off magnified by 10 steps (Adam's division by
sqrt(v) magnifies it most), never zero-or-not. The techniques on 2 replicas are in
``test_techniques.py``; bitwise parity with ``fit`` (``update="keras"``) everywhere else.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import learnable_digits
from mnist_core import data as data_lib
from mnist_core import fused

STEPS, BATCH = 6, 32


@pytest.fixture(scope="module")
def data():
    images, labels = learnable_digits(STEPS * BATCH, seed=3)
    return data_lib.MnistData(images, labels, images[:64], labels[:64], "mnist", "generated")


def _relative(a, b):
    """The largest difference of any array, relative to that array's largest magnitude."""
    return max(float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(y))), 1e-12)) for x, y in zip(a, b))


CASES = {
    "adam": {},
    "rmsprop": dict(optimizer="rmsprop"),
    "adadelta": dict(optimizer="adadelta", lr=1.0),
    "sgd-momentum": dict(optimizer="sgd"),
    "sgd": dict(optimizer="sgd", momentum=0.0),
    "adam-xla": dict(jit_compile="on"),
    "adam-skip-nonfinite": dict(on_nonfinite="skip"),
    "adam-accumulating": dict(grad_accum_steps=2, batch_size=BATCH // 2),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_fused_update_is_keras_update_to_round_off(data, case):
    """At each of 6 steps, one fused and one Keras update from the same weights and
    optimizer state. Observed on an AVX-512 CPU: Adam 7.9e-6, RMSprop and Adadelta 2.2e-7,
    SGD 0.0. (Left to run freely, the two drift further: round-off flips ReLU units at their
    threshold, as any change of summation order does; benchmarks/RESULTS.md.)"""
    from benchmarks.update_diff import differences

    values = {"model": "mlp_small", "batch_size": BATCH, **CASES[case]}
    found = differences(data, STEPS // values.get("grad_accum_steps", 1), **values)
    assert max(found["per_step"]) <= 1e-4, found


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_the_optimizer_keeps_keras_class_and_variables(data, optimizer):
    """Checkpoints and saved models do not change: the same variables (RMSprop's kernel
    needs a momentum array Keras does not keep: an untracked scratch one), the same class,
    so a saved model loads without mnist_core."""
    from benchmarks.update_diff import _program

    ours, batches = _program(data, "fused", model="mlp_small", batch_size=BATCH, optimizer=optimizer)
    theirs, _ = _program(data, "keras", model="mlp_small", batch_size=BATCH, optimizer=optimizer)
    initial = ours.model.get_weights()
    ours.run_steps(batches, 3)
    assert _relative(ours.model.get_weights(), initial) > 1e-3, "it trained"
    assert [tuple(v.shape) for v in ours.optimizer.variables] == [tuple(v.shape) for v in theirs.optimizer.variables]
    assert type(ours.optimizer) is type(theirs.optimizer)
    assert "update_step" in vars(ours.optimizer) and "update_step" not in vars(theirs.optimizer)


def test_what_has_no_fused_kernel_keeps_keras_update_and_says_why():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    for optimizer, why in [(keras.optimizers.Adam(amsgrad=True), "Adam's amsgrad has no fused kernel"),
                           (keras.optimizers.Nadam(), "Nadam has no fused kernel")]:
        optimizer.build(model.trainable_variables)
        assert fused.install(optimizer, model.trainable_variables) == why
        assert "update_step" not in vars(optimizer)


def test_an_embeddings_sparse_gradient_trains_with_the_fused_update():
    """An Embedding's gradient leaves the tape as an IndexedSlices; it is updated like the
    rest, within round-off of Keras' update (which makes it dense too)."""

    def run(install):
        keras.utils.set_random_seed(2)
        model = keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(20, 4),
                                  keras.layers.Flatten(), keras.layers.Dense(2)])
        optimizer = keras.optimizers.Adam(0.1)
        optimizer.build(model.trainable_variables)
        if install:
            assert fused.install(optimizer, model.trainable_variables) is None
        initial = model.get_weights()

        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(model(x)))
            gradients = tape.gradient(loss, model.trainable_variables)
            assert isinstance(gradients[0], tf.IndexedSlices)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))

        for i in range(3):
            step(tf.constant([[1, 2, 3], [4, 5, 6]]) + i)
        return initial, model.get_weights()

    initial, fused_weights = run(True)
    _, keras_weights = run(False)
    assert _relative(fused_weights, initial) > 1e-2
    assert _relative(fused_weights, keras_weights) <= 1e-4
