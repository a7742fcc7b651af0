"""The model zoo: the tutorials' models, as mnist_core trains them and as the tutorials write them.

The first six (``mlp`` ... ``lenet``) end in a float32 ``Dense(10)`` without softmax: under
a mixed-precision policy the logits (and therefore the loss) stay float32, and the softmax
belongs to prediction. The last nine are the tutorials' nine scripts' models exactly as
written (a softmax or sigmoid at the end, script 000's MLP without activations).

Each factory takes ``input_shape`` (the data's images, ``(H, W, C)``, or flat ``(H*W*C,)``)
and ``num_classes``: the same architecture for any image size and class count; the
defaults are MNIST's.
"""

from __future__ import annotations

import keras
from keras import layers, regularizers

FLAT = (784,)
IMAGE = (28, 28, 1)


def _logits(num_classes: int = 10) -> layers.Layer:
    return layers.Dense(num_classes, dtype="float32", name="logits")


def _batch_norm(sync_batchnorm: bool) -> layers.Layer:
    # synchronized=True all-reduces the batch statistics across replicas, so a batch split
    # over N replicas normalises exactly like the undivided batch.
    return layers.BatchNormalization(synchronized=sync_batchnorm)


def mlp(input_shape=None, num_classes: int = 10, **_) -> keras.Model:
    """Flatten, Dense 1024-512-128 ReLU, Dense 10."""
    return keras.Sequential(
        [
            keras.Input(input_shape or FLAT),
            layers.Dense(1024, activation="relu"),
            layers.Dense(512, activation="relu"),
            layers.Dense(128, activation="relu"),
            _logits(num_classes),
        ],
        name="mlp",
    )


def mlp_small(input_shape=None, num_classes: int = 10, **_) -> keras.Model:
    """Dense 32 ReLU, Dense 10: the smallest tutorial model."""
    return keras.Sequential(
        [keras.Input(input_shape or FLAT), layers.Dense(32, activation="relu"), _logits(num_classes)], name="mlp_small"
    )


def mlp_l1(input_shape=None, num_classes: int = 10, **_) -> keras.Model:
    """Dense 128 and 32 ReLU with L1(1e-4) kernel regularisers and dropout 0.01."""
    return keras.Sequential(
        [
            keras.Input(input_shape or FLAT),
            layers.Dense(128, activation="relu", kernel_regularizer=regularizers.L1(1e-4)),
            layers.Dropout(0.01),
            layers.Dense(32, activation="relu", kernel_regularizer=regularizers.L1(1e-4)),
            layers.Dropout(0.01),
            _logits(num_classes),
        ],
        name="mlp_l1",
    )


def deep_mlp(sync_batchnorm: bool = False, input_shape=None, num_classes: int = 10, **_) -> keras.Model:
    """Dense 512 ReLU, Dropout 0.2, Dense 512 L2(1e-3), BatchNorm, ReLU, Dropout 0.2, Dense 10."""
    return keras.Sequential(
        [
            keras.Input(input_shape or FLAT),
            layers.Dense(512, activation="relu"),
            layers.Dropout(0.2),
            layers.Dense(512, kernel_regularizer=regularizers.L2(1e-3)),
            _batch_norm(sync_batchnorm),
            layers.Activation("relu"),
            layers.Dropout(0.2),
            _logits(num_classes),
        ],
        name="deep_mlp",
    )


def cnn(input_shape=None, num_classes: int = 10, **_) -> keras.Model:
    """Conv 32 same, Conv 32, MaxPool 2, Dropout .25, Dense 128, Dropout .5, Dense 10."""
    return keras.Sequential(
        [
            keras.Input(input_shape or IMAGE),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            _logits(num_classes),
        ],
        name="cnn",
    )


def lenet(input_shape=None, num_classes: int = 10, **_) -> keras.Model:
    """LeNet: Conv 6, AvgPool, Conv 16, AvgPool, Conv 120, Dense 84, Dense 10 (3x3 kernels)."""
    return keras.Sequential(
        [
            keras.Input(input_shape or IMAGE),
            layers.Conv2D(6, 3, activation="relu"),
            layers.AveragePooling2D(2),
            layers.Conv2D(16, 3, activation="relu"),
            layers.AveragePooling2D(2),
            layers.Conv2D(120, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(84, activation="relu"),
            _logits(num_classes),
        ],
        name="lenet",
    )


# --------------------------------------------------------------------------- the tutorials' own
#
# The nine training scripts of the tutorials this project rebuilds, each model exactly as its
# script writes it: ending in a softmax (one in a sigmoid) and trained with categorical
# cross-entropy on those probabilities. The recipes tutorial-000 ... tutorial-004 train them
# with their scripts' settings. The output layers compute in float32, so that under a mixed
# precision policy the probabilities (and the loss) are float32, as the logits of the
# models above are.


def _probabilities(activation: str) -> layers.Layer:
    return layers.Activation(activation, dtype="float32", name=activation)


def linear_mlp_softmax(input_shape=None, num_classes: int = 10, **_) -> keras.Model:
    """Script 000: Flatten, Dense 1024, 512, 128 with no activation between them, Dense 10, softmax."""
    return keras.Sequential(
        [keras.Input(input_shape or IMAGE), layers.Flatten(), layers.Dense(1024), layers.Dense(512), layers.Dense(128),
         layers.Dense(num_classes, dtype="float32"), _probabilities("softmax")],
        name="linear_mlp_softmax",
    )


def mlp32_softmax(input_shape=None, num_classes: int = 10, **_) -> keras.Model:
    """Script 001a: Dense 32, ReLU, Dense 10, softmax."""
    return keras.Sequential(
        [keras.Input(input_shape or FLAT), layers.Dense(32), layers.Activation("relu"), layers.Dense(num_classes, dtype="float32"),
         _probabilities("softmax")],
        name="mlp32_softmax",
    )


def cnn_softmax(input_shape=None, num_classes: int = 10, **_) -> keras.Model:
    """Script 001b (Keras' mnist_cnn): Conv 32 same, Conv 32, MaxPool, Dropout .25, Dense 128, Dropout .5, softmax."""
    return keras.Sequential(
        [
            keras.Input(input_shape or IMAGE),
            layers.Conv2D(32, 3, padding="same"), layers.Activation("relu"),
            layers.Conv2D(32, 3), layers.Activation("relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(128), layers.Activation("relu"),
            layers.Dropout(0.5),
            layers.Dense(num_classes, dtype="float32"), _probabilities("softmax"),
        ],
        name="cnn_softmax",
    )


def mlp15_softmax(input_shape=None, num_classes: int = 10, **_) -> keras.Model:
    """Script 002a: Dense 15 ReLU, Dense 10 softmax."""
    return keras.Sequential(
        [keras.Input(input_shape or FLAT), layers.Dense(15, activation="relu"), layers.Dense(num_classes, dtype="float32"),
         _probabilities("softmax")],
        name="mlp15_softmax",
    )


def mlp_l1_softmax(input_shape=None, num_classes: int = 10, **_) -> keras.Model:
    """Script 002b: Dense 128 ReLU L1(1e-4), Dropout .01, Dense 32 ReLU L1(1e-4), Dropout .01, Dense 10 softmax."""
    return keras.Sequential(
        [
            keras.Input(input_shape or FLAT),
            layers.Dense(128, activation="relu", kernel_regularizer=regularizers.L1(1e-4)),
            layers.Dropout(0.01),
            layers.Dense(32, activation="relu", kernel_regularizer=regularizers.L1(1e-4)),
            layers.Dropout(0.01),
            layers.Dense(num_classes, dtype="float32"), _probabilities("softmax"),
        ],
        name="mlp_l1_softmax",
    )


def lenet_softmax(input_shape=None, num_classes: int = 10, **_) -> keras.Model:
    """Script 002c: LeNet (Conv 6, AvgPool, Conv 16, AvgPool, Conv 120, Dense 84), softmax."""
    return keras.Sequential(
        [
            keras.Input(input_shape or IMAGE),
            layers.Conv2D(6, 3, activation="relu"),
            layers.AveragePooling2D(2),
            layers.Conv2D(16, 3, activation="relu"),
            layers.AveragePooling2D(2),
            layers.Conv2D(120, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(84, activation="relu"),
            layers.Dense(num_classes, dtype="float32"), _probabilities("softmax"),
        ],
        name="lenet_softmax",
    )


def mlp15_sigmoid(input_shape=None, num_classes: int = 10, **_) -> keras.Model:
    """Script 003a: Dense 15 sigmoid, Dense 10 sigmoid."""
    return keras.Sequential(
        [keras.Input(input_shape or FLAT), layers.Dense(15, activation="sigmoid"), layers.Dense(num_classes, dtype="float32"),
         _probabilities("sigmoid")],
        name="mlp15_sigmoid",
    )


def mlp_l2_softmax(input_shape=None, num_classes: int = 10, **_) -> keras.Model:
    """Script 003b: Dense 128 ReLU L2(0.1), Dense 30 ReLU L2(0.1), Dense 10 softmax."""
    return keras.Sequential(
        [
            keras.Input(input_shape or FLAT),
            layers.Dense(128, activation="relu", kernel_regularizer=regularizers.L2(0.1)),
            layers.Dense(30, activation="relu", kernel_regularizer=regularizers.L2(0.1)),
            layers.Dense(num_classes, dtype="float32"), _probabilities("softmax"),
        ],
        name="mlp_l2_softmax",
    )


def deep_mlp_softmax(sync_batchnorm: bool = False, input_shape=None, num_classes: int = 10, **_) -> keras.Model:
    """Script 004: Dense 512, ReLU, Dropout .2, Dense 512 L2(1e-3), BatchNorm, ReLU, Dropout .2, Dense 10, softmax."""
    return keras.Sequential(
        [
            keras.Input(input_shape or FLAT),
            layers.Dense(512), layers.Activation("relu"),
            layers.Dropout(0.2),
            layers.Dense(512, kernel_regularizer=regularizers.L2(1e-3)),
            _batch_norm(sync_batchnorm),
            layers.Activation("relu"),
            layers.Dropout(0.2),
            layers.Dense(num_classes, dtype="float32"), _probabilities("softmax"),
        ],
        name="deep_mlp_softmax",
    )
