"""Data: MNIST-style datasets in memory, where they come from, and the tf.data pipelines.

=============  ==========================================================================
``dataset``    :class:`MnistData` (uint8 arrays in memory), class names, validation split
``formats``    IDX files and Keras' ``mnist.npz``, read and checked
``arrays``     data as the user holds it (``data=``: arrays, pairs), checked as files are
``tfdata``     a ``tf.data.Dataset`` as ``data=``, read into memory
``tables``     a CSV of images (Kaggle's ``label,pixel0,...``)
``folders``    image files in a folder per class
``sources``    ``--data-dir``, the resolution order without it, TFDS, synthetic data
``pipeline``   the training order, the tf.data pipelines, the batches held on the device
=============  ==========================================================================

Everything a caller needs is importable from here (``mnist_core.data.load``).
"""

from mnist_core.data.arrays import from_arrays, pixel_scale
from mnist_core.data.dataset import (
    FASHION_CLASSES,
    IMAGE_SIZE,
    NUM_CLASSES,
    MnistData,
    class_names,
    hold_out_test,
    image_shape_of,
    split_validation,
    with_class_weight,
)
from mnist_core.data.formats import IDX_FILES, has_idx_files, load_idx_dir, load_npz, read_idx
from mnist_core.data.pipeline import (
    ResidentBatches,
    encode_labels,
    epoch_batch_indices,
    eval_dataset,
    normalize_images,
    streamed_eval_dataset,
    streamed_train_dataset,
    train_dataset,
)
from mnist_core.data.sources import load, load_from_path, load_tfds, synthetic, tfds_prepared

__all__ = ["FASHION_CLASSES", "IDX_FILES", "IMAGE_SIZE", "NUM_CLASSES", "MnistData", "ResidentBatches", "class_names",
           "encode_labels", "epoch_batch_indices", "eval_dataset",
           "from_arrays", "has_idx_files", "hold_out_test", "image_shape_of", "with_class_weight", "load", "load_from_path", "load_idx_dir", "load_npz", "load_tfds",
           "normalize_images", "pixel_scale", "read_idx", "split_validation", "streamed_eval_dataset", "streamed_train_dataset", "synthetic", "tfds_prepared", "train_dataset"]
