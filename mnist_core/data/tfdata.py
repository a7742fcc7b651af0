"""A ``tf.data.Dataset`` as ``data=``: read once into memory, then trained like arrays.

Why in memory: the datasets mnist_core is for (MNIST-style images, tens of thousands of
examples) fit many times over, and held in memory they keep everything the arrays have —
the training set held on the device and batches gathered inside the compiled loop, the
seeded per-epoch order that makes a resumed run exact, evaluation of every example
once. A dataset is read to its end once (its cardinality may be unknown); an endless one
(``repeat()``) or one larger than :data:`MAX_BYTES` is refused in one line.

Elements are ``(image, label)``, ``(image, label, sample_weight)`` or TFDS' dicts
(``{"image": ..., "label": ...}``), batched or not.
"""

from __future__ import annotations

import os
from typing import List, Optional

import numpy as np

from mnist_core.errors import DataError

# Read into memory up to this many bytes of images (all splits); $MNIST_CORE_MAX_DATA_BYTES
# changes it. 4 GiB is 5 million 28x28 images, or 1.4 million 32x32 RGB ones.
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


def read(dataset, where: str):
    """``(images, labels, weights)`` numpy arrays of every element of ``dataset``, in order.

    Raises:
        DataError: an endless dataset, elements of another form, or more than
            :data:`MAX_BYTES` of images.
    """
    import tensorflow as tf

    cardinality = int(dataset.cardinality())
    if cardinality == int(tf.data.INFINITE_CARDINALITY):
        raise DataError(f"{where} is endless (repeat()): mnist_core makes the epochs itself; pass the dataset "
                        "without repeat()")
    specs, take = _parts(dataset.element_spec, where)
    if not _batched(specs[0], specs[1]):
        dataset = dataset.batch(1024)  # read in batches: one Python step per example is slow
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
            raise DataError(f"{where} holds more than {limit / 2**30:.1f} GiB of images: mnist_core reads a "
                            f"dataset into memory, and this one does not fit; raise ${ENV_MAX_BYTES} if the "
                            "machine has the memory")
    if not images:
        raise DataError(f"{where} is empty")
    return (np.concatenate(images), np.concatenate(labels),
            np.concatenate(weights) if weights else None)
