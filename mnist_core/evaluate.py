"""``python -m mnist_core.evaluate`` / ``mnist-evaluate``: reload a trained model, report test metrics.

Only the command line lives here; the metrics are :mod:`mnist_core.evaluation`'s. Works
on ``RUN/model.keras`` and on the SavedModel ``RUN/saved_model/`` that
``--export-savedmodel`` writes. The data source defaults to the one recorded in the run's
``summary.json``, so ``--model-path RUN/model.keras`` alone reproduces the run's test
accuracy and loss. Besides loss and accuracy it prints per-class precision, recall and F1
and the confusion matrix (rich tables), or all of it as one JSON object (``--json``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

from mnist_core import cli, reporting
from mnist_core.config import DATASETS

PROG = "mnist-evaluate"


def build_parser():
    p = cli.ArgumentParser(prog=PROG, description="Evaluate a trained mnist_core model on a test set.")
    p.add_argument("--model-path", dest="model_path", required=True, metavar="PATH",
                   help="RUN/model.keras, or a SavedModel directory written by --export-savedmodel")
    p.add_argument("--dataset", metavar="NAME",
                   help=f"dataset: {', '.join(DATASETS)} or a TFDS name (default: the run's)")
    p.add_argument("--data-dir", dest="data_dir", metavar="DIR", help="data location (default: the run's)")
    p.add_argument("--batch-size", dest="batch_size", type=cli.positive_int, default=512)
    p.add_argument("--pixels", choices=("unit", "raw"),
                   help="the pixel scale the model was trained on, for a model that does not record it (saved by "
                        "plain Keras): unit (pixels / 255) or raw (0-255); default: recorded, else guessed and said")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first: where the model's own classes are registered (repeatable)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return p


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
        from mnist_core.evaluation import evaluate_path

        result = evaluate_path(Path(args.model_path), args.dataset, args.data_dir, args.batch_size,
                               pixels=args.pixels, imports=args.imports)
        reporting.result_ready()
        if args.json:
            print(json.dumps(result))
        else:
            print_report(result)

    return cli.run_main(PROG, body, argv)


if __name__ == "__main__":
    sys.exit(main())
