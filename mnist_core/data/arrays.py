"""Data as the user holds it (``data=`` of the Python API), checked as files are.

Accepted forms (the ones ``fit`` and ``keras.datasets.*.load_data()`` use):

* ``(x_train, y_train, x_test, y_test)``; ``x_test``/``y_test`` may be ``None``;
* ``((x_train, y_train), (x_test, y_test))``, as ``load_data()`` returns it;
* ``(x, y)`` or ``(x, y, sample_weight)``: a training set without a test split;
* ``((x, y, sample_weight), (x_test, y_test))``;
* a ``tf.data.Dataset`` of ``(image, label)`` or ``(image, label, sample_weight)``,
  batched or not, alone or as ``(train_dataset, test_dataset)``
  (:mod:`mnist_core.data.tfdata`);
* images alone (an array ``x``, or a ``tf.data.Dataset`` of images), as ``fit(x)`` takes
  them for a model whose ``train_step`` needs no labels (Keras' GAN and VAE);
* an :class:`MnistData`.

Images are uint8 pixels or floats (in [0, 1], or 0-255 as some tutorials feed them),
shaped ``[N, H, W]``, ``[N, H, W, C]`` or flat ``[N, H*W]`` with square images (``[N, 784]``
is 28x28); labels are class indices or one-hot rows, any number of classes.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np

from mnist_core.data.dataset import TEN_CLASS_DATASETS, MnistData, NUM_CLASSES, check_labels, class_names
from mnist_core.errors import DataError

CHANNELS = (1, 2, 3, 4)  # grey, grey + alpha, RGB, RGBA


def _array_images(x, where: str) -> np.ndarray:
    """Images as the pipeline holds them: uint8 ``[N, H, W]`` (one channel) or ``[N, H, W, C]``,
    or float32 fed as given.

    Floats are the tutorials' ``x / 255`` (in [0, 1]) or their unscaled ``astype('float')``
    (0-255): both are fed to the model as they are, as ``fit`` feeds them.
    """
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    elif x.ndim == 2 and x.shape[1] > 1 and math.isqrt(x.shape[1]) ** 2 == x.shape[1]:
        side = math.isqrt(x.shape[1])
        x = x.reshape(-1, side, side)
    if not (x.ndim == 3 or (x.ndim == 4 and x.shape[-1] in CHANNELS)) or min(x.shape[1:3], default=0) < 1:
        raise DataError(f"{where} has shape {x.shape}, expected images (N, H, W), (N, H, W, C) with C of 1-4, "
                        "or (N, H*W) flat square ones such as (N, 784)")
    if len(x) == 0:
        raise DataError(f"{where} contains no images")
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer):
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            raise DataError(f"{where} contains NaN or infinite values")
        low, high = float(x.min()), float(x.max())
        if low < 0.0 or high > 255.0:
            raise DataError(f"{where} has values in [{low:g}, {high:g}], expected pixels: uint8, floats in [0, 1] "
                            "(pixels / 255) or floats in [0, 255]")
        if np.issubdtype(x.dtype, np.integer):
            return x.astype(np.uint8)
        return x.astype(np.float32)
    raise DataError(f"{where} has dtype {x.dtype}, expected uint8 pixels or floats")


def pixel_scale(images: np.ndarray) -> str:
    """``unit`` for float images in [0, 1], ``raw`` for floats over 1 (0-255 values)."""
    return "raw" if images.dtype == np.float32 and float(images.max(initial=0.0)) > 1.0 else "unit"


def label_dtype(num_classes: int):
    """The smallest dtype that holds the class indices (uint8 for up to 256 classes)."""
    return np.uint8 if num_classes <= 256 else np.int32


def _array_labels(y, where: str, n: int) -> Tuple[np.ndarray, Optional[int]]:
    """Class indices from indices ``(N,)``/``(N, 1)`` or one-hot rows ``(N, K)`` (``to_categorical``,
    as the tutorials pass them); with the class count one-hot rows give (else ``None``)."""
    y = np.asarray(y)
    width = None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim == 2 and y.shape[1] > 1:
        if not (np.issubdtype(y.dtype, np.number) and np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1)):
            raise DataError(f"{where} has shape {y.shape} but its rows are not one-hot (one 1 and the rest 0 each); "
                            "pass class indices or to_categorical rows")
        width = int(y.shape[1])
        y = y.argmax(axis=1)
    if y.ndim != 1:
        raise DataError(f"{where} has shape {y.shape}, expected (N,) class indices or (N, classes) one-hot rows")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise DataError(f"{where} has dtype {y.dtype}, expected integer class indices")
    if len(y) != n:
        raise DataError(f"{where} has {len(y)} labels for {n} images")
    check_labels(y, where, None)
    return y.astype(np.int64), width


def _array_weights(w, where: str, n: int) -> np.ndarray:
    """Per-example weights: float32 ``[N]``, finite and not negative, not all zero."""
    w = np.asarray(w)
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.ndim != 1 or len(w) != n:
        raise DataError(f"{where} has shape {w.shape}, expected one weight per example ({n},)")
    if not (np.issubdtype(w.dtype, np.floating) or np.issubdtype(w.dtype, np.integer)):
        raise DataError(f"{where} has dtype {w.dtype}, expected numbers")
    w = w.astype(np.float32)
    if not np.isfinite(w).all() or (w < 0).any():
        raise DataError(f"{where} holds negative, NaN or infinite weights")
    if not w.any():
        raise DataError(f"{where} is all zeros: no example would count")
    return w


def _parts(arrays, where: str):
    """The forms above as ``(train, test)``, each ``(x, y[, w])`` or ``None``."""
    if not isinstance(arrays, (tuple, list)):
        raise DataError(f"{where}: expected (x_train, y_train, x_test, y_test), ((x_train, y_train), "
                        f"(x_test, y_test)), (x, y), a tf.data.Dataset or an MnistData; got {type(arrays).__name__}")
    items = list(arrays)
    if len(items) == 2 and all(isinstance(p, (tuple, list)) or p is None for p in items):
        return items[0], items[1]  # ((x, y), (x, y)): load_data()'s form
    if len(items) == 4 and not isinstance(items[0], (tuple, list)):
        train, test = (items[0], items[1]), (items[2], items[3])
        if items[2] is None and items[3] is None:
            test = None
        elif items[2] is None or items[3] is None:
            raise DataError(f"{where}: x_test and y_test must both be given or both be None")
        return train, test
    if len(items) in (2, 3) and not isinstance(items[0], (tuple, list)):
        return tuple(items), None
    raise DataError(f"{where}: expected (x_train, y_train, x_test, y_test), ((x_train, y_train), (x_test, y_test)), "
                    f"(x, y) or (x, y, sample_weight); got a sequence of {len(items)}")


def num_classes_for(name: str, labels, widths) -> int:
    """The class count: one-hot rows' width, else the highest label + 1 (10 at least for
    MNIST and Fashion-MNIST, whose classes are known)."""
    widths = [w for w in widths if w]
    if widths:
        if len(set(widths)) > 1:
            raise DataError(f"data=: the one-hot labels have different widths {sorted(set(widths))}")
        return widths[0]
    highest = max(int(y.max()) for y in labels if len(y))
    return max(highest + 1, NUM_CLASSES if name in TEN_CLASS_DATASETS else 2)


def from_arrays(arrays, name: str = "mnist", where: str = "data=") -> MnistData:
    """Validated :class:`MnistData` from the forms in this module's docstring.

    Args:
        arrays: The data (module docstring).
        name: The dataset's name (display, class names).
        where: How messages name the arrays (``data=``; another function's argument).

    Raises:
        DataError: naming the array and what is wrong.
    """
    if isinstance(arrays, MnistData):
        return arrays
    from mnist_core.data.tfdata import is_dataset

    source, streams, stream_classes = "numpy arrays", (None, None), ()
    if isinstance(arrays, np.ndarray) or _images_only_dataset(arrays):
        return _unlabelled(arrays, name, where)
    if is_dataset(arrays) or (isinstance(arrays, (tuple, list)) and len(arrays) == 2
                              and any(is_dataset(p) for p in arrays)):
        arrays, streams, stream_classes = _read_datasets(arrays, where)
        source = "a tf.data.Dataset" + (", streamed (too large for memory)" if any(streams) else "")
    train, test = _parts(arrays, where)
    if train is None or len(train) not in (2, 3):
        raise DataError(f"{where}: the training part must be (x, y) or (x, y, sample_weight)")
    if test is not None and len(test) != 2:
        raise DataError(f"{where}: the test part must be (x_test, y_test); sample weights are for training")
    x_train = _array_images(train[0], f"{where} x_train")
    # A streamed part holds a sample of its images and all its labels.
    n_train = len(train[1]) if streams[0] is not None else len(x_train)
    y_train, width_train = _array_labels(train[1], f"{where} y_train", n_train)
    weights = _array_weights(train[2], f"{where} sample_weight", n_train) \
        if len(train) == 3 and train[2] is not None else None
    x_test = y_test = width_test = None
    if test is not None:
        x_test = _array_images(test[0], f"{where} x_test")
        n_test = len(test[1]) if streams[1] is not None else len(x_test)
        y_test, width_test = _array_labels(test[1], f"{where} y_test", n_test)
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DataError(f"{where}: x_test images are {x_test.shape[1:]}, x_train's {x_train.shape[1:]}")
    data = assemble(x_train, y_train, x_test, y_test, name=name, source=source, weights=weights,
                    widths=(width_train, width_test, *stream_classes), where=where)
    if any(streams):
        import dataclasses

        data = dataclasses.replace(data, train_stream=streams[0], test_stream=streams[1])
    return data


def _images_only_dataset(value) -> bool:
    from mnist_core.data.tfdata import is_dataset

    if not is_dataset(value):
        return False
    import tensorflow as tf

    return isinstance(value.element_spec, tf.TensorSpec)


def _unlabelled(images, name: str, where: str) -> MnistData:
    """Images without labels: an array, or a dataset of images (read into memory)."""
    if not isinstance(images, np.ndarray):
        from mnist_core.data.tfdata import read_images

        images = read_images(images, f"{where} dataset")
    x = _array_images(images, f"{where} images")
    return MnistData(x, np.zeros(len(x), np.uint8), None, None, name=name, source=source_of(images),
                     classes=("0", "1"), labelled=False)


def source_of(images) -> str:
    return "numpy arrays" if isinstance(images, np.ndarray) else "a tf.data.Dataset"


def _read_datasets(value, where: str):
    """A training ``tf.data.Dataset``, or a ``(train, test)`` pair of them (``test`` may be
    ``None``), read (:mod:`mnist_core.data.tfdata`): ``((x, y[, w]), (x, y))`` arrays, and
    per part the stream (a dataset too large for memory) and the class count it gives."""
    from mnist_core.data.tfdata import is_dataset, read

    train, test = (value, None) if is_dataset(value) else value
    parts, streams, classes = [], [], []
    for dataset, part in ((train, "training"), (test, "test")):
        if dataset is None:
            parts.append(None)
            streams.append(None)
            continue
        if not is_dataset(dataset):
            raise DataError(f"{where}: the {part} part is a {type(dataset).__name__}; give both parts as "
                            "tf.data.Datasets, or both as arrays")
        got = read(dataset, f"{where} {part} dataset")
        if part == "test" and got.weights is not None:
            raise DataError(f"{where}: the test dataset has sample weights; mnist_core evaluates every test example "
                            "once, unweighted (weights are for training)")
        parts.append((got.images, got.labels) if got.weights is None else (got.images, got.labels, got.weights))
        streams.append(got.stream)
        classes.append(got.classes)
    return tuple(parts), tuple(streams), tuple(classes)


def assemble(x_train, y_train, x_test, y_test, *, name: str, source: str, weights=None, widths=(),
             classes=None, where: str = "data=") -> MnistData:
    """:class:`MnistData` from checked arrays: the class count settled, labels checked
    against it and stored compactly, uint8 and float images brought to one type."""
    labels = [y for y in (y_train, y_test) if y is not None]
    count = len(classes) if classes else num_classes_for(name, labels, widths)
    for y, part in ((y_train, "y_train"), (y_test, "y_test")):
        if y is not None:
            check_labels(y, f"{where} {part}", count)
    if x_test is not None and x_train.dtype != x_test.dtype:  # one uint8, one float: both floats on one scale
        floats = x_train if x_train.dtype == np.float32 else x_test
        scale = 1.0 if pixel_scale(floats) == "raw" else 1.0 / 255.0
        x_train, x_test = (x if x.dtype == np.float32 else x.astype(np.float32) * scale for x in (x_train, x_test))
    dtype = label_dtype(count)
    return MnistData(x_train, y_train.astype(dtype), x_test, None if y_test is None else y_test.astype(dtype),
                     name=name, source=source, classes=tuple(classes or class_names(name, count)),
                     train_weights=weights)
