"""The tf.data pipelines: endless shuffled training batches and a finite evaluation pass.

Images enter as uint8 (or float32 in [0, 1], from arrays) and are scaled and shaped per
batch (:func:`normalize_images`), the one definition of the model's input that training,
evaluation, the SavedModel's serving signature and ``mnist_core.predict`` share.
"""

from __future__ import annotations

from typing import Optional, Sequence

from mnist_core.data.dataset import NUM_CLASSES, image_shape_of


def normalize_images(images, input_shape: Sequence[int], pixels: str = "unit"):
    """uint8 ``[N, H, W]`` or ``[N, H, W, C]`` → float32 shaped ``[N, *input_shape]`` (the
    model's: ``(H, W, C)``, or flat ``(H*W*C,)``): in [0, 1] (``unit``),
    or the 0-255 values themselves (``raw``, as some tutorials feed them).

    The one definition of the model's input: the training and evaluation pipelines, the
    exported SavedModel's serving signature and ``mnist_core.predict`` all use it, so a
    model sees the same numbers wherever it runs. Float images (``data=`` arrays) are fed
    as they were given.
    """
    import tensorflow as tf

    if images.dtype == tf.float32:  # arrays given as floats (data=): fed as they are
        return tf.reshape(images, (-1, *input_shape))
    scale = 1.0 / 255.0 if pixels == "unit" else 1.0
    return tf.reshape(tf.cast(images, tf.float32) * scale, (-1, *input_shape))


def _normalizer(input_shape: Sequence[int], pixels: str = "unit", labels: str = "sparse",
                num_classes: int = NUM_CLASSES):
    import tensorflow as tf

    # Plain tensor code: AutoGraph (tf.data's default for map functions) has nothing to convert.
    @tf.autograph.experimental.do_not_convert
    def normalize(images, targets, *weights):
        # Scale on the batch, not per example: one vectorised op per batch instead of
        # one per image is what keeps the pipeline far ahead of the model.
        if labels == "none":  # images alone, as fit(x) gives a step that takes no labels
            return normalize_images(images, input_shape, pixels)
        return (normalize_images(images, input_shape, pixels), encode_labels(targets, labels, num_classes),
                *weights)

    return normalize


def encode_labels(labels, form: str = "sparse", num_classes: int = NUM_CLASSES):
    """Class indices as the loss takes them: int32 indices (``sparse``) or float32 one-hot rows
    (``none``, a step that takes images alone, is handled by the callers: no labels at all)."""
    import tensorflow as tf

    if form == "one_hot":
        return tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=tf.float32)
    return tf.cast(labels, tf.int32)


def steps_per_epoch(n: int, global_batch_size: int) -> int:
    """Full batches in ``n`` examples (the remainder is dropped); at least one.

    Raises:
        ValueError: fewer examples than one batch.
    """
    if n < global_batch_size:
        raise ValueError(f"a batch of {global_batch_size} needs at least that many examples, got {n}")
    return n // global_batch_size


def epoch_batch_indices(n: int, global_batch_size: int, seed: int, epoch):
    """The example indices of every training batch of ``epoch``: int64 ``[n // B, B]``.

    A permutation drawn with ``stateless_shuffle(seed=[seed, epoch])``, its remainder
    dropped: the one definition of the training order, shared by the tf.data pipeline
    (:func:`train_dataset`) and the batches gathered inside the compiled loop
    (:class:`ResidentBatches`), so both give every step the same examples.
    """
    import tensorflow as tf

    per_epoch = n // global_batch_size
    order = tf.random.experimental.stateless_shuffle(
        tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(int(seed), tf.int64), tf.cast(epoch, tf.int64)]))
    return tf.reshape(order[: per_epoch * global_batch_size], (per_epoch, global_batch_size))


class ResidentBatches:
    """The training set held in two non-trainable variables on the device, and where
    training is in it.

    The input of the one-replica loop (:class:`mnist_core.loop.ResidentTrainLoop`), which
    gathers each step's batch from these variables inside the compiled program, in
    :func:`epoch_batch_indices`' order: the same batches as :func:`train_dataset` from
    the same ``start_step``, with no tf.data pipeline between the steps.

    Why: on a small model the pipeline's hand-over costs a tenth of a step, and with the
    batches inside the program XLA can compile a whole loop call, steps and gathering
    together (deep_mlp 2.7 ms a step against 3.4 through the pipeline, 2 cores).

    Variables, not tensors: a tensor argument is copied into every XLA call (deep_mlp
    with XLA: 35k img/s against 43k).

    Attributes:
        position: The global step of the next batch (advanced by the loop).
    """

    def __init__(self, images, labels, *, global_batch_size: int, seed: int, start_step: int = 0, weights=None):
        import tensorflow as tf

        self.num_examples = len(labels)
        self.steps_per_epoch = steps_per_epoch(self.num_examples, global_batch_size)
        self.images = tf.Variable(images, trainable=False)
        self.labels = tf.Variable(labels, trainable=False)
        # Per-example weights (sample and class weights), gathered with their examples.
        self.weights = None if weights is None else tf.Variable(weights, trainable=False)
        self.global_batch_size, self.seed, self.position = global_batch_size, int(seed), int(start_step)
        self._orders = (None, None)  # (epoch, its indices and the next's): drawn once per epoch

    def orders(self, epoch: int):
        """Batch indices of ``epoch`` and the next, one batch a row: int64 ``[2 * steps_per_epoch, B]``."""
        import tensorflow as tf

        if self._orders[0] != epoch:
            with tf.device("/cpu:0"):  # where the tf.data pipeline draws the same permutations
                pair = tf.concat([epoch_batch_indices(self.num_examples, self.global_batch_size, self.seed, e)
                                  for e in (epoch, epoch + 1)], axis=0)
            self._orders = (epoch, tf.identity(pair))  # the identity moves them to the loop's device
        return self._orders[1]


def train_dataset(images, labels, *, global_batch_size: int, seed: int, input_shape: Sequence[int],
                  skip_batches: int = 0, augment: Optional[str] = None, pixels: str = "unit",
                  label_format: str = "sparse", num_classes: int = NUM_CLASSES, weights=None):
    """Infinite training pipeline: per-epoch permutation → gather batches → normalise → prefetch.

    Every epoch is a fresh permutation of the whole set, drawn with
    ``stateless_shuffle(seed=[seed, epoch])``, cut into ``len(images) // global_batch_size``
    full batches of indices (the remainder, different every epoch, is dropped) so every
    step has the same static batch shape: the loss is averaged over exactly
    ``global_batch_size`` examples on every replica count, and XLA compiles one program.
    Each batch is one ``tf.gather`` from the arrays, as Keras' own array adapter does.

    Why not ``shuffle(len(images))`` on examples: that buffer is refilled one example at
    a time at every epoch boundary, and the next batch waits while it fills (up to 69 ms
    measured on Fashion-MNIST, 2 cores, against a 0.4 ms median); a permutation of
    indices costs about a millisecond.

    The order is a pure function of ``seed``: ``skip_batches=k`` yields exactly what the
    un-skipped pipeline yields from its k-th batch on. Resuming uses this instead of a
    saved iterator; it starts at the right epoch's permutation and skips index batches
    only, so fast-forwarding costs milliseconds wherever the run stopped.

    With ``weights`` (float32 ``[N]``) each batch is ``(images, labels, weights)``: the
    weights travel with their examples, as ``fit``'s ``sample_weight``.
    """
    import tensorflow as tf

    n = len(labels)
    per_epoch = steps_per_epoch(n, global_batch_size)
    seed = int(seed)

    @tf.autograph.experimental.do_not_convert
    def epoch_batches(epoch):
        return tf.data.Dataset.from_tensor_slices(epoch_batch_indices(n, global_batch_size, seed, epoch))

    first_epoch, offset = divmod(skip_batches, per_epoch)
    indices = tf.data.Dataset.counter(first_epoch).flat_map(epoch_batches).skip(offset)
    # The arrays enter the pipeline once, as one element repeated (no copy per batch).
    arrays = tf.data.Dataset.from_tensors((images, labels) if weights is None else
                                          (images, labels, weights)).repeat()
    prepare = _batch_preparation(image_shape_of(images), seed=seed, input_shape=input_shape, augment=augment,
                                 pixels=pixels, label_format=label_format, num_classes=num_classes)
    # The global batch number: with --augment, each batch's random transformation is drawn
    # from [seed, batch], so a resumed run transforms its batches as an uninterrupted one.
    steps = tf.data.Dataset.counter(skip_batches)

    @tf.autograph.experimental.do_not_convert
    def gather(batch, step, arrays):
        return prepare(step, *(tf.gather(array, batch) for array in arrays))

    ds = tf.data.Dataset.zip((indices, steps, arrays)).map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _batch_preparation(image_shape, *, seed: int, input_shape: Sequence[int], augment: Optional[str],
                       pixels: str, label_format: str, num_classes: int):
    """``prepare(step, images, labels[, weights])``: a batch as the model takes it — scaled,
    shaped, augmented (``--augment``, drawn from ``[seed, step]``), targets encoded."""
    import tensorflow as tf

    normalize = _normalizer(input_shape, pixels, label_format, num_classes)
    transform = None
    if augment:
        from mnist_core import augment as augment_lib

        transform = augment_lib.make(augment)

    @tf.autograph.experimental.do_not_convert
    def prepare(step, images, labels, *weights):
        if transform is not None:
            # Augmentation works on [0, 1] images; "raw" pixels are scaled back after it.
            unit = normalize_images(images, image_shape)
            unit = transform(unit, tf.stack([tf.constant(seed, tf.int64), step]))
            if pixels == "raw" and images.dtype != tf.float32:
                unit = unit * 255.0
            if label_format == "none":
                return tf.reshape(unit, (-1, *input_shape))
            return (tf.reshape(unit, (-1, *input_shape)), encode_labels(labels, label_format, num_classes),
                    *weights)
        return normalize(images, labels, *weights)

    return prepare


def streamed_train_dataset(stream, image_shape, num_examples: int, *, global_batch_size: int, seed: int,
                           input_shape: Sequence[int], skip_batches: int = 0, augment: Optional[str] = None,
                           pixels: str = "unit", label_format: str = "sparse", num_classes: int = NUM_CLASSES,
                           weights=None):
    """Infinite training pipeline over a dataset too large to hold in memory: each epoch is
    one pass of ``stream`` (elements ``(image, label)``) in its own order, cut into
    ``num_examples // global_batch_size`` full batches (the remainder dropped), then
    prepared as :func:`train_dataset` prepares its batches.

    ``skip_batches=k`` reads and drops the first k batches: a resumed run sees what the
    uninterrupted one saw when the dataset yields the same order on every pass.
    ``weights`` (float32 ``[N]``, in the stream's order) travel with their examples.
    """
    import tensorflow as tf

    per_epoch = steps_per_epoch(num_examples, global_batch_size)
    if weights is not None:
        stream = tf.data.Dataset.zip((stream, tf.data.Dataset.from_tensor_slices(weights))).map(
            lambda element, weight: (*element, weight))
    # take(): a pass is exactly num_examples // B batches, whatever the stream's length.
    batches = stream.batch(global_batch_size, drop_remainder=True).take(per_epoch).repeat().skip(skip_batches)
    prepare = _batch_preparation(tuple(image_shape), seed=int(seed), input_shape=input_shape, augment=augment,
                                 pixels=pixels, label_format=label_format, num_classes=num_classes)
    steps = tf.data.Dataset.counter(skip_batches)
    ds = tf.data.Dataset.zip((steps, batches)).map(lambda step, batch: prepare(step, *batch),
                                                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def streamed_eval_dataset(stream, *, batch_size: int, input_shape: Sequence[int], pixels: str = "unit",
                          label_format: str = "sparse", num_classes: int = NUM_CLASSES):
    """Finite evaluation pipeline over a dataset of examples (a stream too large for memory,
    or :func:`eval_dataset`'s arrays): every example once, in its order, last batch partial."""
    import tensorflow as tf

    ds = stream.batch(batch_size, drop_remainder=False)
    ds = ds.map(_normalizer(input_shape, pixels, label_format, num_classes), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(images, labels, *, batch_size: int, input_shape: Sequence[int], pixels: str = "unit",
                 label_format: str = "sparse", num_classes: int = NUM_CLASSES):
    """Finite evaluation pipeline that yields every example exactly once (last batch partial)."""
    import tensorflow as tf

    return streamed_eval_dataset(tf.data.Dataset.from_tensor_slices((images, labels)).cache(), batch_size=batch_size,
                                 input_shape=input_shape, pixels=pixels, label_format=label_format,
                                 num_classes=num_classes)
