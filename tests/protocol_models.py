"""Models that customise training the way Keras teaches: overriding the model protocol.

Each is what a user would write after reading "Customizing what happens in fit()"; the
tests check that mnist_core runs their code, as ``model.fit`` would, instead of its own.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops


class _Base(keras.Model):
    """A small dense classifier on flat input (no dropout: runs can be compared exactly)."""

    mnist_input_shape = (784,)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = layers.Dense(32, activation="tanh")
        self.logits = layers.Dense(10, dtype="float32")

    def call(self, x, training=False):
        return self.logits(self.hidden(x))


class ShiftedLabels(_Base):
    """compute_loss trains on the label + 1 (mod 10): accuracy on the true labels collapses."""

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return super().compute_loss(x, (y + 1) % 10, y_pred, sample_weight, training=training)


class NoUpdate(_Base):
    """train_step computes the loss and metrics but never applies its gradients."""

    def train_step(self, data):
        x, y = data
        y_pred = self(x, training=True)
        loss = self.compute_loss(x, y, y_pred)
        self._loss_tracker.update_state(loss)
        return self.compute_metrics(x, y, y_pred)


class GuideTrainStep(_Base):
    """The Keras guide's custom train_step, with its own metrics and an extra log."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.acc = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.acc]

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x, y, y_pred)
            scaled = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        self.loss_tracker.update_state(loss)
        self.acc.update_state(y, y_pred)
        return {"loss": self.loss_tracker.result(), "accuracy": self.acc.result(),
                "grad_norm": ops.sqrt(sum(ops.sum(ops.square(g)) for g in gradients))}

    def test_step(self, data):
        x, y = data
        y_pred = self(x, training=False)
        self.loss_tracker.update_state(self.compute_loss(x, y, y_pred))
        self.acc.update_state(y, y_pred)
        return {"loss": self.loss_tracker.result(), "accuracy": self.acc.result()}


class WithTopK(_Base):
    """compute_metrics adds a metric of its own (top-2 accuracy)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.top2 = keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        results = super().compute_metrics(x, y, y_pred, sample_weight)
        self.top2.update_state(y, y_pred)
        results["top2"] = self.top2.result()
        return results


class NumpyInStep(_Base):
    """Not traceable: numpy on a symbolic tensor inside train_step."""

    def train_step(self, data):
        x, y = data
        scale = np.mean(x)  # fails on a graph tensor
        return super().train_step((x * scale, y))


class MixesDtypes(_Base):
    """Joins a layer's output with the float32 input without a cast: fails under a mixed
    precision policy (its outputs are float16/bfloat16), in model.fit as here."""

    def train_step(self, data):
        x, y = data
        joined = tf.concat([self.hidden(x), x], axis=-1)
        return super().train_step((joined[:, 32:], y))


class CountsInPython(_Base):
    """A Python side effect: the counter moves once, at tracing, not at every step."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.steps_seen = 0

    def train_step(self, data):
        self.steps_seen += 1
        return super().train_step(data)


class PrintsInStep(_Base):
    """A Python side effect: print runs once, at tracing."""

    def train_step(self, data):
        print("training on a batch")
        return super().train_step(data)


class TestStepWithoutAccuracy(_Base):
    """A test_step that reports only a loss."""

    def test_step(self, data):
        x, y = data
        y_pred = self(x, training=False)
        self._loss_tracker.update_state(self.compute_loss(x, y, y_pred))
        return {"loss": self._loss_tracker.result()}


class Plain(_Base):
    """No override: trained by mnist_core's explicit step (the reference)."""


class PoisonedLoss(_Base):
    """compute_loss override with infinite gradients (finite loss) at training step 3."""

    def __init__(self, **kwargs):
        import fault_models

        super().__init__(**kwargs)
        self.poison = fault_models.Poison(at_step=3, backward=float("inf"))

    def call(self, x, training=False):
        return self.poison(super().call(x, training=training), training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return super().compute_loss(x, y, y_pred, sample_weight, training=training)


def compiled_already():
    """A factory that returns a compiled model (the tutorial habit)."""
    model = Plain()
    model.compile(optimizer="sgd", loss="mse")
    return model


compiled_already.mnist_input_shape = (784,)
