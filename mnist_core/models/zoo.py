"""The models of the classic Keras MNIST tutorials, as Keras layers returning logits.

Every model ends in a float32 ``Dense(10)`` without softmax: under a mixed-precision
policy the logits (and therefore the loss) stay float32, and the softmax belongs to
prediction, where ``tf.nn.softmax`` is applied to the logits.
"""

from __future__ import annotations

import keras
from keras import layers, regularizers

FLAT = (784,)
IMAGE = (28, 28, 1)


def _logits() -> layers.Layer:
    return layers.Dense(10, dtype="float32", name="logits")


def _batch_norm(sync_batchnorm: bool) -> layers.Layer:
    # synchronized=True all-reduces the batch statistics across replicas, so a batch split
    # over N replicas normalises exactly like the undivided batch.
    return layers.BatchNormalization(synchronized=sync_batchnorm)


def mlp(**_) -> keras.Model:
    """Flatten, Dense 1024-512-128 ReLU, Dense 10."""
    return keras.Sequential(
        [
            keras.Input(FLAT),
            layers.Dense(1024, activation="relu"),
            layers.Dense(512, activation="relu"),
            layers.Dense(128, activation="relu"),
            _logits(),
        ],
        name="mlp",
    )


def mlp_small(**_) -> keras.Model:
    """Dense 32 ReLU, Dense 10: the smallest tutorial model."""
    return keras.Sequential(
        [keras.Input(FLAT), layers.Dense(32, activation="relu"), _logits()], name="mlp_small"
    )


def mlp_l1(**_) -> keras.Model:
    """Dense 128 and 32 ReLU with L1(1e-4) kernel regularisers and dropout 0.01."""
    return keras.Sequential(
        [
            keras.Input(FLAT),
            layers.Dense(128, activation="relu", kernel_regularizer=regularizers.L1(1e-4)),
            layers.Dropout(0.01),
            layers.Dense(32, activation="relu", kernel_regularizer=regularizers.L1(1e-4)),
            layers.Dropout(0.01),
            _logits(),
        ],
        name="mlp_l1",
    )


def deep_mlp(sync_batchnorm: bool = False, **_) -> keras.Model:
    """Dense 512 ReLU, Dropout 0.2, Dense 512 L2(1e-3), BatchNorm, ReLU, Dropout 0.2, Dense 10."""
    return keras.Sequential(
        [
            keras.Input(FLAT),
            layers.Dense(512, activation="relu"),
            layers.Dropout(0.2),
            layers.Dense(512, kernel_regularizer=regularizers.L2(1e-3)),
            _batch_norm(sync_batchnorm),
            layers.Activation("relu"),
            layers.Dropout(0.2),
            _logits(),
        ],
        name="deep_mlp",
    )


def cnn(**_) -> keras.Model:
    """Conv 32 same, Conv 32, MaxPool 2, Dropout .25, Dense 128, Dropout .5, Dense 10."""
    return keras.Sequential(
        [
            keras.Input(IMAGE),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            _logits(),
        ],
        name="cnn",
    )


def lenet(**_) -> keras.Model:
    """LeNet: Conv 6, AvgPool, Conv 16, AvgPool, Conv 120, Dense 84, Dense 10 (3x3 kernels)."""
    return keras.Sequential(
        [
            keras.Input(IMAGE),
            layers.Conv2D(6, 3, activation="relu"),
            layers.AveragePooling2D(2),
            layers.Conv2D(16, 3, activation="relu"),
            layers.AveragePooling2D(2),
            layers.Conv2D(120, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(84, activation="relu"),
            _logits(),
        ],
        name="lenet",
    )
