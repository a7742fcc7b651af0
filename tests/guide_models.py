"""The examples of Keras' guide "Customizing what happens in fit() with TensorFlow", as written.

Each class is the guide's own, unchanged. What applies to a 10-class image classifier is
only what the guide leaves to the reader: the layers of the model and the loss and metric
passed to ``compile`` (the guide regresses 32 random numbers onto 1 with ``mse``/``mae``).
Each factory builds the model and compiles it as the guide does, so mnist_core receives it
the way ``fit`` would. The GAN example does not train a classifier and is left out.
"""

import keras
import tensorflow as tf
from keras import layers

CLASSIFIER_LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _layers():
    inputs = keras.Input(shape=(784,))
    hidden = layers.Dense(32, activation="relu")(inputs)
    return inputs, layers.Dense(10)(hidden)


# --- "A first simple example" ---------------------------------------------------------


class CustomModel(keras.Model):
    def train_step(self, data):
        # Unpack the data. Its structure depends on your model and
        # on what you pass to `fit()`.
        x, y = data

        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)  # Forward pass
            # Compute the loss value
            # (the loss function is configured in `compile()`)
            loss = self.compute_loss(y=y, y_pred=y_pred)

        # Compute gradients
        trainable_vars = self.trainable_variables
        gradients = tape.gradient(loss, trainable_vars)

        # Update weights
        self.optimizer.apply(gradients, trainable_vars)

        # Update metrics (includes the metric that tracks the loss)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)

        # Return a dict mapping metric names to current value
        return {m.name: m.result() for m in self.metrics}


def first_simple_example():
    inputs, outputs = _layers()
    model = CustomModel(inputs, outputs)
    model.compile(optimizer="adam", loss=CLASSIFIER_LOSS, metrics=["accuracy"])
    return model


# --- "Going lower-level" --------------------------------------------------------------


class LowerLevelModel(keras.Model):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.mae_metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def train_step(self, data):
        x, y = data

        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)  # Forward pass
            # Compute our own loss
            loss = self.loss_fn(y, y_pred)

        # Compute gradients
        trainable_vars = self.trainable_variables
        gradients = tape.gradient(loss, trainable_vars)

        # Update weights
        self.optimizer.apply(gradients, trainable_vars)

        # Compute our own metrics
        self.loss_tracker.update_state(loss)
        self.mae_metric.update_state(y, y_pred)
        return {
            "loss": self.loss_tracker.result(),
            "accuracy": self.mae_metric.result(),
        }

    @property
    def metrics(self):
        # We list our `Metric` objects here so that `reset_states()` can be
        # called automatically at the start of each epoch
        # or at the start of `evaluate()`.
        return [self.loss_tracker, self.mae_metric]


def going_lower_level():
    inputs, outputs = _layers()
    model = LowerLevelModel(inputs, outputs)
    # We don't pass a loss or metrics here.
    model.compile(optimizer="adam")
    return model


# --- "Supporting sample_weight & class_weight" ----------------------------------------


class SampleWeightModel(keras.Model):
    def train_step(self, data):
        # Unpack the data. Its structure depends on your model and
        # on what you pass to `fit()`.
        if len(data) == 3:
            x, y, sample_weight = data
        else:
            sample_weight = None
            x, y = data

        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)  # Forward pass
            # Compute the loss value.
            # The loss function is configured in `compile()`.
            loss = self.compute_loss(
                y=y,
                y_pred=y_pred,
                sample_weight=sample_weight,
            )

        # Compute gradients
        trainable_vars = self.trainable_variables
        gradients = tape.gradient(loss, trainable_vars)

        # Update weights
        self.optimizer.apply(gradients, trainable_vars)

        # Update the metrics.
        # Metrics are configured in `compile()`.
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred, sample_weight=sample_weight)

        # Return a dict mapping metric names to current value.
        # Note that it will include the loss (tracked in self.metrics).
        return {m.name: m.result() for m in self.metrics}


def supporting_sample_weight():
    inputs, outputs = _layers()
    model = SampleWeightModel(inputs, outputs)
    model.compile(optimizer="adam", loss=CLASSIFIER_LOSS, metrics=["accuracy"])
    return model


# --- "Providing your own evaluation step" ---------------------------------------------


class TestStepModel(keras.Model):
    def test_step(self, data):
        # Unpack the data
        x, y = data
        # Compute predictions
        y_pred = self(x, training=False)
        # Updates the metrics tracking the loss
        loss = self.compute_loss(y=y, y_pred=y_pred)
        # Update the metrics.
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        # Return a dict mapping metric names to current value.
        # Note that it will include the loss (tracked in self.metrics).
        return {m.name: m.result() for m in self.metrics}


def own_evaluation_step():
    inputs, outputs = _layers()
    model = TestStepModel(inputs, outputs)
    model.compile(loss=CLASSIFIER_LOSS, metrics=["accuracy"])
    return model


EXAMPLES = ("first_simple_example", "going_lower_level", "supporting_sample_weight", "own_evaluation_step")
