"""``python -m mnist_core.plot RUN_DIR``: learning curves and sample predictions as PNGs.

Writes into the run directory (or ``--out DIR``):

* ``curves.png``: train/test (and validation) loss and accuracy per epoch, from
  ``history.json``;
* ``samples.png``: a grid of test images with the predicted class and, where it is
  wrong, the true one, in red: the first test images, then misclassified ones.

Only the command line lives here; the plots are :mod:`mnist_core.plotting`'s. Plotting
needs matplotlib, an optional extra: ``pip install -e ".[plot]"``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np

from mnist_core import cli
from mnist_core.errors import ConfigError
from mnist_core.plotting import plot_curves, plot_samples, pyplot, sample_indices

PROG = "mnist-plot"


def build_parser():
    p = cli.ArgumentParser(prog=PROG, description="Plot a run's learning curves and sample predictions.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by mnist_core.train")
    p.add_argument("--out", metavar="DIR", help="where to write the PNGs (default: RUN_DIR)")
    p.add_argument("--data-dir", dest="data_dir", metavar="DIR", help="test data location (default: the run's)")
    p.add_argument("--samples", type=cli.positive_int, default=48, metavar="N",
                   help="test images in samples.png (default 48)")
    p.add_argument("--no-samples", dest="no_samples", action="store_true",
                   help="write only curves.png (needs no model or data)")
    return p


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (is {path.parent} a run directory of mnist_core.train?)") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable ({e})") from None


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m mnist_core.plot``."""
    cli.quiet_tensorflow_logs()
    args = build_parser().parse_args(argv)

    def body():
        pyplot()  # fail on a missing matplotlib before anything slow
        cli.import_tensorflow()
        run = Path(args.run_dir)
        if not run.is_dir():
            raise ConfigError(f"RUN_DIR {run}: not a directory")
        history = _read_json(run / "history.json")
        if not isinstance(history, list) or not history:
            raise ConfigError(f"{run / 'history.json'}: no epochs recorded yet")
        summary = _read_json(run / "summary.json") if (run / "summary.json").exists() else {}
        config = summary.get("config", {})
        model_name = str(config.get("model", "?")).rsplit(":", 1)[-1]  # a module path would overflow the title
        title = f"{model_name} on {config.get('dataset', '?')}" if config else run.name
        samples = None
        if not args.no_samples and summary.get("classifier") is False:
            print(f"{run}: the model is not a classifier: no samples.png (its curves only)")
        elif not args.no_samples:
            from mnist_core import inference

            model_path = run / "model.keras"
            if not model_path.exists() and inference.is_savedmodel(run / inference.SAVEDMODEL_DIR):
                model_path = run / inference.SAVEDMODEL_DIR
            if not model_path.exists():
                raise ConfigError(f"{model_path}: no such file (the run has not finished; "
                                  "use --no-samples for curves only)")
            classifier = inference.load_classifier(model_path)
            data = inference.load_run_data(classifier.info, summary, data_dir=args.data_dir)
            predicted = classifier.logits(data.test_images).argmax(axis=1)
            labels = data.test_labels.astype(np.int64)
            picked = sample_indices(predicted, labels, args.samples)
            errors = int((predicted != labels).sum())
            samples = (data.test_images[picked], labels[picked], predicted[picked], classifier.info.class_names,
                       f"{title}: {errors} of {len(labels)} test images misclassified; red: wrong (true class below)")
        # Everything that can fail has been read: only now is anything written.
        out = Path(args.out) if args.out else run
        out.mkdir(parents=True, exist_ok=True)
        print(plot_curves(history, out / "curves.png", title))
        if samples is not None:
            images, true, guessed, names, caption = samples
            print(plot_samples(images, true, guessed, names, out / "samples.png", caption))
        return 0

    return cli.run_main(PROG, body, argv)


if __name__ == "__main__":
    sys.exit(main())
