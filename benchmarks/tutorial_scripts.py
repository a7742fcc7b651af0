"""The tutorials' nine training scripts as they run under Keras 3: each script's own model,
compile and fit, for comparing mnist_core's recipe of that script with the script itself.

Each :class:`Script` holds the script's code with only what Keras 3 no longer accepts
changed: ``RMSprop(lr=...)`` is ``RMSprop(learning_rate=...)`` (and ``decay=0.0`` is gone:
it was no decay), ``np_utils.to_categorical`` is ``keras.utils.to_categorical``,
``Convolution2D`` is ``Conv2D``, ``input_shape=``/``input_dim=`` on the first layer is a
``keras.Input``. Script 001b's ``'adadelta'`` is ``Adadelta(learning_rate=1.0)``, the
optimizer the string meant in the standalone Keras 2 it was written for (Keras 3's is
0.001); script 000's ``'adadelta'`` stays a string (it was written for tf.keras, where it
already meant 0.001). Each recipe ``tutorial-<id>`` trains the same model with the same
settings in mnist_core (``python -m mnist_core.recipes``).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict

import numpy as np


@dataclasses.dataclass(frozen=True)
class Script:
    """One tutorial script.

    Attributes:
        script: Its id in the tutorials' table (000, 001a, ...).
        build: Builds and compiles the model exactly as the script does.
        images: The script's preprocessing of ``mnist.load_data()``'s uint8 images.
        batch_size, epochs: Its ``fit`` arguments.
    """

    script: str
    build: Callable
    images: Callable[[np.ndarray], np.ndarray]
    batch_size: int
    epochs: int

    @property
    def recipe(self) -> str:
        return f"tutorial-{self.script}"


def _flat_raw(images):  # reshape(N, 784).astype('float'): 0-255, not scaled
    return images.reshape(len(images), 28 * 28).astype("float")


def _flat_unit(images):  # reshape(N, -1) / 255.
    return images.reshape(images.shape[0], -1) / 255.0


def _image_unit(images):  # reshape(N, 28, 28, 1).astype('float32') / 255
    return images.reshape(images.shape[0], 28, 28, 1).astype("float32") / 255


def _000():
    from keras import layers
    from keras.models import Sequential

    model = Sequential()
    model.add(layers.Input((28, 28)))
    model.add(layers.Flatten())
    model.add(layers.Dense(1024))
    model.add(layers.Dense(512))
    model.add(layers.Dense(128))
    model.add(layers.Dense(10))
    model.add(layers.Activation("softmax"))
    model.compile(loss="categorical_crossentropy", optimizer="adadelta", metrics=["accuracy"])
    return model


def _001a():
    from keras.layers import Activation, Dense, Input
    from keras.models import Sequential
    from keras.optimizers import RMSprop

    model = Sequential([
        Input((784,)),
        Dense(32),
        Activation("relu"),
        Dense(10),
        Activation("softmax"),
    ])
    rmsprop = RMSprop(learning_rate=0.001, rho=0.9, epsilon=1e-08)
    model.compile(optimizer=rmsprop, loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def _001b():
    from keras.layers import Activation, Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
    from keras.models import Sequential
    from keras.optimizers import Adadelta

    model = Sequential()
    model.add(Input((28, 28, 1)))
    model.add(Conv2D(32, (3, 3), padding="same"))
    model.add(Activation("relu"))
    model.add(Conv2D(32, (3, 3)))
    model.add(Activation("relu"))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Dropout(0.25))
    model.add(Flatten())
    model.add(Dense(128))
    model.add(Activation("relu"))
    model.add(Dropout(0.5))
    model.add(Dense(10))
    model.add(Activation("softmax"))
    model.compile(loss="categorical_crossentropy", optimizer=Adadelta(learning_rate=1.0), metrics=["accuracy"])
    return model


def _002a():
    from keras import layers, models
    from keras.optimizers import RMSprop

    network = models.Sequential()
    network.add(layers.Input((28 * 28,)))
    network.add(layers.Dense(units=15, activation="relu"))
    network.add(layers.Dense(units=10, activation="softmax"))
    network.compile(optimizer=RMSprop(learning_rate=0.001), loss="categorical_crossentropy", metrics=["accuracy"])
    return network


def _002b():
    from keras import layers, models, regularizers
    from keras.optimizers import RMSprop

    network = models.Sequential()
    network.add(layers.Input((28 * 28,)))
    network.add(layers.Dense(units=128, activation="relu", kernel_regularizer=regularizers.l1(0.0001)))
    network.add(layers.Dropout(0.01))
    network.add(layers.Dense(units=32, activation="relu", kernel_regularizer=regularizers.l1(0.0001)))
    network.add(layers.Dropout(0.01))
    network.add(layers.Dense(units=10, activation="softmax"))
    network.compile(optimizer=RMSprop(learning_rate=0.001), loss="categorical_crossentropy", metrics=["accuracy"])
    return network


def _002c():
    from keras import layers, models
    from keras.optimizers import RMSprop

    network = models.Sequential()
    network.add(layers.Input((28, 28, 1)))
    network.add(layers.Conv2D(filters=6, kernel_size=(3, 3), activation="relu"))
    network.add(layers.AveragePooling2D((2, 2)))
    network.add(layers.Conv2D(filters=16, kernel_size=(3, 3), activation="relu"))
    network.add(layers.AveragePooling2D((2, 2)))
    network.add(layers.Conv2D(filters=120, kernel_size=(3, 3), activation="relu"))
    network.add(layers.Flatten())
    network.add(layers.Dense(84, activation="relu"))
    network.add(layers.Dense(10, activation="softmax"))
    network.compile(optimizer=RMSprop(learning_rate=0.001), loss="categorical_crossentropy", metrics=["accuracy"])
    return network


def _003a():
    from keras import layers, models
    from keras.optimizers import RMSprop

    network = models.Sequential()
    network.add(layers.Input((28 * 28,)))
    network.add(layers.Dense(units=15, activation="sigmoid"))
    network.add(layers.Dense(units=10, activation="sigmoid"))
    network.compile(optimizer=RMSprop(learning_rate=0.001), loss="categorical_crossentropy", metrics=["accuracy"])
    return network


def _003b():
    from keras import layers, models, regularizers
    from keras.optimizers import RMSprop

    network = models.Sequential()
    network.add(layers.Input((28 * 28,)))
    network.add(layers.Dense(units=128, activation="relu", kernel_regularizer=regularizers.l2(0.1)))
    network.add(layers.Dense(units=30, activation="relu", kernel_regularizer=regularizers.L2(0.1)))
    network.add(layers.Dense(units=10, activation="softmax"))
    network.compile(optimizer=RMSprop(learning_rate=0.001), loss="categorical_crossentropy", metrics=["accuracy"])
    return network


def _004():
    from keras import regularizers
    from keras.layers import Activation, BatchNormalization, Dense, Dropout, Input
    from keras.models import Sequential

    model = Sequential()
    model.add(Input((784,)))
    model.add(Dense(512))
    model.add(Activation("relu"))
    model.add(Dropout(0.2))
    model.add(Dense(512, kernel_regularizer=regularizers.l2(0.001)))
    model.add(BatchNormalization())
    model.add(Activation("relu"))
    model.add(Dropout(0.2))
    model.add(Dense(10))
    model.add(Activation("softmax"))
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


def _004_images(images):  # reshape(60000, 784).astype('float32'); /= 255
    x = images.reshape(len(images), 784).astype("float32")
    x /= 255
    return x


SCRIPTS: Dict[str, Script] = {s.script: s for s in (
    Script("000", _000, lambda images: images, 256, 12),
    Script("001a", _001a, _flat_unit, 32, 2),
    Script("001b", _001b, _image_unit, 128, 12),
    Script("002a", _002a, _flat_raw, 128, 20),
    Script("002b", _002b, _flat_raw, 128, 20),
    Script("002c", _002c, lambda images: images.reshape((len(images), 28, 28, 1)).astype("float") / 255, 128, 10),
    Script("003a", _003a, _flat_raw, 128, 20),
    Script("003b", _003b, _flat_raw, 128, 20),
    Script("004", _004, _004_images, 128, 4),
)}


def run_script(script: Script, data, seed: int) -> Dict:
    """Trains ``script`` as written under ``model.fit`` on ``data`` (an ``MnistData``): its
    preprocessing, one-hot labels, ``fit(..., validation_data=(test))``. Returns the final
    test accuracy and loss and the per-epoch history."""
    import keras

    keras.utils.set_random_seed(seed)
    model = script.build()
    y_train = keras.utils.to_categorical(data.train_labels, 10)
    y_test = keras.utils.to_categorical(data.test_labels, 10)
    x_test = script.images(data.test_images)
    history = model.fit(script.images(data.train_images), y_train, batch_size=script.batch_size,
                        epochs=script.epochs, verbose=0, validation_data=(x_test, y_test))
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return {"test_accuracy": float(accuracy), "test_loss": float(loss),
            "history": {k: [float(v) for v in values] for k, values in history.history.items()}}


def run_script_in_mnist_core(script: Script, data, seed: int, output_dir: str) -> Dict:
    """``run_script`` with ``model.fit`` replaced by ``mnist_core.train``: the same model
    object, compiled by the script, and the same arrays (one-hot labels, the script's pixel
    scaling); ``fit``'s ``batch_size`` and ``epochs`` given to ``TrainConfig``."""
    import keras

    import mnist_core
    from mnist_core.reporting import Reporter
    from mnist_core.trainer import Trainer

    keras.utils.set_random_seed(seed)
    model = script.build()
    arrays = (script.images(data.train_images), keras.utils.to_categorical(data.train_labels, 10),
              script.images(data.test_images), keras.utils.to_categorical(data.test_labels, 10))
    # Script 000 feeds the uint8 arrays as loaded, which fit turns into 0-255 floats.
    pixels = "raw" if arrays[0].dtype == np.uint8 else "unit"
    config = mnist_core.TrainConfig(batch_size=script.batch_size, epochs=script.epochs, seed=seed, pixels=pixels,
                                    output_dir=output_dir, quiet=True)
    summary = Trainer(config, Reporter(quiet=True), model=model, data=arrays).run()
    return {"test_accuracy": summary["test_accuracy"], "test_loss": summary["test_loss"]}
