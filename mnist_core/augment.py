"""``--augment``: random shifts, rotations, zoom and flips of training batches, in tf.data.

Keras' own preprocessing layers do the work (``RandomTranslation``, ``RandomRotation``,
``RandomZoom``, ``RandomFlip``), but driven statelessly: each batch's transformations are
drawn from a seed made of the run's ``--seed`` and the batch's global index, instead of the
layers' stateful generators. So a batch is transformed the same way however the run got
there — a resumed run, which skips straight to its step, sees exactly the images an
uninterrupted one saw — and the augmentation runs on the host, in the input pipeline,
in parallel with training. Evaluation never sees it.

Presets:

* ``digits`` (MNIST): shifts up to 10% (about 3 pixels), rotations up to ±10°, zoom ±10%;
  no flips (a mirrored 2 is not a 2).
* ``clothing`` (Fashion-MNIST): shifts up to 8%, zoom ±8%, horizontal flips (a mirrored
  shoe is a shoe); no rotation (clothes are photographed upright).
"""

from __future__ import annotations

from typing import Callable, Optional

import keras
import tensorflow as tf

PRESETS = {
    "digits": {"translate": 0.10, "rotate": 10.0 / 360.0, "zoom": 0.10, "flip": False},
    "clothing": {"translate": 0.08, "rotate": 0.0, "zoom": 0.08, "flip": True},
}


def resolve(augment: str, dataset: str) -> Optional[str]:
    """The preset ``--augment`` names for ``dataset`` (None: off)."""
    if augment == "off":
        return None
    if augment == "auto":
        return "clothing" if dataset == "fashion_mnist" else "digits"
    return augment


def make(preset: str) -> Callable:
    """Returns ``augment(images [B, 28, 28, 1] float32, seed [2] int) -> images``."""
    options = PRESETS[preset]
    fill = {"fill_mode": "constant", "fill_value": 0.0}
    layers = [keras.layers.RandomTranslation(options["translate"], options["translate"], **fill)]
    if options["rotate"]:
        layers.append(keras.layers.RandomRotation(options["rotate"], **fill))
    layers.append(keras.layers.RandomZoom(options["zoom"], options["zoom"], **fill))
    if options["flip"]:
        layers.append(keras.layers.RandomFlip("horizontal"))

    # Plain TensorFlow code in a tf.data map: AutoGraph has nothing to convert, and warns
    # that it cannot convert the Keras layers' methods.
    @tf.autograph.experimental.do_not_convert
    def augment(images, seed):
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=len(layers))
        for layer, layer_seed in zip(layers, tf.unstack(seeds)):
            transformation = layer.get_random_transformation(images, training=True, seed=_Stateless(layer_seed))
            images = layer.transform_images(images, transformation, training=True)
        return images

    return augment


class _Stateless(keras.random.SeedGenerator):
    """A ``SeedGenerator`` that hands out seeds derived from one seed tensor, without state.

    Keras' random ops take an int or a ``SeedGenerator``; the layers draw from it with
    ``next()``. This one answers each ``next()`` with the next of a fixed sequence of
    stateless seeds, so the batch's transformation is a pure function of its seed.
    """

    def __init__(self, seed):  # no super().__init__: no state variable to create
        self._seed = seed
        self._draws = 0

    def next(self, ordered=True):
        self._draws += 1
        return tf.random.experimental.stateless_fold_in(self._seed, self._draws)
