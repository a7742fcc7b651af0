"""``python -m mnist_core.predict``: classify image files with a trained model.

    python -m mnist_core.predict --model-path runs/X/model.keras digit.png photo.jpg more.npy
    python -m mnist_core.predict --model-path runs/X/saved_model --top-k 3 --json *.png

Only the command line lives here; reading and preprocessing images is
:mod:`mnist_core.images`. Images are PNG, JPEG, GIF or BMP (decoded by TensorFlow's own
decoders) or ``.npy`` arrays (``[H, W]``, ``[H, W, C]``, or a stack ``[N, H, W]`` whose
images are named ``FILE[i]``).
Each is made to look like the training data before it is classified (``--preprocess``):

* ``mnist`` (digits): grey, inverted if it is dark-on-light (MNIST digits are light on
  black), cropped to the ink, scaled to fit a 20x20 box keeping its aspect ratio, and
  placed in a 28x28 field so that its centre of mass is in the middle: the MNIST recipe.
* ``fashion``: the Fashion-MNIST recipe: grey, inverted if light-backed, cropped, longest
  side scaled to 28, centred.
* ``none``: the image must already be 28x28 (light on dark); used as it is.

The default, ``auto``, takes an image that already looks like the training data (28x28,
light on a dark border: a dataset's own image) as it is and gives any other the recipe of
the dataset the model was trained on (which the model file carries); it is also
``mnist_core.predict_proba``'s default, so the same images get the same classes there. A file or image that can't be read, decoded or used gets one error line on
stderr; the other files, and the other images of a stack, are still classified, and the
exit status is then 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np

from mnist_core import cli
from mnist_core.errors import ConfigError, DataError, one_line
from mnist_core.images import PREPROCESS, default_preprocess, read_images, resolve_preprocess, to_model_input

PROG = "mnist-predict"


def build_parser():
    p = cli.ArgumentParser(prog=PROG, description="Classify image files with a trained mnist_core model.")
    p.add_argument("--model-path", dest="model_path", required=True, metavar="PATH",
                   help="RUN/model.keras, or a SavedModel directory written by --export-savedmodel")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG/GIF/BMP or .npy files")
    p.add_argument("--top-k", dest="top_k", type=cli.positive_int, default=1, metavar="K",
                   help="print the K most probable classes (default 1)")
    p.add_argument("--preprocess", choices=PREPROCESS,
                   help="how images are made like the training data: auto (as they are when they already look "
                        "like it, else the run's dataset's recipe; the default), mnist, fashion (MNIST-like), none "
                        "(28x28 as they are), resize (scaled to the model's image size; auto's recipe for models of "
                        "other images than 28x28 grey)")
    p.add_argument("--pixels", choices=("unit", "raw"),
                   help="the pixel scale the model was trained on, for a model that does not record it (saved by "
                        "plain Keras): unit (pixels / 255) or raw (0-255); default: recorded, else guessed and said")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first: where the model's own classes are registered (repeatable)")
    p.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m mnist_core.predict``."""
    cli.quiet_tensorflow_logs()
    args = build_parser().parse_args(argv)

    def body():
        cli.import_tensorflow()
        from mnist_core import inference

        classifier = inference.load_classifier(Path(args.model_path), pixels=args.pixels, imports=args.imports)
        # The model carries its dataset: class names and the preprocessing that matches it.
        names = classifier.info.class_names
        image_shape = tuple(classifier.info.image_shape)
        preprocess = args.preprocess or "auto"
        if preprocess not in ("resize", "auto") and image_shape != (28, 28):
            raise ConfigError(f"--preprocess {preprocess}: makes 28x28 grey MNIST-like images, and the model takes "
                              f"{'x'.join(map(str, image_shape))}; use --preprocess resize (its default)")

        def fail(message: str) -> None:
            print(f"{PROG}: error: {one_line(message)}", file=sys.stderr)

        failures = 0
        for path in args.images:
            batch = []
            try:
                colour = (preprocess if preprocess != "auto" else default_preprocess(classifier.info.dataset,
                                                                                      image_shape)) == "resize"
                images = list(read_images(path, colour=colour))
            except DataError as e:
                fail(str(e))
                failures += 1
                continue
            if not images:
                fail(f"{path}: an empty stack of images (shape [0, H, W]): nothing to classify")
                failures += 1
            for name, gray in images:  # a bad image of a stack costs that image, not the stack
                try:
                    if isinstance(gray, DataError):
                        raise gray
                    mode = resolve_preprocess(preprocess, gray, classifier.info.dataset, image_shape)
                    batch.append((name, to_model_input(gray, mode, name, image_shape)))
                except DataError as e:
                    fail(str(e))
                    failures += 1
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

    return cli.run_main(PROG, body, argv)


if __name__ == "__main__":
    sys.exit(main())
