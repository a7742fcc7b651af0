"""The loss a Keras-protocol model is compiled with when ``--label-smoothing`` is set."""

import keras


@keras.saving.register_keras_serializable(package="mnist_core")
class SmoothedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Sparse labels, smoothed targets: Keras' ``CategoricalCrossentropy(label_smoothing=ε,
    from_logits=True)`` on the one-hot labels (Keras' sparse loss has no smoothing), the
    same math as mnist_core's explicit step (:func:`mnist_core.step.per_example_loss`)."""

    def __init__(self, label_smoothing: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        targets = keras.ops.one_hot(labels, y_pred.shape[-1])
        return keras.losses.categorical_crossentropy(targets, y_pred, from_logits=True,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}
