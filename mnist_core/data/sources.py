"""Where a dataset comes from: an explicit ``--data-dir``, or the documented resolution order.

Without ``--data-dir``: ``$MNIST_CORE_DATA_DIR``, an already-prepared TFDS copy,
``~/.keras/datasets/mnist.npz`` (MNIST only), ``/usr/share/datasets/fashion-mnist``
(Fashion-MNIST only, Debian's ``dataset-fashion-mnist``), an earlier download, then a
download (:mod:`mnist_core.data.download`).
``synthetic`` is random images, for throughput runs only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from mnist_core.data.dataset import IMAGE_SIZE, NUM_CLASSES, MnistData, check_labels
from mnist_core.data.formats import has_idx_files, load_idx_dir, load_npz
from mnist_core.errors import DataError

TFDS_NAMES = {"mnist": "mnist", "fashion_mnist": "fashion_mnist"}
KERAS_NPZ = Path("~/.keras/datasets/mnist.npz")
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_DATA_DIR = "MNIST_CORE_DATA_DIR"
# Set to 1 to never try a TFDS download (tests, air-gapped machines): the resolution then
# fails at once with the list of ways to supply data instead of waiting on the network.
ENV_NO_DOWNLOAD = "MNIST_CORE_NO_DOWNLOAD"


def _tfds_builder(name: str, data_dir: Optional[str]):
    import tensorflow_datasets as tfds  # imported lazily: only this source needs it

    return tfds.builder(TFDS_NAMES[name], data_dir=data_dir)


def tfds_prepared(name: str, data_dir: Optional[str] = None) -> bool:
    """True if an already-prepared TFDS copy of ``name`` exists (no network used).

    Quietly: TFDS logs a warning for every half-prepared folder it looks at, which says
    nothing to a user who never asked for TFDS (a broken copy is simply not used).
    """
    if name not in TFDS_NAMES:
        return False
    from absl import logging as absl_logging

    level = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        return bool(_tfds_builder(name, data_dir).is_prepared())
    except Exception:  # a broken TFDS directory is "not prepared", not a crash
        return False
    finally:
        absl_logging.set_verbosity(level)


def load_tfds(name: str, data_dir: Optional[str] = None, download: bool = False) -> MnistData:
    """Loads a TFDS dataset into memory as uint8 arrays.

    Args:
        name: ``mnist`` or ``fashion_mnist``.
        data_dir: TFDS data directory; ``None`` uses TFDS' default (``$TFDS_DATA_DIR``).
        download: Download and prepare it if it is not prepared yet.
    """
    import tensorflow_datasets as tfds

    builder = _tfds_builder(name, data_dir)
    if download:
        builder.download_and_prepare()
    arrays = {}
    for split, tfds_split in (("train", "train"), ("test", "test")):
        ds = builder.as_dataset(split=tfds_split, batch_size=-1, as_supervised=True)
        images, labels = tfds.as_numpy(ds)
        images = np.asarray(images, dtype=np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
        labels = np.asarray(labels)
        check_labels(labels, f"TFDS {name} {split}")
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels.astype(np.uint8)
    return MnistData(**arrays, name=name, source=f"TFDS {builder.data_dir}")


def synthetic(train_size: int = 60000, test_size: int = 10000, seed: int = 0) -> MnistData:
    """Random uint8 images with MNIST shapes: for throughput runs only (accuracy ~10%)."""
    rng = np.random.default_rng(seed)
    return MnistData(
        train_images=rng.integers(0, 256, (train_size, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8),
        train_labels=rng.integers(0, NUM_CLASSES, train_size, dtype=np.uint8),
        test_images=rng.integers(0, 256, (test_size, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8),
        test_labels=rng.integers(0, NUM_CLASSES, test_size, dtype=np.uint8),
        name="synthetic",
        source="random images (synthetic)",
    )


def load_from_path(path: os.PathLike | str, name: str) -> MnistData:
    """Loads ``name`` from an explicit ``--data-dir``: IDX files, an npz, or a TFDS dir."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"--data-dir {path}: no such file or directory")
    if path.is_file():
        if path.suffix == ".npz":
            return load_npz(path, name)
        raise DataError(f"--data-dir {path}: expected a directory or a .npz file")
    if not os.access(path, os.R_OK | os.X_OK):
        raise DataError(f"--data-dir {path}: directory is not readable")
    if has_idx_files(path):
        return load_idx_dir(path, name)
    npz = path / "mnist.npz"
    if name == "mnist" and npz.exists():
        return load_npz(npz, name)
    if tfds_prepared(name, str(path)):
        return load_tfds(name, str(path))
    raise DataError(
        f"--data-dir {path}: found no {name} data (looked for the IDX files "
        f"train-images-idx3-ubyte[.gz] etc., mnist.npz, and a prepared TFDS '{name}')"
    )


def load(
    name: str,
    data_dir: Optional[str] = None,
    *,
    synthetic_train_size: int = 60000,
    seed: int = 0,
    log: Callable[[str], None] = lambda message: None,
) -> MnistData:
    """Finds and loads a dataset, trying each source in a documented order.

    Without ``data_dir``: ``$MNIST_CORE_DATA_DIR``, an already-prepared TFDS copy,
    ``~/.keras/datasets/mnist.npz`` (MNIST only), ``/usr/share/datasets/fashion-mnist``
    (Fashion-MNIST only, Debian's ``dataset-fashion-mnist``), an earlier download, then a
    download from ``$MNIST_CORE_DATA_URL`` or the dataset's own distribution.

    Args:
        name: ``mnist``, ``fashion_mnist`` or ``synthetic``.
        data_dir: Explicit location (directory of IDX files, ``.npz``, or TFDS data dir).
        synthetic_train_size: Training-set size of ``synthetic``.
        seed: Seed of ``synthetic``.
        log: Receives a download's lines (what is fetched from where, a line per file).

    Raises:
        DataError: if no source has the data (listing every way to supply it), or the
            data found is malformed.
    """
    if name == "synthetic":
        data = synthetic(synthetic_train_size, seed=seed)
    elif data_dir is not None:
        data = load_from_path(data_dir, name)
    else:
        data = _resolve_default(name, log)
    return data


def _resolve_default(name: str, log: Callable[[str], None] = lambda message: None) -> MnistData:
    import mnist_core.data.download as download_lib

    env_dir = os.environ.get(ENV_DATA_DIR)
    if env_dir:
        return load_from_path(env_dir, name)
    if tfds_prepared(name):
        return load_tfds(name)
    keras_npz = KERAS_NPZ.expanduser()
    if name == "mnist" and keras_npz.exists():
        return load_npz(keras_npz, name)
    if name == "fashion_mnist" and has_idx_files(DEBIAN_FASHION_DIR):
        return load_idx_dir(DEBIAN_FASHION_DIR, name)
    earlier = download_lib.cached(name)
    if earlier is not None:
        return load_idx_dir(earlier, name)
    download_error = "skipped because $MNIST_CORE_NO_DOWNLOAD is set"
    if os.environ.get(ENV_NO_DOWNLOAD, "") in ("", "0"):
        try:
            return download_lib.download(name, log)
        except DataError as e:
            download_error = f"failed: {e}"
    ways = [
        "--data-dir DIR with the four IDX files (train-images-idx3-ubyte.gz ...)",
        "--data-dir FILE.npz (Keras format)",
        f"${ENV_DATA_DIR}=DIR",
        "a prepared TFDS copy in $TFDS_DATA_DIR or ~/tensorflow_datasets",
    ]
    if name == "mnist":
        ways.append(f"{KERAS_NPZ}")
    if name == "fashion_mnist":
        ways.append(f"{DEBIAN_FASHION_DIR} (apt-get install dataset-fashion-mnist)")
    ways.append(f"${download_lib.ENV_URL}=URL of a mirror")
    raise DataError(
        f"no {name} data found; supply it with one of: {'; '.join(ways)} "
        f"(download {download_error})"
    )
