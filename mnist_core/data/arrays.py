"""Numpy arrays as a dataset (``data=`` of the Python API), checked as files are."""

from __future__ import annotations

import numpy as np

from mnist_core.data.dataset import IMAGE_SIZE, MnistData, check_labels
from mnist_core.errors import DataError


def _array_images(x, where: str) -> np.ndarray:
    """Images as the pipeline holds them: uint8 ``[N, 28, 28]``, or float32 fed as given.

    Floats are the tutorials' ``x / 255`` (in [0, 1]) or their unscaled ``astype('float')``
    (0-255): both are fed to the model as they are, as ``fit`` feeds them.
    """
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE, 1):
        x = x[..., 0]
    elif x.ndim == 2 and x.shape[1] == IMAGE_SIZE * IMAGE_SIZE:
        x = x.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    if x.ndim != 3 or x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{where} has shape {x.shape}, expected (N, 28, 28), (N, 28, 28, 1) or (N, 784)")
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


def _array_labels(y, where: str, n: int) -> np.ndarray:
    """Class indices (uint8) from indices ``(N,)``/``(N, 1)`` or one-hot rows ``(N, 10)``
    (``to_categorical``, as the tutorials pass them)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim == 2 and y.shape[1] == 10:
        if not (np.issubdtype(y.dtype, np.number) and np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1)):
            raise DataError(f"{where} has shape {y.shape} but its rows are not one-hot (one 1 and nine 0s each); "
                            "pass class indices 0..9 or to_categorical rows")
        y = y.argmax(axis=1)
    if y.ndim != 1:
        raise DataError(f"{where} has shape {y.shape}, expected (N,) labels 0..9 or (N, 10) one-hot rows")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise DataError(f"{where} has dtype {y.dtype}, expected integer labels 0..9")
    if len(y) != n:
        raise DataError(f"{where} has {len(y)} labels for {n} images")
    if y.size and y.min() < 0:
        raise DataError(f"{where}: labels must be in 0..9, found {int(y.min())}")
    check_labels(y, where)
    return y.astype(np.uint8)


def from_arrays(arrays, name: str = "mnist", where: str = "data=") -> MnistData:
    """Validated :class:`MnistData` from ``(x_train, y_train, x_test, y_test)`` (or an MnistData).

    Images are uint8 pixels or floats (in [0, 1], or 0-255 as some tutorials feed them),
    shaped ``[N, 28, 28]``, ``[N, 28, 28, 1]`` or ``[N, 784]``; labels integers 0..9 or
    one-hot rows. Checked as files are, each problem named.

    Args:
        where: How messages name the arrays (``data=``; another function's argument).

    Raises:
        DataError: naming the array and what is wrong.
    """
    if isinstance(arrays, MnistData):
        return arrays
    if not isinstance(arrays, (tuple, list)) or len(arrays) != 4:
        raise DataError(f"{where}: expected (x_train, y_train, x_test, y_test) arrays or an MnistData")
    x_train = _array_images(arrays[0], f"{where} x_train")
    x_test = _array_images(arrays[2], f"{where} x_test")
    y_train = _array_labels(arrays[1], f"{where} y_train", len(x_train))
    y_test = _array_labels(arrays[3], f"{where} y_test", len(x_test))
    if x_train.dtype != x_test.dtype:  # one uint8, one float: both as floats on the float one's scale
        floats = x_train if x_train.dtype == np.float32 else x_test
        scale = 1.0 if pixel_scale(floats) == "raw" else 1.0 / 255.0
        x_train, x_test = (x if x.dtype == np.float32 else x.astype(np.float32) * scale for x in (x_train, x_test))
    return MnistData(x_train, y_train, x_test, y_test, name=name, source="numpy arrays")
