"""Models that produce a non-finite loss, or non-finite gradients under a finite loss, on demand.

Whatever the CPU and its kernels (oneDNN fusions on AVX2 or AVX-512, or none), these
faults cannot be swallowed: the poison is applied after the last layer, to the float32
logits, by a multiplication (IEEE: ``x * NaN`` is NaN) or, for gradients only, in the
backward pass of an identity. A NaN pixel, by contrast, can vanish inside a fused
MatMul+BiasAdd+Relu whose max(x, 0) returns 0 for NaN.
"""

import keras
import tensorflow as tf
from keras import layers


class Poison(layers.Layer):
    """Identity on float32 logits with two switches (non-trainable weights, default 1).

    ``forward``: multiplied into the output: NaN gives a non-finite loss (and gradients).
    ``backward``: multiplied into the gradient only: inf gives non-finite gradients under
    a finite loss. ``at_step``: if > 0, the switches apply only at that training call
    (1-based), counted in ``calls``; otherwise always.
    """

    def __init__(self, at_step: int = 0, forward: float = 1.0, backward: float = 1.0, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.at_step, self.forward_value, self.backward_value = at_step, forward, backward

    def build(self, input_shape):
        self.forward = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.forward_value),
                                       trainable=False, name="forward")
        self.backward = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.backward_value),
                                        trainable=False, name="backward")
        self.calls = self.add_weight(shape=(), dtype="int64", initializer="zeros", trainable=False, name="calls")

    def call(self, logits, training=False):
        forward, backward = tf.identity(self.forward.value), tf.identity(self.backward.value)
        if self.at_step:
            if training:
                self.calls.assign_add(1)
            active = tf.logical_and(tf.cast(training, tf.bool), tf.equal(self.calls.value, self.at_step))
            forward = tf.where(active, forward, 1.0)
            backward = tf.where(active, backward, 1.0)

        @tf.custom_gradient
        def scale(x):
            return x * forward, lambda dy: dy * backward

        return scale(tf.cast(logits, tf.float32))


def poisoned_mlp(at_step: int = 0, forward: float = 1.0, backward: float = 1.0):
    """Dense 16 ReLU, Dense 10 float32 logits, then :class:`Poison`."""
    return keras.Sequential([
        keras.Input((784,)),
        layers.Dense(16, activation="relu"),
        layers.Dense(10, dtype="float32"),
        Poison(at_step, forward, backward, name="poison"),
    ])


def nan_loss_at_step_3():
    """The loss of training step 3 is NaN (so are its gradients)."""
    return poisoned_mlp(at_step=3, forward=float("nan"))


def inf_gradients_at_step_3():
    """Training step 3 has a finite loss but infinite gradients."""
    return poisoned_mlp(at_step=3, backward=float("inf"))


for _factory in (poisoned_mlp, nan_loss_at_step_3, inf_gradients_at_step_3):
    _factory.mnist_input_shape = (784,)
