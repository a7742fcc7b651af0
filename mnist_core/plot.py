"""``python -m mnist_core.plot RUN_DIR``: learning curves and sample predictions as PNGs.

Writes into the run directory (or ``--out DIR``):

* ``curves.png``: train/test (and validation) loss and accuracy per epoch, from
  ``history.json``;
* ``samples.png``: a grid of test images with the predicted class and, where it is
  wrong, the true one, in red: the first test images, then misclassified ones.

Plotting needs matplotlib, an optional extra: ``pip install -e ".[plot]"``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from mnist_core import cli
from mnist_core.errors import ConfigError, MnistCoreError

PROG = "mnist-plot"


class MissingDependency(MnistCoreError):
    """An optional dependency is not installed."""


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


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MissingDependency('matplotlib is not installed; plotting is an optional extra: '
                                'pip install -e ".[plot]" (or pip install matplotlib)') from None
    matplotlib.use("Agg")  # files only: no display needed, works over ssh and in CI
    import matplotlib.pyplot as plt

    return plt


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (is {path.parent} a run directory of mnist_core.train?)") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable ({e})") from None


def plot_curves(history: List[Dict], path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch for every split in ``history`` (train, test, val)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [e["epoch"] for e in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for split, style in (("train", "-o"), ("val", "-s"), ("test", "-^")):
            key = f"{split}_{metric}"
            if all(key in e for e in history):
                ax.plot(epochs, [e[key] for e in history], style, label=split, markersize=4)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def sample_indices(predicted: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """The first ``n // 2`` test images, then misclassified ones up to ``n`` in all.

    Half in order shows what the model typically does; the rest shows its mistakes
    (there are few among the first images of a good model).
    """
    half = min(max(n // 2, 1), len(labels))
    wrong = [int(i) for i in np.flatnonzero(predicted != labels) if i >= half]
    right = [int(i) for i in np.flatnonzero(predicted == labels) if i >= half]
    return np.array(list(range(half)) + (wrong + right)[: n - half], dtype=np.int64)


def plot_samples(images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, names, path: Path,
                 title: str = "") -> Path:
    """A grid of images titled with the predicted class (and the true one in red when wrong)."""
    plt = _pyplot()
    n = len(images)
    cols = min(12, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label, guess in zip(axes.flat, images, labels, predicted):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        if guess == label:
            ax.set_title(str(names[guess])[:9], fontsize=7, color="black")
        else:
            ax.set_title(f"{str(names[guess])[:9]}\n(true {str(names[label])[:9]})", fontsize=7, color="red")
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_color("red")
                spine.set_linewidth(2)
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title or "test images: predicted class; red: misclassified (true class below)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m mnist_core.plot``."""
    cli.quiet_tensorflow_logs()
    args = build_parser().parse_args(argv)

    def body():
        _pyplot()  # fail on a missing matplotlib before anything slow
        cli.import_tensorflow()
        run = Path(args.run_dir)
        if not run.is_dir():
            raise ConfigError(f"RUN_DIR {run}: not a directory")
        out = Path(args.out) if args.out else run
        out.mkdir(parents=True, exist_ok=True)
        history = _read_json(run / "history.json")
        if not isinstance(history, list) or not history:
            raise ConfigError(f"{run / 'history.json'}: no epochs recorded yet")
        summary = _read_json(run / "summary.json") if (run / "summary.json").exists() else {}
        config = summary.get("config", {})
        title = f"{config.get('model', '?')} on {summary.get('dataset', '?')}" if config else run.name
        print(plot_curves(history, out / "curves.png", title))
        if args.no_samples:
            return 0

        from mnist_core import data as data_lib
        from mnist_core import inference

        model_path = run / "model.keras"
        if not model_path.exists() and inference.is_savedmodel(run / inference.SAVEDMODEL_DIR):
            model_path = run / inference.SAVEDMODEL_DIR
        if not model_path.exists():
            raise ConfigError(f"{model_path}: no such file (the run has not finished; "
                              "use --no-samples for curves only)")
        data = inference.load_run_data(summary, data_dir=args.data_dir)
        classifier = inference.load_classifier(model_path)
        predicted = classifier.logits(data.test_images).argmax(axis=1)
        labels = data.test_labels.astype(np.int64)
        picked = sample_indices(predicted, labels, args.samples)
        errors = int((predicted != labels).sum())
        print(plot_samples(
            data.test_images[picked], labels[picked], predicted[picked], data_lib.class_names(data.name),
            out / "samples.png",
            f"{title}: {errors} of {len(labels)} test images misclassified; red: wrong (true class below)",
        ))
        return 0

    return cli.run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
