"""The loss a model is compiled with when ``--label-smoothing`` is set, and what a saved model records instead."""

import keras


@keras.saving.register_keras_serializable(package="mnist_core")
class SmoothedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Sparse labels, smoothed targets: Keras' ``CategoricalCrossentropy(label_smoothing=ε,
    from_logits=True)`` on the one-hot labels (Keras' sparse loss has no smoothing), the
    same math as mnist_core's explicit step (:func:`mnist_core.step.per_example_loss`)."""

    def __init__(self, label_smoothing: float = 0.0, from_logits: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.label_smoothing = label_smoothing
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        targets = keras.ops.one_hot(labels, y_pred.shape[-1])
        return keras.losses.categorical_crossentropy(targets, y_pred, from_logits=self.from_logits,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing, "from_logits": self.from_logits}


def native_twin(loss):
    """The plain-Keras loss a model compiled with ``loss`` records when saved (see
    :func:`mnist_core.optim.native_twin`): the smoothed loss is recorded as Keras'
    ``SparseCategoricalCrossentropy(from_logits=True)``, the loss a loaded model is
    evaluated with, since label smoothing is a way of training, not of scoring; any other
    loss as it is."""
    if isinstance(loss, SmoothedSparseCategoricalCrossentropy):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=loss.from_logits)
    return loss
