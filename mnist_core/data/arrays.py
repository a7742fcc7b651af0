"""Numpy arrays as a dataset (``data=`` of the Python API), checked as files are."""

from __future__ import annotations

import numpy as np

from mnist_core.data.dataset import IMAGE_SIZE, MnistData, check_labels
from mnist_core.errors import DataError


def _array_images(x, where: str) -> np.ndarray:
    """Images as the pipeline holds them: uint8 ``[N, 28, 28]``, or float32 in [0, 1]."""
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
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise DataError(f"{where} contains NaN or infinite values")
        low, high = float(x.min()), float(x.max())
        if low < 0.0 or high > 1.0:
            raise DataError(f"{where} has float values in [{low:g}, {high:g}], expected [0, 1] "
                            "(pass uint8 pixels, or pixels / 255)")
        return x.astype(np.float32)
    raise DataError(f"{where} has dtype {x.dtype}, expected uint8 pixels or floats in [0, 1]")


def _array_labels(y, where: str, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where} has shape {y.shape}, expected (N,) integer labels 0..9 (not one-hot)")
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


def from_arrays(arrays, name: str = "mnist") -> MnistData:
    """Validated :class:`MnistData` from ``(x_train, y_train, x_test, y_test)`` (or an MnistData).

    Images are uint8 pixels or floats in [0, 1], shaped ``[N, 28, 28]``, ``[N, 28, 28, 1]``
    or ``[N, 784]``; labels integers 0..9. Checked as files are, each problem named.

    Raises:
        DataError: naming the array and what is wrong.
    """
    if isinstance(arrays, MnistData):
        return arrays
    if not isinstance(arrays, (tuple, list)) or len(arrays) != 4:
        raise DataError("data=: expected (x_train, y_train, x_test, y_test) arrays or an MnistData")
    x_train = _array_images(arrays[0], "data= x_train")
    x_test = _array_images(arrays[2], "data= x_test")
    y_train = _array_labels(arrays[1], "data= y_train", len(x_train))
    y_test = _array_labels(arrays[3], "data= y_test", len(x_test))
    if x_train.dtype != x_test.dtype:  # one uint8, one float: both as floats in [0, 1]
        x_train, x_test = (x if x.dtype == np.float32 else x.astype(np.float32) / 255.0 for x in (x_train, x_test))
    return MnistData(x_train, y_train, x_test, y_test, name=name, source="numpy arrays")
