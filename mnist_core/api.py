"""Python functions for using a trained model: evaluate it, classify images.

The same code the ``mnist-evaluate`` and ``mnist-predict`` tools run, for scripts and
notebooks; exported at the package top level (``mnist_core.evaluate_model``,
``mnist_core.predict_proba``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np


def evaluate_model(model, data=None, *, batch_size: int = 512, dataset: Optional[str] = None,
             data_dir: Optional[str] = None) -> Dict:
    """Loss, accuracy, per-class precision/recall/F1 and the confusion matrix of a model.

    Args:
        model: A path (``RUN/model.keras`` or a SavedModel directory) or a ``keras.Model``
            (taking float images in [0, 1] of its input shape, returning logits).
        data: ``(x_test, y_test)`` or ``(x_train, y_train, x_test, y_test)`` arrays, or an
            :class:`mnist_core.data.MnistData`; default: the run's test set (for a path,
            from its ``summary.json``), else MNIST's.
        batch_size: Images per forward pass.
        dataset, data_dir: Where to load the test set from when ``data`` is None.

    Returns:
        The dict ``mnist-evaluate --json`` prints (``test_loss``, ``test_accuracy``,
        ``test_examples``, ``per_class``, ``confusion_matrix``...).
    """
    from mnist_core import data as data_lib
    from mnist_core import evaluate as evaluate_cli
    from mnist_core import inference

    summary = inference.run_summary(Path(model)) if isinstance(model, (str, Path)) else {}
    if data is None:
        test = inference.load_run_data(summary, dataset, data_dir)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        test = data_lib.from_arrays((data[0], data[1], data[0], data[1]), name=dataset or "mnist")
    else:
        test = data_lib.from_arrays(data, name=dataset or "mnist")
    classifier = _classifier(model)
    logits = classifier.logits(test.test_images, batch_size)
    result = evaluate_cli.metrics(logits, test.test_labels, data_lib.class_names(test.name),
                                  classifier.regularization_loss)
    result.update(model_path=str(classifier.path), model_format=classifier.format, dataset=test.describe())
    return result


def predict_proba(model, images, *, batch_size: int = 512) -> np.ndarray:
    """Class probabilities ``[N, 10]`` of images.

    Args:
        model: A path (``RUN/model.keras`` or a SavedModel directory) or a ``keras.Model``.
        images: uint8 pixels or floats in [0, 1] (rounded to 8-bit pixels), shaped ``[N, 28, 28]``,
            ``[N, 28, 28, 1]`` or ``[N, 784]`` (already MNIST-like: light on dark,
            centred; ``mnist-predict`` prepares photos and files).
        batch_size: Images per forward pass.
    """
    from mnist_core import data as data_lib

    pixels = data_lib.from_arrays((images, np.zeros(len(images), np.uint8)) * 2).train_images
    if pixels.dtype != np.uint8:
        pixels = np.round(pixels * 255.0).astype(np.uint8)
    return _classifier(model).probabilities(pixels, batch_size)


def _classifier(model: Union[str, Path, object]):
    """A :class:`mnist_core.inference.Classifier` for a path or an in-memory model."""
    from mnist_core import inference

    if isinstance(model, (str, Path)):
        return inference.load_classifier(Path(model))
    return inference.classifier_for(model)
