"""A ``tf.data.Dataset`` as ``data=``: read into memory, or streamed when it is too large.

Why in memory: the datasets mnist_core is for (MNIST-style images, tens of thousands of
examples) fit many times over, and held in memory they keep everything the arrays have —
the training set held on the device and batches gathered inside the compiled loop, the
seeded per-epoch order that makes a resumed run exact, evaluation of every example
once. A dataset is read to its end once (its cardinality may be unknown); an endless one
(``repeat()``) is refused in one line.

A dataset with more than :data:`MAX_BYTES` of images is streamed instead: one pass reads
its labels (and weights) only, to count its examples and classes, and training then runs
through the tf.data pipeline, each epoch one pass of the dataset in its own order
(:func:`mnist_core.data.pipeline.streamed_train_dataset`). Its first images are kept as a
sample, from which the pixels' scale and shape are read.

Elements are ``(image, label)``, ``(image, label, sample_weight)`` or TFDS' dicts
(``{"image": ..., "label": ...}``), batched or not.
"""

from __future__ import annotations

import dataclasses
import os
from typing import List, Optional

import numpy as np

from mnist_core.errors import DataError

# Read a dataset into memory up to this many bytes of images, each split on its own; a larger
# one is streamed. $MNIST_CORE_MAX_DATA_BYTES changes it. 4 GiB is 5 million 28x28 images, or 1.4 million 32x32 RGB ones.
MAX_BYTES = 4 << 30
ENV_MAX_BYTES = "MNIST_CORE_MAX_DATA_BYTES"


def is_dataset(value) -> bool:
    """Whether ``value`` is a ``tf.data.Dataset`` (without importing TensorFlow for arrays)."""
    if value is None or isinstance(value, (np.ndarray, list, tuple, dict)):
        return False
    import tensorflow as tf

    return isinstance(value, tf.data.Dataset)


def _max_bytes() -> int:
    try:
        return int(os.environ.get(ENV_MAX_BYTES, MAX_BYTES))
    except ValueError:
        return MAX_BYTES


def _parts(spec, where: str):
    """``(image, label, weight)`` specs of an element (weight may be ``None``) and how to
    take them from an element."""
    if isinstance(spec, dict):
        if "image" not in spec or "label" not in spec:
            raise DataError(f"{where}: its elements are dicts with keys {sorted(spec)}; expected 'image' and 'label' "
                            "(as TFDS gives them) or (image, label) tuples (as_supervised=True)")
        weight_key = next((k for k in ("sample_weight", "weight") if k in spec), None)
        return (spec["image"], spec["label"], spec[weight_key] if weight_key else None), \
            lambda e: (e["image"], e["label"], e[weight_key] if weight_key else None)
    if isinstance(spec, tuple) and len(spec) in (2, 3):
        return (*spec, None) if len(spec) == 2 else spec, lambda e: (*e, None) if len(e) == 2 else tuple(e)
    raise DataError(f"{where}: its elements are {type(spec).__name__}s; expected (image, label) or "
                    "(image, label, sample_weight) tuples")


def _batched(image_spec, label_spec) -> bool:
    """Whether elements are batches: a sparse label batch is rank 1, a one-hot one rank 2;
    a single one-hot label (rank 1) is told from a batch by the images' leading size."""
    rank = label_spec.shape.rank
    if rank == 0:
        return False
    if rank is None or rank >= 2:
        return True
    first = label_spec.shape[0]
    return first is None or (image_spec.shape.rank and image_spec.shape[0] == first and image_spec.shape.rank >= 3)


# Images kept from a streamed dataset: its pixels' scale and shape are read from them.
SAMPLE = 1024


@dataclasses.dataclass
class Read:
    """A dataset as :func:`read` gives it.

    Attributes:
        images: Every image, in order; for a streamed dataset, its first :data:`SAMPLE`.
        labels: Every label (class indices, or one-hot rows as the dataset holds them).
        weights: Every example's weight, or ``None``.
        stream: ``None`` (all in memory), or the dataset as ``(image, class index)``
            elements, one example each, to train from.
        classes: A streamed dataset's one-hot width (its class count), else ``None``.
    """

    images: np.ndarray
    labels: np.ndarray
    weights: Optional[np.ndarray]
    stream: object = None
    classes: Optional[int] = None


def read(dataset, where: str) -> Read:
    """Every element of ``dataset`` in memory, in order; or, for a dataset with more than
    :data:`MAX_BYTES` of images, its labels, weights and first images, and the stream.

    Raises:
        DataError: an endless or empty dataset, or elements of another form.
    """
    import tensorflow as tf

    cardinality = int(dataset.cardinality())
    if cardinality == int(tf.data.INFINITE_CARDINALITY):
        raise DataError(f"{where} is endless (repeat()): mnist_core makes the epochs itself; pass the dataset "
                        "without repeat()")
    specs, take = _parts(dataset.element_spec, where)
    batched = _batched(specs[0], specs[1])
    try:
        return Read(*_read_all(dataset if batched else dataset.batch(1024), take, where))
    except _TooLarge:
        examples = dataset.unbatch() if batched else dataset
        return _stream(examples, take, _parts(examples.element_spec, where)[0])


class _TooLarge(Exception):
    pass


def _stream(examples, take, specs) -> Read:
    """A dataset too large for memory: one pass reads its labels and weights; its first
    images are kept."""
    import tensorflow as tf

    one_hot = specs[1].shape.rank == 1
    weighted = specs[2] is not None

    def whole(function):
        # tf.data hands a tuple element to a map function as separate arguments, a dict as one.
        return tf.autograph.experimental.do_not_convert(
            lambda *parts: function(parts if len(parts) > 1 else parts[0]))

    @whole
    def pair(element):
        image, target, _ = take(element)
        return image, tf.argmax(target, axis=-1) if one_hot else tf.cast(target, tf.int64)

    @whole
    def targets(element):
        _, label, weight = take(element)
        label = tf.argmax(label, axis=-1) if one_hot else tf.cast(label, tf.int64)
        return (label, tf.reshape(tf.cast(weight, tf.float32), [])) if weighted else (label,)

    labels, weights = [], []
    for values in examples.map(targets).batch(8192).as_numpy_iterator():
        labels.append(values[0])
        if weighted:
            weights.append(values[1])
    stream = examples.map(pair)
    sample = next(stream.take(SAMPLE).batch(SAMPLE).as_numpy_iterator())[0]
    return Read(sample, np.concatenate(labels), np.concatenate(weights) if weighted else None, stream,
                int(specs[1].shape[0]) if one_hot else None)


def _read_all(dataset, take, where: str):
    limit = _max_bytes()
    images: List[np.ndarray] = []
    labels: List[np.ndarray] = []
    weights: List[np.ndarray] = []
    size = 0
    for element in dataset.as_numpy_iterator():
        image, label, weight = take(element)
        images.append(np.asarray(image))
        labels.append(np.asarray(label))
        if weight is not None:
            weights.append(np.asarray(weight).reshape(len(images[-1]), -1)[:, 0])
        size += images[-1].nbytes
        if size > limit:
            raise _TooLarge()
    if not images:
        raise DataError(f"{where} is empty")
    return np.concatenate(images), np.concatenate(labels), np.concatenate(weights) if weights else None


def read_images(dataset, where: str) -> np.ndarray:
    """A dataset of images alone (no labels: what ``fit(x)`` takes for a GAN or a VAE),
    batched or not, read into memory.

    Raises:
        DataError: an endless dataset, elements that are not images, or more than
            :data:`MAX_BYTES` of them (images alone are not streamed).
    """
    import tensorflow as tf

    if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise DataError(f"{where} is endless (repeat()); give one pass of the data: mnist_core makes the epochs")
    spec = dataset.element_spec
    rank = spec.shape.rank
    if rank is None or rank < 2 or rank > 4:
        raise DataError(f"{where}: its elements have shape {spec.shape}; expected images (H, W[, C]) or batches of them")
    batched = rank == 4 or spec.shape[0] is None or (rank == 3 and spec.shape[-1] not in (1, 2, 3, 4))
    parts, total = [], 0
    for element in dataset.as_numpy_iterator():
        part = element if batched else element[None]
        total += part.nbytes
        if total > _max_bytes():
            raise DataError(f"{where}: more than {_max_bytes() / 2**30:.1f} GiB of images without labels; images "
                            f"alone are read into memory (${ENV_MAX_BYTES} raises the limit)")
        parts.append(part)
    if not parts:
        raise DataError(f"{where} is empty")
    return np.concatenate(parts)
