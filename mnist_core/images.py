"""Image files made to look like the training data: reading PNG/JPEG/GIF/BMP/.npy, MNIST-like preprocessing.

* ``mnist`` (digits): grey, inverted if it is dark-on-light (MNIST digits are light on
  black), cropped to the ink, scaled to fit a 20x20 box keeping its aspect ratio, and
  placed in a 28x28 field so that its centre of mass is in the middle: the MNIST recipe.
* ``fashion``: the Fashion-MNIST recipe: grey, inverted if light-backed, cropped, longest
  side scaled to 28, centred.
* ``none``: the image must already be 28x28 (light on dark); used as it is.
* ``resize``: for a model trained on other images than MNIST's 28x28 grey ones (CIFAR-10,
  a folder of photos): the image scaled to the model's size as it is (no inversion, no
  cropping), grey or colour as the model takes it. The default for such a model.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Iterator, Optional, Tuple

import numpy as np

from mnist_core.data import IMAGE_SIZE
from mnist_core.errors import DataError, one_line

PREPROCESS = ("auto", "mnist", "fashion", "none", "resize")
# An image whose border is this dark (median, of 1.0) at the model's size is taken to be
# prepared already, as the datasets' images are (MNIST's and Fashion-MNIST's test images:
# all of MNIST's, all but 8 of Fashion-MNIST's 10,000).
_PREPARED_BORDER = 0.25
# Ink threshold (of 1.0) for cropping; anti-aliased edges below it are kept by the crop
# box of the stronger strokes around them.
_INK = 0.2
# ITU-R 601 luma weights, as tf.image.rgb_to_grayscale uses.
_LUMA = np.array([0.2989, 0.5870, 0.1140])


def _to_gray(array: np.ndarray, where: str) -> np.ndarray:
    """``[H, W]`` float in [0, 1] from ``[H, W]``/``[H, W, 1|2|3|4]`` uint8, uint16 or float."""
    x = _to_unit(array, where)
    if x.shape[-1] == 3:
        return x @ (_LUMA / _LUMA.sum())  # white stays exactly 1.0
    return x[..., 0]


def _to_unit(array: np.ndarray, where: str) -> np.ndarray:
    """``[H, W, 1|3]`` float in [0, 1] (transparency composited onto white) from
    ``[H, W]``/``[H, W, 1|2|3|4]`` uint8, uint16 or float."""
    array = np.asarray(array)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DataError(f"{where}: unsupported array type {array.dtype}")
    if array.ndim == 3 and array.shape[-1] in (1, 2, 3, 4):
        channels = array.shape[-1]
    elif array.ndim == 2:
        array, channels = array[..., None], 1
    else:
        raise DataError(f"{where}: expected an image [H, W] or [H, W, C], got shape {list(array.shape)}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise DataError(f"{where}: empty image, shape {list(array.shape)}")
    if np.issubdtype(array.dtype, np.integer):
        scale = 65535.0 if array.max(initial=0) > 255 else 255.0
        x = array.astype(np.float64) / scale
    else:
        x = array.astype(np.float64)
        if not np.isfinite(x).all():
            raise DataError(f"{where}: contains NaN or infinite values")
        if x.max(initial=0) > 1.0:  # floats on the 0..255 scale
            x = x / 255.0
    x = np.clip(x, 0.0, 1.0)
    if channels in (2, 4):
        # Transparent areas are background: composite onto white, as a viewer shows it.
        alpha = x[..., -1:]
        x = x[..., :-1] * alpha + (1.0 - alpha)
    return x


def read_images(path: str, colour: bool = False) -> Iterator[Tuple[str, np.ndarray]]:
    """Yields ``(name, grey [H, W] in [0, 1])`` for the image(s) in one file; with
    ``colour``, ``[H, W, 1|3]`` as the file holds it.

    An image of a ``.npy`` stack that cannot be used is yielded as ``(name, DataError)``, so
    the others still are.

    Raises:
        DataError: the file can't be read or decoded (names the file and why).
    """
    convert = _to_unit if colour else _to_gray
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: {'is a directory' if p.is_dir() else 'no such file'}")
    if p.suffix.lower() == ".npy":
        try:
            array = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: not a readable .npy array ({one_line(e)})") from None
        if array.ndim == 4 or (array.ndim == 3 and array.shape[-1] not in (1, 2, 3, 4)):
            for i, image in enumerate(array):
                # One bad image of a stack is that image's problem, not the stack's.
                try:
                    yield f"{path}[{i}]", convert(image, f"{path}[{i}]")
                except DataError as e:
                    yield f"{path}[{i}]", e
            return
        yield path, convert(array, path)
        return
    import tensorflow as tf

    try:
        contents = p.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        image = tf.io.decode_image(contents, channels=0, expand_animations=False).numpy()
    except (tf.errors.InvalidArgumentError, ValueError) as e:
        # Drop the op/device prefix TensorFlow puts before the decoder's own words.
        reason = re.sub(r"\{\{.*?\}\}", "", one_line(e)).strip()[:120]
        raise DataError(f"{path}: not a decodable PNG/JPEG/GIF/BMP image ({reason})") from None
    yield path, convert(image, path)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    import tensorflow as tf

    # Area averaging when shrinking, as the MNIST digits were anti-aliased into their box.
    method = "area" if height <= image.shape[0] and width <= image.shape[1] else "bilinear"
    return tf.image.resize(image[..., None], (height, width), method=method, antialias=True).numpy()[..., 0]


def resized(image: np.ndarray, image_shape) -> np.ndarray:
    """``resize``: an image in [0, 1] (``[H, W]`` or ``[H, W, 1|3]``) as uint8 of the model's
    ``image_shape`` (``(H, W)`` grey or ``(H, W, C)``), scaled to its size as it is."""
    import tensorflow as tf

    image = image[..., None] if image.ndim == 2 else image
    height, width = image_shape[:2]
    channels = image_shape[2] if len(image_shape) == 3 else 1
    if image.shape[-1] != channels:
        image = image @ (_LUMA / _LUMA.sum())[:, None] if channels == 1 else np.repeat(image[..., :1], channels, -1)
    if image.shape[:2] != (height, width):
        method = "area" if height <= image.shape[0] and width <= image.shape[1] else "bilinear"
        image = tf.image.resize(image, (height, width), method=method, antialias=True).numpy()
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    return pixels[..., 0] if len(image_shape) == 2 else pixels


def to_model_input(gray: np.ndarray, preprocess: str, where: str = "image",
                   image_shape=(IMAGE_SIZE, IMAGE_SIZE)) -> np.ndarray:
    """An image in [0, 1] → the uint8 image the model expects: MNIST's light-on-black
    ``[28, 28]`` (``mnist``, ``fashion``, ``none``, from a grey image), or the model's
    ``image_shape`` (``resize``, from a grey or colour one).

    Raises:
        DataError: ``none`` with an image that isn't 28x28, or an image with no ink.
    """
    if preprocess == "resize":
        return resized(gray, tuple(image_shape))
    if preprocess == "none":
        if gray.shape != (IMAGE_SIZE, IMAGE_SIZE):
            raise DataError(f"{where}: --preprocess none needs a 28x28 image, got {gray.shape[0]}x{gray.shape[1]}")
        return np.round(gray * 255).astype(np.uint8)
    background = np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]]))
    if background > 0.5:  # dark on light (paper, a screen): make it light on black
        gray, background = 1.0 - gray, 1.0 - background
    # Lift a grey background (a photo of paper) to black, as the datasets' backgrounds are.
    gray = np.clip((gray - background) / max(1.0 - background, 1e-6), 0.0, 1.0)
    if gray.max() < 0.05:
        raise DataError(f"{where}: no digit or article found (the image is blank)")
    rows, cols = np.nonzero(gray > _INK * gray.max())
    gray = gray[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    gray = gray / gray.max()  # full contrast, as in the datasets
    box = 20 if preprocess == "mnist" else IMAGE_SIZE
    scale = box / max(gray.shape)
    height, width = (max(1, int(round(n * scale))) for n in gray.shape)
    patch = np.clip(_resize(gray, height, width), 0.0, 1.0)
    if preprocess == "mnist":
        # Centre of mass to pixel (14, 14), where MNIST puts it (measured on its digits:
        # mean 13.99, 14.00), not to the geometric centre 13.5.
        total = patch.sum()
        cy = (patch.sum(axis=1) * np.arange(height)).sum() / total
        cx = (patch.sum(axis=0) * np.arange(width)).sum() / total
        # floor(x + .5), not round(): Python rounds halves to even, which would shift
        # symmetric shapes one way or the other depending on their size.
        top, left = int(np.floor(IMAGE_SIZE / 2 - cy + 0.5)), int(np.floor(IMAGE_SIZE / 2 - cx + 0.5))
    else:
        top, left = (IMAGE_SIZE - height) // 2, (IMAGE_SIZE - width) // 2
    top = min(max(top, 0), IMAGE_SIZE - height)
    left = min(max(left, 0), IMAGE_SIZE - width)
    field = np.zeros((IMAGE_SIZE, IMAGE_SIZE))
    field[top:top + height, left:left + width] = patch
    return np.round(field * 255).astype(np.uint8)


def looks_prepared(image: np.ndarray, image_shape=(IMAGE_SIZE, IMAGE_SIZE)) -> bool:
    """Whether an image in [0, 1] already looks like the training data: 28x28 grey (the
    model's size), light on a dark border. Such an image (a dataset's own) is taken as it
    is; a photo, a scan of dark ink on paper or another size is prepared."""
    if tuple(image_shape) != (IMAGE_SIZE, IMAGE_SIZE) or image.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        return False
    gray = image if image.ndim == 2 else image[..., 0]
    if gray.max() < 0.05:  # blank: the recipe refuses it in one line
        return False
    border = np.concatenate([gray[:2].ravel(), gray[-2:].ravel(), gray[:, :2].ravel(), gray[:, -2:].ravel()])
    return float(np.median(border)) <= _PREPARED_BORDER


def resolve_preprocess(preprocess: str, image: np.ndarray, dataset: Optional[str],
                       image_shape=(IMAGE_SIZE, IMAGE_SIZE)) -> str:
    """``auto`` made concrete for one image: ``none`` for one that already looks like the
    training data (:func:`looks_prepared`), else the dataset's recipe
    (:func:`default_preprocess`); any other choice as it is."""
    if preprocess != "auto":
        return preprocess
    if looks_prepared(image, image_shape):
        return "none"
    return default_preprocess(dataset, image_shape)


def default_preprocess(dataset: Optional[str], image_shape=(IMAGE_SIZE, IMAGE_SIZE)) -> str:
    """The recipe that matches a run's dataset: MNIST's or Fashion-MNIST's for 28x28 grey
    images, ``resize`` for any other images."""
    if tuple(image_shape) != (IMAGE_SIZE, IMAGE_SIZE):
        return "resize"
    return "fashion" if dataset == "fashion_mnist" else "mnist"


def preprocess(images, preprocess: str = "auto", image_shape=(IMAGE_SIZE, IMAGE_SIZE),
               where: str = "images", dataset: Optional[str] = "mnist") -> np.ndarray:
    """Images prepared as ``mnist-predict`` prepares a file: the one preprocessing of the
    command line and of :func:`mnist_core.predict_proba`.

    Args:
        images: A batch ``[N, H, W]``/``[N, H, W, C]`` (or flat square ``[N, H*W]``) or a
            list of images ``[H, W]``/``[H, W, C]`` of any size: uint8, uint16 or floats.
        preprocess: ``auto`` (each image that already looks like the training data —
            28x28, light on a dark border — as it is, any other by ``dataset``'s recipe),
            ``mnist`` (dark-on-light turned light-on-dark, cropped, the digit fitted in
            20x20 and centred by mass in 28x28, as MNIST's), ``fashion`` (fitted in 28x28),
            ``none`` (28x28 images taken as they are) or ``resize`` (scaled to the model's
            ``image_shape``, grey or colour).
        image_shape: The model's images, ``(H, W)`` or ``(H, W, C)``.
        where: How messages name the images.
        dataset: The model's dataset, whose recipe ``auto`` uses.

    Returns:
        uint8 images ``[N, *image_shape]``.

    Raises:
        DataError: a blank image, or one that is not an image.
    """
    if preprocess not in PREPROCESS:
        raise DataError(f"--preprocess {preprocess}: choose one of {', '.join(PREPROCESS)}")
    if isinstance(images, (list, tuple)):
        items = list(images)
    else:
        batch = np.asarray(images)
        if batch.ndim == 2 and batch.shape[1] > 1 and math.isqrt(batch.shape[1]) ** 2 == batch.shape[1]:
            side = math.isqrt(batch.shape[1])
            batch = batch.reshape(-1, side, side)
        if batch.ndim not in (3, 4):
            raise DataError(f"{where} has shape {tuple(batch.shape)}, expected a batch of images (N, H, W) or "
                            "(N, H, W, C), flat square ones (N, H*W), or a list of images")
        items = list(batch)
    colour = default_preprocess(dataset, image_shape) == "resize" if preprocess == "auto" else preprocess == "resize"
    prepared = []
    for i, x in enumerate(items):
        image = _to_unit(x, f"{where}[{i}]") if colour else _to_gray(x, f"{where}[{i}]")
        mode = resolve_preprocess(preprocess, image, dataset, image_shape)
        prepared.append(to_model_input(image, mode, f"{where}[{i}]", image_shape))
    if not prepared:
        raise DataError(f"{where}: no images")
    return np.stack(prepared)
