"""Dropout-free models for strategy-parity tests (dropout masks differ per replica count)."""

import keras
from keras import layers, regularizers


def dense_l2():
    """Dense layers with L2 kernel regularisers: exercises model.losses scaling."""
    return keras.Sequential([
        keras.Input((28, 28, 1)), layers.Flatten(),
        layers.Dense(64, activation="relu", kernel_regularizer=regularizers.L2(1e-3)),
        layers.Dense(10, kernel_regularizer=regularizers.L2(1e-3)),
    ])


def conv_sync_bn():
    """Conv + synchronised BatchNorm: statistics must equal those of the undivided batch."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(8, 3, use_bias=False), layers.BatchNormalization(synchronized=True),
        layers.Activation("relu"), layers.MaxPooling2D(2), layers.Flatten(),
        layers.Dense(10, kernel_regularizer=regularizers.L2(1e-4)),
    ])
