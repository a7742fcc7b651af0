"""``python -m mnist_core.evaluate`` / ``mnist-evaluate``: reload a trained model, report test metrics.

The data source defaults to the one recorded in the ``summary.json`` beside the model, so
``--model-path RUN/model.keras`` alone reproduces the run's test accuracy.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

from mnist_core import cli
from mnist_core.config import DATASETS
from mnist_core.errors import ConfigError, ModelError, one_line

PROG = "mnist-evaluate"


def build_parser():
    p = cli.ArgumentParser(prog=PROG, description="Evaluate a trained mnist_core model on a test set.")
    p.add_argument("--model-path", dest="model_path", required=True, metavar="PATH",
                   help="a model.keras file written by mnist_core.train")
    p.add_argument("--dataset", choices=DATASETS, help="dataset (default: the run's, else mnist)")
    p.add_argument("--data-dir", dest="data_dir", metavar="DIR", help="data location (default: the run's)")
    p.add_argument("--batch-size", dest="batch_size", type=cli.positive_int, default=256)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return p


def _run_config(model_path: Path) -> Dict:
    summary = model_path.parent / "summary.json"
    if not summary.exists():
        return {}
    try:
        return json.loads(summary.read_text())
    except ValueError:
        return {}


def load_model(path: Path):
    """Loads a ``.keras`` model (compile=False: only the weights and graph are needed)."""
    import keras

    import mnist_core.models.example  # noqa: F401  registers the example model for loading

    if not path.exists():
        raise ConfigError(f"--model-path {path}: no such file")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:
        raise ModelError(f"--model-path {path}: cannot load the model ({type(e).__name__}: {one_line(e)[:200]})") from None


def evaluate(model, images, labels, input_shape, batch_size: int = 256) -> Dict:
    """Loss (cross-entropy + regularisation) and accuracy of ``model`` on every example."""
    import tensorflow as tf

    from mnist_core import data as data_lib, loop, step

    strategy = tf.distribute.get_strategy()
    dataset = data_lib.eval_dataset(images, labels, batch_size=batch_size, input_shape=input_shape)
    totals = {k: float(v) for k, v in loop.make_eval_loop(strategy, step.make_eval_step(model))(dataset).items()}
    return {
        "test_loss": totals["loss"] / totals["count"],
        "test_accuracy": totals["correct"] / totals["count"],
        "test_examples": int(totals["count"]),
    }


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``mnist-evaluate``."""
    cli.quiet_tensorflow_logs()
    args = build_parser().parse_args(argv)

    def body():
        from mnist_core import data as data_lib

        path = Path(args.model_path)
        run = _run_config(path)
        run_config = run.get("config", {})
        dataset = args.dataset or run_config.get("dataset", "mnist")
        data_dir = args.data_dir or run_config.get("data_dir")
        data = data_lib.load(dataset, data_dir, seed=run_config.get("seed", 0),
                             synthetic_train_size=run_config.get("synthetic_train_size", 60000))
        model = load_model(path)
        input_shape = tuple(run.get("input_shape") or model.input_shape[1:])
        result = evaluate(model, data.test_images, data.test_labels, input_shape, args.batch_size)
        result.update(model_path=str(path), dataset=data.describe())
        if args.json:
            print(json.dumps(result))
        else:
            print(f"data: {data.describe()}")
            print(f"test_accuracy {result['test_accuracy']:.4f} test_loss {result['test_loss']:.4f} "
                  f"examples {result['test_examples']}")

    return cli.run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
