"""Images as rows of a CSV file: Kaggle's "Digit Recognizer" layout and its kin.

``--data-dir`` names a ``.csv`` file or a directory holding ``train.csv`` (and, if it has
labels, ``test.csv``): a header line, then one image a row — a label column (``label``,
``class``, ``target`` or ``y``; else the first column) and the pixels, ``H*W`` of them
for grey square images (784 for MNIST's 28x28) or ``3*H*W`` for RGB ones, row by row
(``pixel0``, ``pixel1``, ...). Kaggle's ``test.csv`` has no labels: it is not a test
split, and a run holds part of ``train.csv`` out with ``--val-split``.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from mnist_core.errors import DataError

LABEL_COLUMNS = ("label", "class", "target", "y")
TRAIN_FILE, TEST_FILE = "train.csv", "test.csv"


def _shape(pixels: int, path: Path) -> Tuple[int, ...]:
    """The image of a row of ``pixels`` values: grey ``(s, s)`` or RGB ``(s, s, 3)``."""
    side = math.isqrt(pixels)
    if side * side == pixels:
        return (side, side)
    side = math.isqrt(pixels // 3)
    if pixels % 3 == 0 and side * side * 3 == pixels:
        return (side, side, 3)
    raise DataError(f"{path}: rows have {pixels} pixel values, which is neither a square grey image (784 for 28x28) "
                    "nor a square RGB one (3x32x32 = 3072)")


def read_csv(path: os.PathLike | str, *, labelled: Optional[bool] = None):
    """``(images, labels)`` of a CSV file; ``labels`` is ``None`` for a file without a
    label column (Kaggle's ``test.csv``), which ``labelled=None`` tells from the header.

    Raises:
        DataError: naming the file, and the line where a row is wrong.
    """
    path = Path(path)
    try:
        with open(path, newline="") as f:
            header = next(csv.reader([f.readline()]), [])
            body = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file") from None
    names = [h.strip().lower() for h in header]
    if not names or all(not n for n in names):
        raise DataError(f"{path}: empty, expected a header line and one image a row")
    if all(_number(n) for n in names):
        raise DataError(f"{path}: its first line is numbers; expected a header line (label,pixel0,pixel1,...)")
    label_column = next((names.index(c) for c in LABEL_COLUMNS if c in names), None)
    if labelled is None:  # Kaggle's test.csv: the pixels alone
        labelled = label_column is not None or (_image_size(len(names) - 1) and not _image_size(len(names)))
    if labelled and label_column is None:
        label_column = 0
    values = _numbers(body, len(names), path)
    labels = None
    if labelled:
        labels = values[:, label_column]
        values = np.delete(values, label_column, axis=1)
        if not np.all(labels == np.round(labels)) or labels.min() < 0:
            raise DataError(f"{path}: the label column '{header[label_column].strip()}' must hold class indices "
                            "0, 1, 2...")
        labels = labels.astype(np.int64)
    if values.min() < 0 or values.max() > 255:
        raise DataError(f"{path}: pixel values must be in 0..255 (or 0..1), found {values.min():g}..{values.max():g}")
    shape = _shape(values.shape[1], path)
    images = values.reshape(-1, *shape)
    if float(images.max()) <= 1.0 and not np.all(images == np.round(images)):
        images = np.round(images * 255.0)  # pixels written as floats in [0, 1]
    return images.astype(np.uint8), labels


def _numbers(body: str, columns: int, path: Path) -> np.ndarray:
    """The rows as a ``[rows, columns]`` float array: parsed in one pass (42,000 Kaggle rows
    in about a second), and row by row only to name a bad row."""
    import warnings

    lines = [line for line in body.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{path}: has a header but no rows")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            flat = np.fromstring(",".join(lines), sep=",")
        except ValueError:  # a cell that is not a number: found below, row by row
            flat = np.zeros(0)
    if flat.size == len(lines) * columns:
        return flat.reshape(len(lines), columns)
    for number, line in enumerate(lines, start=2):
        cells = line.split(",")
        if len(cells) != columns:
            raise DataError(f"{path}: line {number} has {len(cells)} values, the header names {columns} columns")
        if not all(_number(c) for c in cells):
            raise DataError(f"{path}: line {number} is not all numbers")
    raise DataError(f"{path}: not a CSV of numbers")


def _image_size(values: int) -> bool:
    """Whether a row of ``values`` pixels is a square grey or RGB image."""
    return values > 1 and (math.isqrt(values) ** 2 == values or
                           (values % 3 == 0 and math.isqrt(values // 3) ** 2 == values // 3))


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def has_csv(directory: Path) -> bool:
    """True if ``directory`` holds ``train.csv``."""
    return (directory / TRAIN_FILE).is_file()


def load_csv(path: os.PathLike | str, name: str):
    """``MnistData`` from a CSV file (training only) or a directory with ``train.csv`` and an
    optional labelled ``test.csv``."""
    from mnist_core.data.arrays import assemble

    path = Path(path)
    train_path = path / TRAIN_FILE if path.is_dir() else path
    x, y = read_csv(train_path, labelled=True)
    x_test = y_test = None
    source = f"CSV {train_path}"
    test_path = path / TEST_FILE if path.is_dir() else None
    if test_path is not None and test_path.is_file():
        x_test, y_test = read_csv(test_path)
        if y_test is None:  # Kaggle's test.csv: images to predict, not a test split
            x_test = None
            source += f" ({TEST_FILE} has no labels: not used)"
        elif x_test.shape[1:] != x.shape[1:]:
            raise DataError(f"{test_path}: images are {x_test.shape[1:]}, {train_path.name}'s {x.shape[1:]}")
        else:
            source = f"CSV {train_path} and {TEST_FILE}"
    return assemble(x, y, x_test, y_test, name=name, source=source, where=str(train_path))
