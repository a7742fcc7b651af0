"""Dropout-free, smooth models for strategy-parity tests.

Dropout masks differ per replica count, so there is no dropout. And there is nothing
with a kink (ReLU, max-pooling): 1 replica and 2 replicas sum a batch's gradient in a
different order, a last-bit difference, and at a kink such a difference can flip which
branch an example takes, an O(1) change in its gradient. With tanh and average pooling
the two agree to float noise, on any CPU, so a test can demand it.
"""

import keras
from keras import layers, regularizers


def dense_l2():
    """Dense layers with L2 kernel regularisers: exercises model.losses scaling."""
    return keras.Sequential([
        keras.Input((28, 28, 1)), layers.Flatten(),
        layers.Dense(64, activation="tanh", kernel_regularizer=regularizers.L2(1e-3)),
        layers.Dense(10, kernel_regularizer=regularizers.L2(1e-3)),
    ])


def _conv_bn(synchronized):
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(8, 3, use_bias=False), layers.BatchNormalization(synchronized=synchronized),
        layers.Activation("tanh"), layers.AveragePooling2D(2), layers.Flatten(),
        layers.Dense(10, kernel_regularizer=regularizers.L2(1e-4)),
    ])


def conv_sync_bn():
    """Conv + synchronised BatchNorm: statistics must equal those of the undivided batch."""
    return _conv_bn(True)


def conv_bn():
    """Conv + per-replica BatchNorm: the control that must *differ* across replica counts."""
    return _conv_bn(False)
