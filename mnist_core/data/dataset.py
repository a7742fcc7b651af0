"""A dataset in memory (:class:`MnistData`), its classes, and a held-out validation split.

Every source (:mod:`mnist_core.data.sources`) yields the same in-memory form: uint8 images
``[N, 28, 28]`` and uint8 labels ``[N]``. Keeping uint8 in memory (not float32) makes the
70k-image Fashion-MNIST 55 MB instead of 220 MB; conversion to float happens per batch in
the pipeline (:mod:`mnist_core.data.pipeline`), where it overlaps with training.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from mnist_core.errors import DataError

IMAGE_SIZE = 28
NUM_CLASSES = 10
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def class_names(dataset: str) -> tuple:
    """Display names of the 10 classes: the digits, or Fashion-MNIST's article names."""
    if dataset == "fashion_mnist":
        return FASHION_CLASSES
    return tuple(str(i) for i in range(NUM_CLASSES))


@dataclasses.dataclass(frozen=True)
class MnistData:
    """A train and a test split held in memory as uint8 (or float32 in [0, 1], from arrays).

    Attributes:
        train_images: ``[N, 28, 28]`` uint8.
        train_labels: ``[N]`` uint8 in 0..9.
        test_images: ``[M, 28, 28]`` uint8.
        test_labels: ``[M]`` uint8 in 0..9.
        name: Dataset name (``mnist``, ``fashion_mnist``, ``synthetic``).
        source: Human-readable description of where the data came from.
        val_images: Optional held-out ``[V, 28, 28]`` validation images.
        val_labels: Optional held-out ``[V]`` validation labels.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    name: str
    source: str
    val_images: Optional[np.ndarray] = None
    val_labels: Optional[np.ndarray] = None

    @property
    def num_train(self) -> int:
        return int(self.train_labels.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.test_labels.shape[0])

    def describe(self) -> str:
        val = f", {len(self.val_labels)} validation" if self.val_labels is not None else ""
        return f"{self.name} from {self.source} ({self.num_train} train{val}, {self.num_test} test)"


def check_labels(labels: np.ndarray, where: str) -> None:
    """Raises DataError naming ``where`` if a label is outside 0..9."""
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{where}: labels must be in 0..9, found {int(labels[i])} at index {i} "
            f"({bad.size} bad label(s))"
        )


def split_validation(data: MnistData, fraction: float, seed: int) -> MnistData:
    """Holds out ``fraction`` of the training set (a seeded random subset) for validation."""
    if fraction <= 0:
        return data
    n_val = int(round(data.num_train * fraction))
    if n_val < 1 or n_val >= data.num_train:
        raise DataError(
            f"--val-split {fraction} leaves {data.num_train - n_val} training and {n_val} "
            f"validation examples of {data.num_train}; both must be at least 1"
        )
    order = np.random.default_rng(seed).permutation(data.num_train)
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    return dataclasses.replace(
        data,
        train_images=data.train_images[train_idx],
        train_labels=data.train_labels[train_idx],
        val_images=data.train_images[val_idx],
        val_labels=data.train_labels[val_idx],
    )
