"""Test-set metrics of a trained model: loss, accuracy, per-class precision/recall/F1, confusions.

The same numbers for a saved model (``RUN/model.keras``, a SavedModel) and for a model in
memory: :func:`evaluate_model` is what ``mnist-evaluate`` prints (``--json``) and
``mnist_core.evaluate_model`` returns.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """``[true, predicted]`` counts: row i is how the examples of class i were classified."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predictions.astype(np.int64)), 1)
    return matrix


def per_class_metrics(matrix: np.ndarray, names: Sequence[str]) -> List[Dict]:
    """Precision, recall, F1 and support of every class from a confusion matrix.

    A class never predicted has precision 0 (no correct predictions to credit), the
    convention of scikit-learn's ``zero_division=0``.
    """
    rows = []
    for i, name in enumerate(names):
        tp = int(matrix[i, i])
        predicted = int(matrix[:, i].sum())
        support = int(matrix[i, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class": i, "name": name, "precision": precision, "recall": recall,
                     "f1": f1, "support": support})
    return rows


def metrics(logits: np.ndarray, labels: np.ndarray, names: Sequence[str],
            regularization_loss: float = 0.0) -> Dict:
    """Loss, accuracy, per-class table and confusion matrix of ``logits`` against ``labels``.

    ``test_loss`` is the mean cross-entropy plus the model's regularisation term, as the
    training run reports it.
    """
    labels = labels.astype(np.int64)
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    cross_entropy = -log_probs[np.arange(len(labels)), labels]
    predictions = logits.argmax(axis=1)
    matrix = confusion_matrix(labels, predictions, len(names))
    per_class = per_class_metrics(matrix, names)
    return {
        "test_loss": float(cross_entropy.mean()) + regularization_loss,
        "test_accuracy": float((predictions == labels).mean()),
        "test_examples": int(len(labels)),
        "macro_precision": float(np.mean([r["precision"] for r in per_class])),
        "macro_recall": float(np.mean([r["recall"] for r in per_class])),
        "macro_f1": float(np.mean([r["f1"] for r in per_class])),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def evaluate_model(model, data=None, *, batch_size: int = 512, dataset: Optional[str] = None,
                   data_dir: Optional[str] = None, pixels: Optional[str] = None, imports: Sequence[str] = ()) -> Dict:
    """Loss, accuracy, per-class precision/recall/F1 and the confusion matrix of a model.

    Args:
        model: A path (``RUN/model.keras``, a ``.h5`` file or a SavedModel directory) or a
            ``keras.Model`` (as ``mnist_core.train`` trained it).
        data: ``(x_test, y_test)`` or ``(x_train, y_train, x_test, y_test)`` arrays, a
            ``tf.data.Dataset`` of ``(image, label)`` (all of it evaluated), or an
            :class:`mnist_core.data.MnistData`; default: the test set of the dataset the
            model was trained on.
        batch_size: Images per forward pass.
        dataset, data_dir: Where to load the test set from when ``data`` is None.
        pixels: ``unit`` or ``raw``: the pixel scale a model that does not record it (one
            saved by plain Keras) was trained on; otherwise guessed, and the guess said.
        imports: Modules to import before loading (``--import``): the model's own classes.

    Returns:
        The dict ``mnist-evaluate --json`` prints (``test_loss``, ``test_accuracy``,
        ``test_examples``, ``per_class``, ``confusion_matrix``...); the classes are named
        as the model's dataset names them.
    """
    from mnist_core import data as data_lib
    from mnist_core import inference

    classifier = inference.classifier_of(model, pixels=pixels, imports=imports)  # a bad path first, before data
    info = classifier.info
    if data is None:
        summary = inference.run_summary(Path(model)) if isinstance(model, (str, Path)) else {}
        test = inference.load_run_data(info, summary, dataset, data_dir)
    else:
        test = data_lib.from_arrays(data, name=dataset or info.dataset, where="evaluate_model data")
        if test.test_labels is None:  # (x_test, y_test), or a tf.data.Dataset: all of it is the test set
            test = dataclasses.replace(test, test_images=test.train_images, test_labels=test.train_labels)
    logits = classifier.logits(test.test_images, batch_size)
    names = info.class_names if info.known_dataset or len(test.classes) != logits.shape[1] else test.classes
    result = metrics(logits, test.test_labels, names, classifier.regularization_loss)
    result.update(model_path=str(classifier.path), model_format=classifier.format, dataset=test.describe())
    return result


def evaluate_path(model_path: Path, dataset: Optional[str] = None, data_dir: Optional[str] = None,
                  batch_size: int = 512, pixels: Optional[str] = None, imports: Sequence[str] = ()) -> Dict:
    """Evaluates a saved model on its own dataset's test set (or the one given); :func:`evaluate_model`'s dict."""
    return evaluate_model(Path(model_path), batch_size=batch_size, dataset=dataset, data_dir=data_dir,
                          pixels=pixels, imports=imports)
