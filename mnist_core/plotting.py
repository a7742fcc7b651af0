"""Plots of a run as PNG files: learning curves and a grid of sample predictions.

Plotting uses matplotlib, an optional extra (``pip install -e ".[plot]"``); without it
:class:`MissingDependency` says so in one line.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Dict, List

import numpy as np

from mnist_core.errors import MnistCoreError


class MissingDependency(MnistCoreError):
    """An optional dependency is not installed."""


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MissingDependency('matplotlib is not installed; plotting is an optional extra: '
                                'pip install -e ".[plot]" (or pip install matplotlib)') from None
    matplotlib.use("Agg")  # files only: no display needed, works over ssh and in CI
    import matplotlib.pyplot as plt

    return plt


def curve_metrics(history: List[Dict], most: int = 4) -> List[str]:
    """The metrics a run's history has, one panel each: losses first, then the rest (a
    classifier's ``loss`` and ``accuracy``; a GAN's ``d_loss`` and ``g_loss``...)."""
    names = set()
    for entry in history:
        for key in entry:
            split, _, metric = key.partition("_")
            if split in ("train", "val", "test") and metric and metric not in ("examples", "seconds"):
                names.add(metric)
    ordered = sorted(names, key=lambda name: (0 if name == "loss" else 1 if "loss" in name else 2, name))
    return ordered[:most] or ["loss"]


def plot_curves(history: List[Dict], path: Path, title: str = "") -> Path:
    """Each metric per epoch (loss and accuracy for a classifier) for every split in
    ``history`` (train, test, val)."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [e["epoch"] for e in history]
    metrics = curve_metrics(history)
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), constrained_layout=True, squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for split, style in (("train", "-o"), ("val", "-s"), ("test", "-^")):
            key = f"{split}_{metric}"
            # With --eval-every N only every Nth epoch has test_*: plot the epochs that do.
            points = [(e["epoch"], e[key]) for e in history if isinstance(e.get(key), (int, float))]
            if points:
                ax.plot(*zip(*points), style, label=split, markersize=4)
        ax.set_xlabel("epoch")
        if len(epochs) <= 10:  # whole epochs only, even for a single one (no 0.95 ... 1.05)
            ax.set_xticks(epochs)
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(textwrap.shorten(title, width=90, placeholder="..."))
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
    plt = pyplot()
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
