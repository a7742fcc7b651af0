"""A tiny image-classification dataset prepared with TensorFlow Datasets, offline.

``python tests/tiny_tfds.py DATA_DIR`` writes it (``tiny_letters``: 26 classes named a..z,
12x12 grey images, 260 train and 52 test) into a TFDS data directory, as ``tfds build``
would; mnist_core then reads it with ``--dataset tiny_letters --data-dir DATA_DIR``
without this module (TFDS reads a prepared dataset from its files).
"""

import string
import sys

import numpy as np
import tensorflow_datasets as tfds

CLASSES = list(string.ascii_lowercase)
SHAPE = (12, 12, 1)


class TinyLetters(tfds.core.GeneratorBasedBuilder):
    """26 classes of 12x12 grey images: a bright square whose position is the class."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=SHAPE),
                "label": tfds.features.ClassLabel(names=CLASSES),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(10, seed=0), "test": self._generate_examples(2, seed=1)}

    def _generate_examples(self, per_class, seed):
        rng = np.random.default_rng(seed)
        for i in range(per_class * len(CLASSES)):
            label = i % len(CLASSES)
            image = rng.integers(0, 40, SHAPE, dtype=np.uint8)
            row, col = divmod(label, 6)
            image[row * 2:row * 2 + 2, col * 2:col * 2 + 2] = 255
            yield i, {"image": image, "label": label}


if __name__ == "__main__":
    TinyLetters(data_dir=sys.argv[1]).download_and_prepare()
