"""A dataset in memory (:class:`MnistData`), its classes, and held-out splits.

Every source (:mod:`mnist_core.data.sources`) yields the same in-memory form: uint8 images
``[N, H, W]`` (one channel) or ``[N, H, W, C]``, integer labels ``[N]`` in
``0..num_classes-1``, and optionally a float32 weight per training example. MNIST and
Fashion-MNIST are ``[N, 28, 28]`` and 10 classes; any other shape and class count flows
through the same code. Keeping uint8 in memory (not float32) makes the 70k-image
Fashion-MNIST 55 MB instead of 220 MB; conversion to float happens per batch in the
pipeline (:mod:`mnist_core.data.pipeline`), where it overlaps with training.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

import numpy as np

from mnist_core.errors import DataError

IMAGE_SIZE = 28
NUM_CLASSES = 10
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# The datasets whose 10 classes are known by name, whatever labels a subset happens to hold.
TEN_CLASS_DATASETS = ("mnist", "fashion_mnist", "synthetic")


def class_names(dataset: str, num_classes: int = NUM_CLASSES) -> tuple:
    """Display names of the classes: Fashion-MNIST's article names, else the class indices."""
    if dataset == "fashion_mnist" and num_classes == NUM_CLASSES:
        return FASHION_CLASSES
    return tuple(str(i) for i in range(num_classes))


def image_shape_of(images: np.ndarray) -> Tuple[int, int, int]:
    """``(H, W, C)`` of a stack ``[N, H, W]`` (one channel) or ``[N, H, W, C]``."""
    shape = tuple(int(d) for d in images.shape[1:])
    return (*shape, 1) if len(shape) == 2 else shape


@dataclasses.dataclass(frozen=True)
class MnistData:
    """A train and a test split held in memory as uint8 (or float32 pixels, from arrays).

    Attributes:
        train_images: ``[N, H, W]`` or ``[N, H, W, C]`` uint8 (``[N, 28, 28]`` for MNIST).
        train_labels: ``[N]`` integer class indices.
        test_images: ``[M, ...]`` like ``train_images``; ``None`` where the source has no
            labelled test split (:func:`hold_out_test` makes one).
        test_labels: ``[M]`` or ``None``.
        name: Dataset name (``mnist``, ``fashion_mnist``, ``synthetic``, a TFDS name...).
        source: Human-readable description of where the data came from.
        val_images: Optional held-out validation images.
        val_labels: Optional held-out validation labels.
        classes: The classes' display names, one per class (their number is the model's
            output width). Default: MNIST's and Fashion-MNIST's 10, else the indices
            ``0..max(label)``.
        train_weights: Optional float32 ``[N]`` weight per training example (sample
            weights, class weights), as ``fit``'s ``sample_weight``.
        train_stream: A ``tf.data.Dataset`` of ``(image, class index)`` examples to train
            from, for data too large for memory (:mod:`mnist_core.data.tfdata`):
            ``train_images`` then holds only its first images, ``train_labels`` all its
            labels, in its order.
        test_stream: The same for the test split.
        labelled: False for images without labels (``data=x``, as ``fit(x)`` takes them for a
            model that trains itself: a GAN, a VAE); ``train_labels`` then holds zeros.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: Optional[np.ndarray]
    test_labels: Optional[np.ndarray]
    name: str
    source: str
    val_images: Optional[np.ndarray] = None
    val_labels: Optional[np.ndarray] = None
    classes: Tuple[str, ...] = ()
    train_weights: Optional[np.ndarray] = None
    train_stream: Any = None
    test_stream: Any = None
    labelled: bool = True

    def __post_init__(self):
        if not self.classes:
            if self.name in TEN_CLASS_DATASETS:
                count = NUM_CLASSES
            else:
                count = max((int(labels.max()) + 1 for labels in (self.train_labels, self.test_labels,
                                                                   self.val_labels)
                             if labels is not None and len(labels)), default=NUM_CLASSES)
            object.__setattr__(self, "classes", class_names(self.name, max(count, 2)))
        else:
            object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    @property
    def num_train(self) -> int:
        return int(self.train_labels.shape[0])

    @property
    def num_test(self) -> int:
        return 0 if self.test_labels is None else int(self.test_labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        """One image as ``(H, W, C)``: ``(28, 28, 1)`` for MNIST."""
        return image_shape_of(self.train_images)

    @property
    def stored_shape(self) -> Tuple[int, ...]:
        """One image as the arrays hold it: ``(28, 28)`` for one channel, else ``(H, W, C)``."""
        return tuple(int(d) for d in self.train_images.shape[1:])

    def describe(self) -> str:
        val = f", {len(self.val_labels)} validation" if self.val_labels is not None else ""
        h, w, c = self.image_shape
        shape = "" if (h, w, c) == (IMAGE_SIZE, IMAGE_SIZE, 1) and self.num_classes == NUM_CLASSES else \
            f"; {h}x{w}x{c} images, {self.num_classes} classes"
        weighted = "; weighted examples" if self.train_weights is not None else ""
        if not self.labelled:
            return f"{self.name} from {self.source} ({self.num_train} train images without labels, {h}x{w}x{c})"
        return f"{self.name} from {self.source} ({self.num_train} train{val}, {self.num_test} test{shape}{weighted})"


def check_labels(labels: np.ndarray, where: str, num_classes: Optional[int] = NUM_CLASSES) -> None:
    """Raises DataError naming ``where`` if a label is negative or not below ``num_classes``."""
    labels = np.asarray(labels)
    if labels.size and np.issubdtype(labels.dtype, np.signedinteger) and labels.min() < 0:
        raise DataError(f"{where}: labels must be class indices 0 or more, found {int(labels.min())}")
    if num_classes is None:
        return
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{where}: labels must be in 0..{num_classes - 1}, found {int(labels[i])} at index {i} "
            f"({bad.size} bad label(s))"
        )


def _split(data: MnistData, fraction: float, seed: int, what: str, flag: str):
    if data.train_stream is not None:
        raise DataError(f"{flag} {fraction}: the training dataset is streamed (too large for memory), and mnist_core "
                        f"holds no {what} examples out of a stream; pass a test dataset too, data=(train, test)")
    n_held = int(round(data.num_train * fraction))
    if n_held < 1 or n_held >= data.num_train:
        raise DataError(
            f"{flag} {fraction} leaves {data.num_train - n_held} training and {n_held} "
            f"{what} examples of {data.num_train}; both must be at least 1"
        )
    order = np.random.default_rng(seed).permutation(data.num_train)
    return np.sort(order[:n_held]), np.sort(order[n_held:])


def _train_part(data: MnistData, train_idx: np.ndarray) -> dict:
    return dict(train_images=data.train_images[train_idx], train_labels=data.train_labels[train_idx],
                train_weights=None if data.train_weights is None else data.train_weights[train_idx])


def split_validation(data: MnistData, fraction: float, seed: int, flag: str = "--val-split") -> MnistData:
    """Holds out ``fraction`` of the training set (a seeded random subset) for validation."""
    if fraction <= 0:
        return data
    val_idx, train_idx = _split(data, fraction, seed, "validation", flag)
    return dataclasses.replace(data, **_train_part(data, train_idx),
                               val_images=data.train_images[val_idx], val_labels=data.train_labels[val_idx])


def hold_out_test(data: MnistData, fraction: float, seed: int, flag: str = "--val-split") -> MnistData:
    """A dataset without a labelled test split: ``fraction`` of the training set (a seeded
    random subset) becomes the test set, evaluated after every epoch.

    Raises:
        DataError: ``fraction`` is 0 (there is nothing to evaluate on), naming ``flag``.
    """
    if data.test_labels is not None:
        return data
    if data.train_stream is not None:
        _split(data, fraction or 1.0, seed, "test", flag)  # refused: nothing is held out of a stream
    if fraction <= 0:
        raise DataError(f"{data.name} from {data.source} has no labelled test split; hold out part of the training "
                        f"set with {flag} (0.1 holds out a tenth), or supply a test split")
    test_idx, train_idx = _split(data, fraction, seed, "test", flag)
    return dataclasses.replace(data, **_train_part(data, train_idx),
                               test_images=data.train_images[test_idx], test_labels=data.train_labels[test_idx],
                               source=f"{data.source}, {len(test_idx)} held out as the test split by {flag}")


def with_class_weight(data: MnistData, class_weight, flag: str = "--class-weight") -> MnistData:
    """Each training example weighted by its class, as ``fit``'s ``class_weight``.

    Args:
        class_weight: ``"balanced"`` (``n / (classes * count(class))``: every class weighs
            the same in total, as scikit-learn's ``balanced``), or ``{class: weight}``
            (classes not named weigh 1); ``None`` leaves ``data`` as it is.

    Raises:
        DataError: a class outside the data's, or sample weights already given (``fit``
            refuses both together too).
    """
    if class_weight is None:
        return data
    if data.train_weights is not None:
        raise DataError(f"{flag}: the training data carries sample weights already; give class weights or sample "
                        "weights, not both (as fit refuses them together)")
    labels = data.train_labels.astype(np.int64)
    if class_weight == "balanced":
        counts = np.bincount(labels, minlength=data.num_classes).astype(np.float64)
        table = np.where(counts > 0, len(labels) / (data.num_classes * np.maximum(counts, 1)), 0.0)
    else:
        unknown = sorted(k for k in class_weight if k >= data.num_classes)
        if unknown:
            raise DataError(f"{flag}: class {unknown[0]} is not one of the data's {data.num_classes} classes "
                            f"(0..{data.num_classes - 1})")
        table = np.ones(data.num_classes)
        for k, weight in class_weight.items():
            table[k] = weight
    weights = table[labels].astype(np.float32)
    if not weights.any():
        raise DataError(f"{flag}: every training example weighs 0")
    return dataclasses.replace(data, train_weights=weights)
