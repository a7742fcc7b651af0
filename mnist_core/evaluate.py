"""``python -m mnist_core.evaluate`` / ``mnist-evaluate``: reload a trained model, report test metrics.

Works on ``RUN/model.keras`` and on the SavedModel ``RUN/saved_model/`` that
``--export-savedmodel`` writes. The data source defaults to the one recorded in the run's
``summary.json``, so ``--model-path RUN/model.keras`` alone reproduces the run's test
accuracy and loss. Besides loss and accuracy it prints per-class precision, recall and F1
and the confusion matrix (rich tables), or all of it as one JSON object (``--json``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from mnist_core import cli
from mnist_core.config import DATASETS

PROG = "mnist-evaluate"


def build_parser():
    p = cli.ArgumentParser(prog=PROG, description="Evaluate a trained mnist_core model on a test set.")
    p.add_argument("--model-path", dest="model_path", required=True, metavar="PATH",
                   help="RUN/model.keras, or a SavedModel directory written by --export-savedmodel")
    p.add_argument("--dataset", choices=DATASETS, help="dataset (default: the run's, else mnist)")
    p.add_argument("--data-dir", dest="data_dir", metavar="DIR", help="data location (default: the run's)")
    p.add_argument("--batch-size", dest="batch_size", type=cli.positive_int, default=512)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return p


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


def evaluate_path(model_path: Path, dataset: Optional[str] = None, data_dir: Optional[str] = None,
                  batch_size: int = 512) -> Dict:
    """Evaluates a saved model on its run's test set (or the one given); returns :func:`metrics` and more."""
    from mnist_core import data as data_lib
    from mnist_core import inference

    classifier = inference.load_classifier(model_path)  # a bad path is reported before data is looked for
    data = inference.load_run_data(inference.run_summary(model_path), dataset, data_dir)
    logits = classifier.logits(data.test_images, batch_size)
    result = metrics(logits, data.test_labels, data_lib.class_names(data.name), classifier.regularization_loss)
    result.update(model_path=str(model_path), model_format=classifier.format, dataset=data.describe())
    return result


def print_report(result: Dict, console=None) -> None:
    """Rich tables: per-class precision/recall/F1 and the confusion matrix."""
    from rich.table import Table

    from mnist_core.reporting import make_console

    console = console or make_console()
    per_class = result["per_class"]
    console.print(f"data: {result['dataset']}", highlight=False, markup=False)
    console.print(f"model: {result['model_path']} ({result['model_format']})", highlight=False, markup=False)

    table = Table(title="per class")
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in per_class:
        table.add_row(row["name"], f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}",
                      str(row["support"]))
    table.add_section()
    table.add_row("macro avg", f"{result['macro_precision']:.4f}", f"{result['macro_recall']:.4f}",
                  f"{result['macro_f1']:.4f}", str(result["test_examples"]))
    console.print(table)

    matrix = result["confusion_matrix"]
    short = [str(row["class"]) for row in per_class]
    cm = Table(title="confusion matrix (rows: true class, columns: predicted)")
    cm.add_column("true", justify="left")
    for name in short:
        cm.add_column(name, justify="right")
    for i, row in enumerate(matrix):
        cells = []
        for j, count in enumerate(row):
            if i == j:
                cells.append(f"[bold green]{count}[/]")
            elif count:
                cells.append(f"[red]{count}[/]")
            else:
                cells.append("[dim]0[/]")
        label = short[i] if per_class[i]["name"] == short[i] else f"{short[i]} {per_class[i]['name']}"
        cm.add_row(label, *cells)
    console.print(cm)

    pairs = sorted(((matrix[i][j], i, j) for i in range(len(matrix)) for j in range(len(matrix)) if i != j),
                   reverse=True)[:3]
    confused = ", ".join(f"{per_class[i]['name']}→{per_class[j]['name']} {n}" for n, i, j in pairs if n)
    if confused:
        console.print(f"most confused (true→predicted): {confused}", highlight=False, markup=False)
    console.print(f"test_accuracy {result['test_accuracy']:.4f} test_loss {result['test_loss']:.4f} "
                  f"examples {result['test_examples']}", highlight=False, markup=False)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``mnist-evaluate``."""
    cli.quiet_tensorflow_logs()
    args = build_parser().parse_args(argv)

    def body():
        cli.import_tensorflow()
        result = evaluate_path(Path(args.model_path), args.dataset, args.data_dir, args.batch_size)
        if args.json:
            print(json.dumps(result))
        else:
            print_report(result)

    return cli.run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
