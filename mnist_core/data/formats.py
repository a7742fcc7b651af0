"""Reading the files MNIST-style datasets come in: IDX (gzip or raw) and Keras' ``mnist.npz``.

Every file is checked as it is read (magic number, 28x28 dimensions, byte length,
image/label counts, labels 0..9) and a bad one is reported by name and problem.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from mnist_core.data.dataset import IMAGE_SIZE, MnistData, check_labels
from mnist_core.errors import DataError

IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension

# Both spellings occur in the wild: the original distribution's and the one some mirrors use.
IDX_FILES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _read_bytes(path: Path) -> bytes:
    """Reads a file, transparently un-gzipping it (detected by content, not by name)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected an IDX file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None
    return raw


def read_idx(path: os.PathLike | str, kind: str) -> np.ndarray:
    """Reads and validates one IDX file of the MNIST distribution.

    Args:
        path: The file, gzip-compressed or raw.
        kind: ``"images"`` (expects ``[N, 28, 28]``) or ``"labels"`` (expects ``[N]`` in 0..9).

    Returns:
        A uint8 array.

    Raises:
        DataError: naming the file and what is wrong with it.
    """
    path = Path(path)
    data = _read_bytes(path)
    expected_magic = IMAGES_MAGIC if kind == "images" else LABELS_MAGIC
    header = 16 if kind == "images" else 8
    if len(data) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expected_magic:
        raise DataError(
            f"{path}: wrong IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(an IDX {kind} file)"
        )
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header ({len(data)} of {header} bytes)")
    if kind == "images":
        count, rows, cols = struct.unpack(">III", data[4:16])
        if (rows, cols) != (IMAGE_SIZE, IMAGE_SIZE):
            raise DataError(f"{path}: images are {rows}x{cols}, expected 28x28")
        shape = (count, rows, cols)
    else:
        (count,) = struct.unpack(">I", data[4:8])
        shape = (count,)
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DataError(
            f"{path}: header declares {count} {kind} ({expected} bytes) "
            f"but the file has {len(data)} bytes"
        )
    if count == 0:
        raise DataError(f"{path}: contains no {kind}")
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
    if kind == "labels":
        check_labels(array, str(path))
    return array


def _find_idx(directory: Path, key: str) -> Optional[Path]:
    for stem in IDX_FILES[key]:
        for name in (stem + ".gz", stem):
            candidate = directory / name
            if candidate.exists():
                return candidate
    return None


def has_idx_files(directory: Path) -> bool:
    """True if ``directory`` holds at least one of the four IDX files."""
    return any(_find_idx(directory, key) for key in IDX_FILES)


def load_idx_dir(directory: os.PathLike | str, name: str = "mnist") -> MnistData:
    """Loads the four IDX files of ``directory`` (names as in the MNIST distribution)."""
    directory = Path(directory)
    paths = {}
    for key, stems in IDX_FILES.items():
        found = _find_idx(directory, key)
        if found is None:
            raise DataError(f"{directory}: missing {stems[0]}.gz (or {stems[0]})")
        paths[key] = found
    arrays = {key: read_idx(p, "images" if key.endswith("images") else "labels") for key, p in paths.items()}
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise DataError(
                f"{paths[f'{split}_images']} has {n_img} images but "
                f"{paths[f'{split}_labels']} has {n_lab} labels"
            )
    return MnistData(**arrays, name=name, source=f"IDX files in {directory}")


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: os.PathLike | str, name: str = "mnist") -> MnistData:
    """Loads a Keras-style ``mnist.npz`` (keys x_train, y_train, x_test, y_test)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: missing key(s) {', '.join(missing)} "
                    f"(expected {', '.join(NPZ_KEYS)})"
                )
            arrays = {k: npz[k] for k in NPZ_KEYS}
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError: all mean "not an npz"
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise DataError(f"{path}: x_{split} has shape {x.shape}, expected (N, 28, 28)")
        if y.ndim != 1:
            raise DataError(f"{path}: y_{split} has shape {y.shape}, expected (N,)")
        if len(x) != len(y):
            raise DataError(f"{path}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels")
        if len(x) == 0:
            raise DataError(f"{path}: x_{split} contains no images")
        if x.dtype != np.uint8:
            raise DataError(f"{path}: x_{split} has dtype {x.dtype}, expected uint8")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise DataError(f"{path}: y_{split} must be integer labels in 0..9")
        check_labels(y, f"{path} y_{split}")
        arrays[f"y_{split}"] = y.astype(np.uint8)
    return MnistData(
        train_images=arrays["x_train"],
        train_labels=arrays["y_train"],
        test_images=arrays["x_test"],
        test_labels=arrays["y_test"],
        name=name,
        source=f"Keras npz {path}",
    )
