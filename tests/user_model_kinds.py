"""Users' models of every kind, as they write them: what the model/flag matrix trains.

Each factory returns a fresh model taking 28x28 images (or flat 784-pixel ones) and
returning 10 logits. ``KINDS`` names them; ``HAS_BATCHNORM`` and ``AUGMENTS`` say which can
take ``--sync-batchnorm`` and which XLA cannot compile on a CPU.
"""

import keras
from keras import layers


def sequential_with_input():
    return keras.Sequential([keras.Input((28, 28, 1)), layers.Conv2D(4, 3, activation="relu"), layers.Flatten(),
                             layers.Dense(10)])


def sequential_without_input():
    return keras.Sequential([layers.Flatten(), layers.Dense(16, activation="relu"), layers.Dense(10)])


def functional():
    inputs = keras.Input((28, 28, 1))
    x = layers.Flatten()(inputs)
    x = layers.Dense(16, activation="relu")(x)
    return keras.Model(inputs, layers.Dense(10)(x))


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.flatten = layers.Flatten()
        self.hidden = layers.Dense(16, activation="relu")
        self.out = layers.Dense(10)

    def call(self, x, training=False):
        return self.out(self.hidden(self.flatten(x)))


def subclassed():
    return Subclassed()


def flat_input():
    return keras.Sequential([keras.Input(shape=(784,)), layers.Dense(16, activation="relu"), layers.Dense(10)])


def augmentation():
    return keras.Sequential([keras.Input((28, 28, 1)), layers.RandomRotation(0.05), layers.RandomTranslation(0.1, 0.1),
                             layers.Flatten(), layers.Dense(10)])


def normalization():
    return keras.Sequential([keras.Input((28, 28, 1)), layers.Normalization(mean=0.13, variance=0.09),
                             layers.Flatten(), layers.Dense(10)])


def batchnorm():
    return keras.Sequential([keras.Input((784,)), layers.Dense(16), layers.BatchNormalization(),
                             layers.Activation("relu"), layers.Dense(10)])


class WithAddLoss(keras.Model):
    """Adds an activity penalty with ``self.add_loss`` in ``call``."""

    def __init__(self):
        super().__init__()
        self.flatten = layers.Flatten()
        self.hidden = layers.Dense(16, activation="relu")
        self.out = layers.Dense(10)

    def call(self, x, training=False):
        h = self.hidden(self.flatten(x))
        self.add_loss(1e-4 * keras.ops.mean(keras.ops.square(h)))
        return self.out(h)


def add_loss():
    return WithAddLoss()


KINDS = ("sequential_with_input", "sequential_without_input", "functional", "subclassed", "flat_input",
         "augmentation", "normalization", "batchnorm", "add_loss")
HAS_BATCHNORM = ("batchnorm",)
AUGMENTS = ("augmentation",)


def two_outputs():
    inputs = keras.Input((28, 28, 1))
    x = layers.Flatten()(inputs)
    return keras.Model(inputs, [layers.Dense(10)(x), layers.Dense(10)(x)])
