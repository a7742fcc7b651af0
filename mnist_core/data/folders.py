"""Images in a folder per class: the layout of Keras' ``image_dataset_from_directory``.

``--data-dir DIR`` with ``DIR/train/<class>/*.png`` (and ``DIR/test/<class>/*.png``, the
test split), or ``DIR/<class>/*.png`` alone (no test split: a run holds part out with
``--val-split``). The classes are the folder names in sorted order, as Keras orders them;
PNG, JPEG, BMP and GIF files are read (other files are skipped and counted). Every image
must have the same size (mnist_core does not resize: a different one is named); grey
images are kept grey, and a mix of grey and colour is read as RGB.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from mnist_core.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TRAIN_DIR, TEST_DIR = "train", "test"


def _class_dirs(directory: Path) -> List[Path]:
    return sorted((p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _images_in(directory: Path) -> List[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _layout(directory: Path) -> Tuple[Path, Optional[Path]]:
    """``(train root, test root or None)`` of a folder layout, or ``DataError``."""
    train, test = directory / TRAIN_DIR, directory / TEST_DIR
    if train.is_dir() and _class_dirs(train):
        return train, test if test.is_dir() else None
    return directory, None


def has_folders(directory: Path) -> bool:
    """True if ``directory`` looks like a folder per class (of images) or holds ``train/`` of them."""
    try:
        root, _ = _layout(directory)
        return any(_images_in(d) for d in _class_dirs(root))
    except OSError:
        return False


def _decode(paths: List[Path]):
    """Decoded uint8 images ``[N, H, W, C]`` of ``paths`` (each checked to have the first's size)."""
    import tensorflow as tf

    decoded = []
    for path in paths:
        try:
            image = tf.io.decode_image(path.read_bytes(), expand_animations=False).numpy()
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
        except (tf.errors.InvalidArgumentError, ValueError):
            raise DataError(f"{path}: not a readable PNG, JPEG, BMP or GIF image") from None
        decoded.append((path, image))
    return decoded


def _stack(decoded, first: Path, channels: int) -> np.ndarray:
    height, width = decoded[0][1].shape[:2] if decoded else (0, 0)
    out = []
    for path, image in decoded:
        if image.shape[:2] != (height, width):
            raise DataError(f"{path}: is {image.shape[1]}x{image.shape[0]} pixels, {first.name} is "
                            f"{width}x{height}; mnist_core trains on images of one size (resize them first)")
        if image.shape[2] != channels:
            image = _to_channels(image, channels)
        out.append(image)
    return np.stack(out)


def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Grey (+ alpha) or RGB(A) to ``channels`` (1 or 3): alpha dropped, grey repeated."""
    colour = image[..., :3] if image.shape[2] >= 3 else np.repeat(image[..., :1], 3, axis=2)
    if channels == 3:
        return colour
    return image[..., :1] if image.shape[2] <= 2 else np.round(colour @ np.array([0.299, 0.587, 0.114]))[
        ..., None].astype(np.uint8)


def _read_split(root: Path, classes: List[str], where: str):
    """``(decoded images, labels, skipped)`` of one split's class folders."""
    paths, labels, skipped = [], [], 0
    index: Dict[str, int] = {name: i for i, name in enumerate(classes)}
    for folder in _class_dirs(root):
        if folder.name not in index:
            raise DataError(f"{folder}: class '{folder.name}' has no folder in the training split ({where})")
        files = _images_in(folder)
        skipped += sum(1 for p in folder.iterdir() if p.is_file()) - len(files)
        paths += files
        labels += [index[folder.name]] * len(files)
    if not paths:
        raise DataError(f"{root}: no images in its class folders (PNG, JPEG, BMP or GIF)")
    return _decode(paths), np.asarray(labels, np.int64), skipped


def load_folders(directory: os.PathLike | str, name: str):
    """``MnistData`` from a folder per class (module docstring).

    Raises:
        DataError: no class folders with images, a file that is not an image, images of
            different sizes.
    """
    from mnist_core.data.arrays import assemble

    directory = Path(directory)
    train_root, test_root = _layout(directory)
    classes = [d.name for d in _class_dirs(train_root)]
    if len(classes) < 2:
        raise DataError(f"{train_root}: found {len(classes)} class folder(s); a classifier needs 2 or more "
                        "(one folder of images per class)")
    train, y, skipped = _read_split(train_root, classes, str(directory))
    test, y_test, skipped_test = _read_split(test_root, classes, str(directory)) if test_root else (None, None, 0)
    everything = train + (test or [])
    channels = 1 if all(image.shape[2] <= 2 for _, image in everything) else 3
    x = _stack(train, train[0][0], channels)
    x_test = _stack(test, train[0][0], channels) if test else None
    if x_test is not None and x_test.shape[1:] != x.shape[1:]:
        raise DataError(f"{test_root}: images are {x_test.shape[2]}x{x_test.shape[1]}, the training images "
                        f"{x.shape[2]}x{x.shape[1]}")
    if channels == 1:
        x, x_test = x[..., 0], None if x_test is None else x_test[..., 0]
    source = f"image folders in {directory}" + (f" ({skipped + skipped_test} other files skipped)"
                                                  if skipped + skipped_test else "")
    return assemble(x, y, x_test, y_test, name=name, source=source, classes=tuple(classes),
                           where=str(directory))
