"""mnist_core: MNIST-style classifiers trained by a compiled tf.GradientTape loop.

The Python API is the library the command-line tools use::

    import mnist_core

    config = mnist_core.TrainConfig(model="cnn", epochs=3, data_dir="../shared/data/mnist-5k")
    summary = mnist_core.train(config, callbacks=[keras.callbacks.EarlyStopping(patience=2)])

* :class:`TrainConfig`, :class:`Trainer`, :func:`train` — a training run
  (``model=`` a ``keras.Model`` object, subclass or factory; ``data=`` numpy arrays);
* :func:`load_data`, :func:`from_arrays`, :class:`MnistData` — datasets;
* :func:`load_model`, :func:`load_classifier`, :func:`evaluate_model`,
  :func:`predict_proba`, :func:`preprocess`, :func:`export_savedmodel` — using a trained model (the names
  ``evaluate`` and ``predict`` belong to the command-line modules);
* :func:`register_model` — add a model to the ``--model`` registry.

Names are imported on first use, so ``import mnist_core`` stays cheap (TensorFlow is
loaded only when something needs it).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "TrainConfig": ("mnist_core.config", "TrainConfig"),
    "Trainer": ("mnist_core.trainer", "Trainer"),
    "train": ("mnist_core.trainer", "train"),
    "MnistData": ("mnist_core.data", "MnistData"),
    "load_data": ("mnist_core.data", "load"),
    "from_arrays": ("mnist_core.data", "from_arrays"),
    "load_model": ("mnist_core.inference", "load_keras_model"),
    "load_classifier": ("mnist_core.inference", "load_classifier"),
    "export_savedmodel": ("mnist_core.inference", "export_savedmodel"),
    "evaluate_model": ("mnist_core.evaluation", "evaluate_model"),
    "predict_proba": ("mnist_core.inference", "predict_proba"),
    "preprocess": ("mnist_core.images", "preprocess"),
    "register_model": ("mnist_core.models", "register"),
    "MnistCoreError": ("mnist_core.errors", "MnistCoreError"),
}

__all__ = sorted(_EXPORTS) + ["__version__"]
_WITHOUT_TENSORFLOW = ("mnist_core.config", "mnist_core.errors")


# Functions whose refusals name their arguments, not the command line's flags.
_PYTHON_WORDS = ("load_data", "from_arrays", "load_model", "load_classifier", "export_savedmodel", "evaluate_model",
                 "predict_proba", "preprocess")


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        if module not in _WITHOUT_TENSORFLOW and "tensorflow" not in sys.modules:
            # TensorFlow's C++ side prints its start-up lines while it loads, before any
            # logging setting can reach them: loaded here, they are filtered as the
            # command-line tools filter them (a script's or notebook cell's output shows
            # mnist_core's lines; real warnings and errors still show).
            from mnist_core.startup import import_tensorflow

            import_tensorflow()
        value = getattr(importlib.import_module(module), attr)
        if name in _PYTHON_WORDS:
            from mnist_core.errors import in_python_words

            value = in_python_words(value)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mnist_core' has no attribute {name!r}")


def __dir__():
    return __all__
