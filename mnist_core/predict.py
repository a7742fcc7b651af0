"""``python -m mnist_core.predict``: classify image files with a trained model.

    python -m mnist_core.predict --model-path runs/X/model.keras digit.png photo.jpg more.npy
    python -m mnist_core.predict --model-path runs/X/saved_model --top-k 3 --json *.png

Images are PNG, JPEG, GIF or BMP (decoded by TensorFlow's own decoders) or ``.npy`` arrays
(``[H, W]``, ``[H, W, C]``, or a stack ``[N, H, W]`` whose images are named ``FILE[i]``).
Each is made to look like the training data before it is classified (``--preprocess``):

* ``mnist`` (digits): grey, inverted if it is dark-on-light (MNIST digits are light on
  black), cropped to the ink, scaled to fit a 20x20 box keeping its aspect ratio, and
  placed in a 28x28 field so that its centre of mass is in the middle: the MNIST recipe.
* ``fashion``: the Fashion-MNIST recipe: grey, inverted if light-backed, cropped, longest
  side scaled to 28, centred.
* ``none``: the image must already be 28x28 (light on dark); used as it is.

The default is the recipe of the dataset the run trained on (from its ``summary.json``).
A file that can't be read or decoded gets one error line on stderr; the others are still
classified, and the exit status is then 2.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np

from mnist_core import cli
from mnist_core.data import IMAGE_SIZE
from mnist_core.errors import DataError, one_line

PROG = "mnist-predict"
PREPROCESS = ("mnist", "fashion", "none")
# Ink threshold (of 1.0) for cropping; anti-aliased edges below it are kept by the crop
# box of the stronger strokes around them.
_INK = 0.2
# ITU-R 601 luma weights, as tf.image.rgb_to_grayscale uses.
_LUMA = np.array([0.2989, 0.5870, 0.1140])


def build_parser():
    p = cli.ArgumentParser(prog=PROG, description="Classify image files with a trained mnist_core model.")
    p.add_argument("--model-path", dest="model_path", required=True, metavar="PATH",
                   help="RUN/model.keras, or a SavedModel directory written by --export-savedmodel")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG/GIF/BMP or .npy files")
    p.add_argument("--top-k", dest="top_k", type=cli.positive_int, default=1, metavar="K",
                   help="print the K most probable classes (default 1)")
    p.add_argument("--preprocess", choices=PREPROCESS,
                   help="how images are made MNIST-like (default: the run's dataset: mnist or fashion)")
    p.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    return p


# --------------------------------------------------------------------------- reading


def _to_gray(array: np.ndarray, where: str) -> np.ndarray:
    """``[H, W]`` float in [0, 1] from ``[H, W]``/``[H, W, 1|2|3|4]`` uint8, uint16 or float."""
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
    if x.shape[-1] == 3:
        x = x @ (_LUMA / _LUMA.sum())  # white stays exactly 1.0
    else:
        x = x[..., 0]
    return x


def read_images(path: str) -> Iterator[Tuple[str, np.ndarray]]:
    """Yields ``(name, grey [H, W] in [0, 1])`` for the image(s) in one file.

    Raises:
        DataError: the file can't be read or decoded (names the file and why).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: {'is a directory' if p.is_dir() else 'no such file'}")
    if p.suffix.lower() == ".npy":
        try:
            array = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: not a readable .npy array ({one_line(e)})") from None
        if array.ndim == 3 and array.shape[-1] not in (1, 2, 3, 4):
            for i, image in enumerate(array):
                yield f"{path}[{i}]", _to_gray(image, f"{path}[{i}]")
            return
        yield path, _to_gray(array, path)
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
    yield path, _to_gray(image, path)


# --------------------------------------------------------------------------- MNIST-like


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    import tensorflow as tf

    # Area averaging when shrinking, as the MNIST digits were anti-aliased into their box.
    method = "area" if height <= image.shape[0] and width <= image.shape[1] else "bilinear"
    return tf.image.resize(image[..., None], (height, width), method=method, antialias=True).numpy()[..., 0]


def to_model_input(gray: np.ndarray, preprocess: str, where: str = "image") -> np.ndarray:
    """A grey image in [0, 1] → the uint8 ``[28, 28]`` light-on-black image the model expects.

    Raises:
        DataError: ``none`` with an image that isn't 28x28, or an image with no ink.
    """
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


# --------------------------------------------------------------------------- CLI


def default_preprocess(dataset: Optional[str]) -> str:
    """The recipe that matches a run's dataset."""
    return "fashion" if dataset == "fashion_mnist" else "mnist"


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m mnist_core.predict``."""
    cli.quiet_tensorflow_logs()
    args = build_parser().parse_args(argv)

    def body():
        cli.import_tensorflow()
        from mnist_core import data as data_lib
        from mnist_core import inference

        model_path = Path(args.model_path)
        dataset = inference.run_summary(model_path).get("config", {}).get("dataset")
        names = data_lib.class_names(dataset or "mnist")
        preprocess = args.preprocess or default_preprocess(dataset)
        classifier = inference.load_classifier(model_path)

        failures = 0
        for path in args.images:
            try:
                batch = [(name, to_model_input(gray, preprocess, name)) for name, gray in read_images(path)]
            except DataError as e:
                print(f"{PROG}: error: {one_line(e)}", file=sys.stderr)
                failures += 1
                continue
            if not batch:
                continue
            probs = classifier.probabilities(np.stack([image for _, image in batch]))
            for (name, _), p in zip(batch, probs):
                top = np.argsort(-p, kind="stable")[: args.top_k]
                if args.json:
                    print(json.dumps({"file": name, "predictions": [
                        {"class": int(c), "name": names[c], "probability": float(p[c])} for c in top]}))
                else:
                    text = ", ".join(f"{names[c]} {p[c]:.4f}" for c in top)
                    print(f"{name}: {text}")
        return 2 if failures else 0

    return cli.run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
