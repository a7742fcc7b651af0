"""An example of a user model: a subclassed ``keras.Model`` trained with ``--model``.

Run it with::

    python -m mnist_core.train --model mnist_core.models.example:SmallResNet

What a model needs to work with mnist_core:

* take a float32 batch in [0, 1] of shape ``mnist_input_shape`` (default ``(28, 28, 1)``;
  set the class attribute to ``(784,)`` for a flat input) and return ``[batch, 10]``
  logits (no softmax);
* honour ``training=`` for layers such as Dropout and BatchNormalization;
* put regularisation in ``self.losses`` (kernel regularisers, ``self.add_loss``): the
  training step adds it to the loss;
* to be saved and reloaded as ``model.keras``, be registered as Keras-serialisable and
  implement ``get_config`` (as here).
"""

from __future__ import annotations

import keras
from keras import layers, regularizers


@keras.saving.register_keras_serializable(package="mnist_core")
class SmallResNet(keras.Model):
    """A two-block residual CNN with L2 weight decay and dropout.

    Args:
        width: Channels of the convolutions.
        weight_decay: L2 factor of every kernel.
        dropout: Dropout rate before the classifier.
    """

    mnist_input_shape = (28, 28, 1)

    def __init__(self, width: int = 16, weight_decay: float = 1e-4, dropout: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.width, self.weight_decay, self.dropout_rate = width, weight_decay, dropout
        reg = regularizers.L2(weight_decay)
        self.stem = layers.Conv2D(width, 3, padding="same", activation="relu", kernel_regularizer=reg)
        self.conv_a = layers.Conv2D(width, 3, padding="same", activation="relu", kernel_regularizer=reg)
        self.conv_b = layers.Conv2D(width, 3, padding="same", kernel_regularizer=reg)
        self.pool = layers.MaxPooling2D(2)
        self.flatten = layers.Flatten()
        self.dropout = layers.Dropout(dropout)
        self.classifier = layers.Dense(10, dtype="float32", kernel_regularizer=reg)

    def call(self, inputs, training=False):
        x = self.stem(inputs)
        x = keras.ops.relu(x + self.conv_b(self.conv_a(x)))  # the residual block
        x = self.flatten(self.pool(x))
        return self.classifier(self.dropout(x, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(width=self.width, weight_decay=self.weight_decay, dropout=self.dropout_rate)
        return config
