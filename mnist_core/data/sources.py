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

from mnist_core.data.dataset import IMAGE_SIZE, NUM_CLASSES, MnistData, check_labels, class_names
from mnist_core.data.formats import has_idx_files, load_idx_dir, load_npz
from mnist_core.errors import DataError

TFDS_NAMES = {"mnist": "mnist", "fashion_mnist": "fashion_mnist"}
# The datasets mnist_core finds without TensorFlow Datasets (IDX files, npz, its download).
OWN_DATASETS = ("mnist", "fashion_mnist")
KERAS_NPZ = Path("~/.keras/datasets/mnist.npz")
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_DATA_DIR = "MNIST_CORE_DATA_DIR"
# Set to 1 to never try a TFDS download (tests, air-gapped machines): the resolution then
# fails at once with the list of ways to supply data instead of waiting on the network.
ENV_NO_DOWNLOAD = "MNIST_CORE_NO_DOWNLOAD"


def _tfds_builder(name: str, data_dir: Optional[str]):
    import tensorflow_datasets as tfds  # imported lazily: only this source needs it

    return tfds.builder(TFDS_NAMES.get(name, name), data_dir=data_dir)


def _quiet_absl():
    """TFDS logs a warning for every half-prepared folder it looks at and every dataset
    it has no code for: nothing a user who asked for data needs to read."""
    import contextlib

    from absl import logging as absl_logging

    @contextlib.contextmanager
    def quiet():
        level = absl_logging.get_verbosity()
        absl_logging.set_verbosity(absl_logging.ERROR)
        try:
            yield
        finally:
            absl_logging.set_verbosity(level)

    return quiet()


def tfds_prepared(name: str, data_dir: Optional[str] = None) -> bool:
    """True if an already-prepared TFDS copy of ``name`` exists (no network used).

    Quietly: TFDS logs a warning for every half-prepared folder it looks at, which says
    nothing to a user who never asked for TFDS (a broken copy is simply not used).
    """
    if name == "synthetic":
        return False
    with _quiet_absl():
        try:
            return bool(_tfds_builder(name, data_dir).is_prepared())
        except Exception:  # a broken TFDS directory, an unknown name: "not prepared", not a crash
            return False


def tfds_image_classes(builder, name: str):
    """``(image key, label key, (H, W, C), class names)`` of an image-classification TFDS
    dataset, from its ``info`` (no data read).

    Raises:
        DataError: the dataset is not one image and one class label per example.
    """
    import tensorflow_datasets as tfds

    features = builder.info.features
    keys = builder.info.supervised_keys
    image_key, label_key = (keys if keys and len(keys) == 2 and all(isinstance(k, str) for k in keys)
                            else ("image", "label"))
    image = features[image_key] if image_key in features else None
    label = features[label_key] if label_key in features else None
    if not isinstance(image, tfds.features.Image) or not isinstance(label, tfds.features.ClassLabel):
        raise DataError(f"--dataset {name}: not an image-classification dataset (mnist_core trains on one image "
                        f"and one class label per example; its features are {', '.join(features.keys())})")
    shape = tuple(image.shape)
    if any(d is None for d in shape):
        raise DataError(f"--dataset {name}: its images have no fixed size {shape}; mnist_core trains on images of "
                        "one size")
    return image_key, label_key, shape, tuple(label.names)


def load_tfds(name: str, data_dir: Optional[str] = None, download: bool = False) -> MnistData:
    """Loads an image-classification TFDS dataset into memory as uint8 arrays.

    Its image shape and class names come from its ``info``; its ``train`` split is
    trained on and its ``test`` split evaluated (a dataset without one has ``test_images``
    ``None``: :func:`mnist_core.data.hold_out_test` makes one).

    Args:
        name: A TFDS name: ``mnist``, ``fashion_mnist``, ``kmnist``, ``emnist/letters``,
            ``cifar10``...
        data_dir: TFDS data directory; ``None`` uses TFDS' default (``$TFDS_DATA_DIR``).
        download: Download and prepare it if it is not prepared yet.
    """
    import tensorflow_datasets as tfds

    with _quiet_absl():
        builder = _tfds_builder(name, data_dir)
        if download:
            builder.download_and_prepare()
        image_key, label_key, shape, names = tfds_image_classes(builder, name)
        splits = builder.info.splits
        if "train" not in splits:
            raise DataError(f"--dataset {name}: TFDS has no 'train' split of it (its splits: {', '.join(splits)})")
        arrays = {"test_images": None, "test_labels": None}
        for split in ("train", "test"):
            if split not in splits:
                continue
            ds = builder.as_dataset(split=split, batch_size=-1)
            element = tfds.as_numpy(ds)
            images = np.asarray(element[image_key], dtype=np.uint8)
            images = images[..., 0] if shape[-1] == 1 else images  # one channel: stored [N, H, W]
            labels = np.asarray(element[label_key])
            check_labels(labels, f"TFDS {name} {split}", len(names))
            dtype = np.uint8 if len(names) <= 256 else np.int32
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels.astype(dtype)
    # MNIST's and Fashion-MNIST's display names are mnist_core's (TFDS names the digits alike).
    classes = class_names(name, len(names)) if name in TFDS_NAMES else names
    return MnistData(**arrays, name=name, source=f"TFDS {builder.data_dir}", classes=classes)


def synthetic(train_size: int = 60000, test_size: int = 10000, seed: int = 0, *,
              image_shape=(IMAGE_SIZE, IMAGE_SIZE, 1), num_classes: int = NUM_CLASSES) -> MnistData:
    """Random uint8 images, MNIST's shape and classes unless told: for throughput runs only
    (accuracy ~1/classes)."""
    rng = np.random.default_rng(seed)
    h, w, c = image_shape
    stored = (h, w) if c == 1 else (h, w, c)
    dtype = np.uint8 if num_classes <= 256 else np.int32
    return MnistData(
        train_images=rng.integers(0, 256, (train_size, *stored), dtype=np.uint8),
        train_labels=rng.integers(0, num_classes, train_size).astype(dtype),
        test_images=rng.integers(0, 256, (test_size, *stored), dtype=np.uint8),
        test_labels=rng.integers(0, num_classes, test_size).astype(dtype),
        name="synthetic",
        source="random images (synthetic)",
        classes=class_names("synthetic", num_classes),
    )


LAYOUTS = ("the four IDX files (train-images-idx3-ubyte[.gz] ...)", "a Keras .npz (x_train, y_train, x_test, y_test)",
           "a CSV file, or train.csv [+ test.csv] (label,pixel0,pixel1,...)",
           "image folders per class (train/<class>/*.png [+ test/<class>/], or <class>/*.png)",
           "a TFDS data directory with the dataset prepared")


def load_from_path(path: os.PathLike | str, name: str) -> MnistData:
    """Loads ``name`` from an explicit ``--data-dir``: IDX files, an npz, a CSV, image
    folders per class, or a TFDS data directory.

    Raises:
        DataError: no such path, or none of :data:`LAYOUTS` there (the line lists them).
    """
    from mnist_core.data.folders import has_folders, load_folders
    from mnist_core.data.tables import has_csv, load_csv

    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"--data-dir {path}: no such file or directory")
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return load_npz(path, name)
        if path.suffix.lower() == ".csv":
            return load_csv(path, name)
        raise DataError(f"--data-dir {path}: expected a directory, a .npz or a .csv file")
    if not os.access(path, os.R_OK | os.X_OK):
        raise DataError(f"--data-dir {path}: directory is not readable")
    if has_idx_files(path):
        return load_idx_dir(path, name)
    npz = path / "mnist.npz"
    if name == "mnist" and npz.exists():
        return load_npz(npz, name)
    if name != "synthetic" and tfds_prepared(name, str(path)):
        return load_tfds(name, str(path))
    if has_csv(path):
        return load_csv(path, name)
    if has_folders(path):
        return load_folders(path, name)
    raise DataError(f"--data-dir {path}: found no {name} data; the layouts read are: {'; '.join(LAYOUTS)}")


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
        name: ``mnist``, ``fashion_mnist``, ``synthetic``, or any TensorFlow Datasets
            image-classification name (``kmnist``, ``emnist/letters``, ``cifar10``...).
        data_dir: Explicit location (:data:`LAYOUTS`: IDX files, ``.npz``, CSV, image
            folders, or a TFDS data dir).
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
    elif name in OWN_DATASETS:
        data = _resolve_default(name, log)
    else:
        data = _load_tfds_name(name, log)
    return data


def _load_tfds_name(name: str, log: Callable[[str], None]) -> MnistData:
    """Any other name: a TensorFlow Datasets image-classification dataset, prepared or
    downloaded (by TFDS) where the network allows."""
    try:
        with _quiet_absl():
            builder = _tfds_builder(name, None)
    except Exception as e:  # TFDS' DatasetNotFoundError and its kin, named in one line
        raise DataError(f"--dataset {name}: not a dataset mnist_core or TensorFlow Datasets knows "
                        f"({str(e).splitlines()[0][:160]}); mnist_core's own are mnist and fashion_mnist, and any "
                        "TFDS image-classification name works (kmnist, emnist/letters, cifar10...)") from None
    tfds_image_classes(builder, name)  # refuses what is not image classification before any download
    if tfds_prepared(name):
        return load_tfds(name)
    if os.environ.get(ENV_NO_DOWNLOAD, "") not in ("", "0"):
        raise DataError(f"--dataset {name}: not prepared in TFDS' data directory ({builder.data_dir}), and "
                        f"${ENV_NO_DOWNLOAD} is set; prepare it (tfds build {name}) or give --data-dir")
    log(f"--dataset {name}: downloading and preparing it with TensorFlow Datasets into {builder.data_dir}")
    try:
        return load_tfds(name, download=True)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"--dataset {name}: TensorFlow Datasets could not download or prepare it "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); "
                        f"prepare it where the network allows and copy {builder.data_dir}, or give --data-dir") \
            from None


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
