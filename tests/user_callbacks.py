"""Callbacks for ``--callback module:factory`` tests."""

import json
import os

import keras


class EpochMarker(keras.callbacks.Callback):
    """Appends each epoch's logs to the JSON-lines file ``$EPOCH_MARKER``."""

    def on_epoch_end(self, epoch, logs=None):
        with open(os.environ["EPOCH_MARKER"], "a") as f:
            f.write(json.dumps({"epoch": epoch, **(logs or {})}) + "\n")


def stop_after_first_epoch():
    """A factory: a LambdaCallback that stops training after epoch 1."""
    callback = keras.callbacks.LambdaCallback()

    def stop(epoch, logs):
        callback.model.stop_training = True

    callback.on_epoch_end = stop
    return callback


class Broken(keras.callbacks.Callback):
    """Raises at the end of the first loop call."""

    def on_train_batch_end(self, batch, logs=None):
        raise RuntimeError("disk quota of the callback's own log exceeded")


def checkpoint_to_cwd():
    """Keras' ModelCheckpoint, saving the whole model to ./checkpoint.keras every epoch."""
    return keras.callbacks.ModelCheckpoint("checkpoint.keras")
