"""The built-in models trained through the Keras model protocol, to measure its cost.

Each factory builds the registered model's layers into a ``keras.Sequential`` subclass
that overrides ``compute_loss`` (by calling Keras' own): the same architecture and loss,
but mnist_core then runs ``model.train_step`` (compiled loss, metrics, as ``fit`` does)
instead of its explicit step. ``python -m benchmarks.compare --models
mlp,benchmarks.protocol_models:mlp`` compares the two paths side by side.
"""

import keras

from mnist_core import models


class _ComputeLossSequential(keras.Sequential):
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return super().compute_loss(x, y, y_pred, sample_weight, training=training)


def _protocol(name):
    spec = models.get(name)

    def factory():
        reference = spec.factory()
        return _ComputeLossSequential([keras.Input(spec.input_shape), *reference.layers], name=f"{name}_keras_step")

    factory.mnist_input_shape = spec.input_shape
    factory.__doc__ = f"{name} through the Keras model protocol (compute_loss override)"
    return factory


mlp = _protocol("mlp")
deep_mlp = _protocol("deep_mlp")
cnn = _protocol("cnn")
lenet = _protocol("lenet")
