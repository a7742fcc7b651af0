"""What a model returns: logits, or class probabilities from a softmax or a sigmoid.

The tutorials end their models in ``Activation('softmax')`` (one in ``sigmoid``) and compile
``categorical_crossentropy`` with its default ``from_logits=False``; mnist_core's own models
return logits. The loss, the evaluation, the SavedModel and prediction must each treat the
model's outputs as what they are — a second softmax over probabilities trains and scores a
different model — so the kind is found once, here:

* a model may declare it: a class attribute ``mnist_outputs = "logits"``, ``"softmax"`` or
  ``"sigmoid"``;
* otherwise a Sequential or Functional model is read: its output layer's activation
  (``Activation('softmax')``, ``Dense(10, activation='softmax')``, a ``Softmax`` layer...);
* otherwise (a subclassed model) its outputs on random images are looked at: rows that are
  non-negative and sum to one are a softmax's; values all strictly between 0 and 1, a
  sigmoid's. Logits of a freshly initialised model do neither.
"""

from __future__ import annotations

import numpy as np

KINDS = ("logits", "softmax", "sigmoid")


def _activation_kind(layer) -> str:
    """``softmax``/``sigmoid`` if ``layer`` ends in that activation, else ``logits``."""
    import keras

    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", "") if activation is not None else ""
    return name if name in ("softmax", "sigmoid") else "logits"


def _output_layer(model):
    """The layer that produces a Sequential or Functional model's output, or None."""
    import keras

    if isinstance(model, keras.Sequential):
        return model.layers[-1] if model.layers else None
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        return None
    if not outputs or len(outputs) != 1:
        return None
    history = getattr(outputs[0], "_keras_history", None)
    layer = getattr(history, "operation", None) if history is not None else None
    if isinstance(layer, keras.Model):  # a nested model: its own output layer
        return _output_layer(layer)
    return layer


def output_kind(model, input_shape=None) -> str:
    """``logits``, ``softmax`` or ``sigmoid``: what ``model``'s 10 outputs are.

    Args:
        model: A built ``keras.Model``.
        input_shape: One example's shape, to look at a subclassed model's outputs.

    Raises:
        ValueError: an ``mnist_outputs`` attribute that names no kind.
    """
    declared = getattr(model, "mnist_outputs", None)
    if declared is not None:
        if declared not in KINDS:
            raise ValueError(f"mnist_outputs = {declared!r}: expected one of {', '.join(KINDS)}")
        return declared
    layer = _output_layer(model)
    if layer is not None:
        return _activation_kind(layer)
    if input_shape is None:
        return "logits"
    probe = np.random.default_rng(0).random((16, *input_shape)).astype("float32")
    out = np.asarray(model(probe, training=False), dtype=np.float64)
    if out.min() >= 0.0 and np.allclose(out.sum(axis=-1), 1.0, atol=1e-3):
        return "softmax"
    if out.min() > 0.0 and out.max() < 1.0:
        return "sigmoid"
    return "logits"


def output_width(model, input_shape) -> int:
    """How many classes ``model`` outputs: its output's last dimension (read off its
    output, or a call on zeros of ``input_shape`` for a subclassed model)."""
    try:
        width = model.outputs[0].shape[-1] if model.outputs else None
    except (AttributeError, ValueError):
        width = None
    if width is None:
        width = np.asarray(model(np.zeros((1, *input_shape), "float32"), training=False)).shape[-1]
    return int(width)


def probabilities(outputs: np.ndarray, kind: str) -> np.ndarray:
    """Class probabilities ``[N, 10]`` (float64) from a model's outputs of ``kind``.

    Logits go through a softmax; a softmax's outputs are taken as they are; a sigmoid's are
    normalised to sum to one, as Keras' categorical cross-entropy normalises them.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    if kind == "logits":
        z = outputs - outputs.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)
    total = outputs.sum(axis=-1, keepdims=True)
    return outputs / np.where(total > 0, total, 1.0)


def as_logits(outputs, kind: str):
    """Logits (a TensorFlow tensor) whose softmax is :func:`probabilities` of the outputs.

    For probabilities that is their logarithm (clipped at Keras' epsilon, as its
    cross-entropy clips them), so cross-entropy computed from these logits is the loss a
    probability model is trained on.
    """
    import tensorflow as tf

    outputs = tf.cast(outputs, tf.float32)
    if kind == "logits":
        return outputs
    normalised = outputs / tf.reduce_sum(outputs, axis=-1, keepdims=True)
    return tf.math.log(tf.clip_by_value(normalised, 1e-7, 1.0))
