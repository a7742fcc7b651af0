"""Layer 1: per-replica math of one training or evaluation step.

Nothing here knows about epochs or devices: a step sees one replica's share of a global
batch and returns that replica's contribution to sums that the loop reduces across
replicas. Loss reduction follows the tf.distribute contract:

* per-example cross-entropy from float32 logits,
* ``tf.nn.compute_average_loss(per_example, global_batch_size=G)``: divide by the *global*
  batch, so the all-reduce SUM of gradients that the optimizer performs gives the exact
  mean gradient of the undivided batch, on any replica count,
* ``tf.nn.scale_regularization_loss(sum(model.losses))``: divide the regulariser by the
  replica count, for the same reason (it is added once per replica).
"""

from __future__ import annotations

from typing import Callable, Dict

import tensorflow as tf


def per_example_loss(labels: tf.Tensor, outputs: tf.Tensor, label_smoothing: float = 0.0, *,
                     from_logits: bool = True, categorical: bool = False) -> tf.Tensor:
    """Cross-entropy of the model's outputs against integer labels, one value per example, in float32.

    Computed by the very ops of Keras' losses, so the step stays ``fit``'s:

    * logits (``from_logits``): the softmax cross-entropy ops;
    * probabilities (a model ending in ``softmax`` or ``sigmoid``): Keras'
      ``sparse_categorical_crossentropy``/``categorical_crossentropy`` with
      ``from_logits=False`` — which read a softmax's own logits where they can, and for
      ``categorical`` normalise a sigmoid's outputs to sum to one;
    * ``categorical``: one-hot targets, as ``categorical_crossentropy`` on ``to_categorical``
      labels; with ``label_smoothing`` ε the target is ``one_hot * (1 - ε) + ε / classes``,
      as Keras' ``CategoricalCrossentropy(label_smoothing=ε)``.
    """
    import keras

    # A no-op for float32 outputs: a softmax output then stays a Softmax op, whose logits
    # Keras' cross-entropy reads, exactly as under fit.
    outputs = tf.cast(outputs, tf.float32)
    if label_smoothing or categorical:
        classes = outputs.shape[-1]
        targets = tf.one_hot(labels, classes)
        if label_smoothing:
            targets = targets * (1.0 - label_smoothing) + label_smoothing / classes
        if from_logits:
            return tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=outputs)
        return keras.ops.categorical_crossentropy(targets, outputs, from_logits=False)
    if from_logits:
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=outputs)
    return keras.ops.sparse_categorical_crossentropy(labels, outputs, from_logits=False)


def regularization_loss(model) -> tf.Tensor:
    """``sum(model.losses)`` in float32 (0 for a model without regularisers)."""
    losses = model.losses
    if not losses:
        return tf.constant(0.0, tf.float32)
    return tf.add_n([tf.cast(loss, tf.float32) for loss in losses])


def _correct(labels: tf.Tensor, logits: tf.Tensor, weights=None) -> tf.Tensor:
    """Correct predictions, each counted with its example's weight (as Keras' accuracy
    metric takes ``sample_weight``)."""
    predictions = tf.argmax(logits, axis=-1, output_type=labels.dtype)
    correct = tf.cast(tf.equal(predictions, labels), tf.float32)
    return tf.reduce_sum(correct if weights is None else correct * weights)


def make_train_step(model, optimizer, global_batch_size: int, *, jit_compile: bool = False,
                    num_replicas: int = 1, label_smoothing: float = 0.0, accum_steps: int = 1,
                    from_logits: bool = True, categorical: bool = False) -> Callable:
    """Returns ``step(batch) -> {"loss", "correct", "count"[, "weight"]}`` for one replica.

    ``batch`` is ``(images, labels)`` or ``(images, labels, weights)``. ``loss`` is this
    replica's share of the global objective (its sum over replicas is the batch's mean
    cross-entropy plus the regulariser), ``correct`` and ``count`` are this replica's
    example counts. With per-example weights (sample and class weights) each example's
    cross-entropy is multiplied by its weight and the sum still divided by the global
    batch, as Keras' losses reduce a weighted batch (``sum_over_batch_size``); ``correct``
    and ``weight`` (their total weight) are then weighted, so ``correct / weight`` is Keras'
    weighted accuracy.

    Args:
        model: The Keras model (built, in the strategy's scope).
        optimizer: A built Keras optimizer; a ``LossScaleOptimizer`` scales the loss inside
            the tape and skips steps whose gradients are not finite.
        global_batch_size: Examples per step summed over all replicas.
        jit_compile: Compile with XLA. On one replica the whole step (forward, backward and
            the optimizer update) is one XLA program; on several, only forward and backward
            are, because the optimizer's cross-replica gradient all-reduce (a ``merge_call``)
            cannot run inside an XLA cluster.
        num_replicas: Replicas in sync; selects the XLA boundary above.
        label_smoothing: Smooth the targets of the training loss (see :func:`per_example_loss`).
        from_logits, categorical: What the model returns and which cross-entropy
            (:func:`per_example_loss`).
        accum_steps: Gradient accumulation: each step's batch holds ``accum_steps``
            micro-batches of ``global_batch_size``; their gradients are computed one after
            the other (one micro-batch's activations in memory at a time), summed, and
            applied once — the mean gradient of the whole batch, as Keras' optimizer
            ``gradient_accumulation_steps`` computes it, but with one cross-replica
            all-reduce per update and no condition around it (Keras' own puts the
            all-reduce inside a ``cond``, which ``tf.distribute`` cannot run).
    """
    # The objective of one step is the mean over all accum_steps * global_batch_size
    # examples: each micro-batch's share is divided by the whole, the regulariser by the
    # micro-batches (it is added once per micro-batch) and by the replicas.
    examples = global_batch_size * accum_steps

    def micro_step(images, labels, weights=None):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            per_example = per_example_loss(labels, logits, label_smoothing, from_logits=from_logits,
                                           categorical=categorical)
            if weights is not None:
                per_example = per_example * weights
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=examples)
            if model.losses:
                regulariser = tf.nn.scale_regularization_loss(regularization_loss(model))
                loss += regulariser / accum_steps if accum_steps > 1 else regulariser
            # Identity for plain optimizers; the dynamic loss scale for LossScaleOptimizer.
            scaled_loss = optimizer.scale_loss(loss)
        variables = model.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        return loss, _correct(labels, logits, weights), gradients

    def forward_backward(images, labels, weights=None):
        if accum_steps == 1:
            return micro_step(images, labels, weights)
        total_loss = total_correct = total = None
        parts = zip(tf.split(images, accum_steps), tf.split(labels, accum_steps),
                    tf.split(weights, accum_steps) if weights is not None else [None] * accum_steps)
        for part_images, part_labels, part_weights in parts:
            loss, correct, gradients = micro_step(part_images, part_labels, part_weights)
            if total is None:
                total_loss, total_correct, total = loss, correct, list(gradients)
            else:
                total_loss, total_correct = total_loss + loss, total_correct + correct
                total = [None if a is None else a + b for a, b in zip(total, gradients)]
        return total_loss, total_correct, total

    def apply(gradients):
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))

    def step(images, labels, weights=None):
        loss, correct, gradients = forward_backward(images, labels, weights)
        apply(gradients)
        return loss, correct

    if jit_compile and num_replicas == 1:
        step = tf.function(step, jit_compile=True, reduce_retracing=True, autograph=False)
    elif jit_compile:
        compiled = tf.function(forward_backward, jit_compile=True, reduce_retracing=True, autograph=False)

        def step(images, labels, weights=None):
            loss, correct, gradients = compiled(images, labels, weights)
            apply(gradients)
            return loss, correct

    def train_step(batch) -> Dict[str, tf.Tensor]:
        images, labels, *weights = batch
        weights = weights[0] if weights else None
        loss, correct = step(images, labels, weights)
        out = {"loss": loss, "correct": correct, "count": tf.cast(tf.shape(labels)[0], tf.float32)}
        if weights is not None:  # without weights, the loop counts each example once
            out["weight"] = tf.reduce_sum(weights)
        return out

    return train_step


def make_eval_step(model, *, jit_compile: bool = False, from_logits: bool = True,
                   categorical: bool = False) -> Callable:
    """Returns ``step(batch) -> {"loss", "correct", "count"}`` sums for one replica.

    ``loss`` is the *sum* over this replica's examples of cross-entropy plus the
    regulariser (as Keras' ``evaluate`` reports it), so dividing the global sum by the
    global count weights every example once, whatever the split. A replica may receive
    an empty final batch; it then contributes zeros. ``jit_compile`` compiles the step
    with XLA (no cross-replica communication happens inside it, on any strategy).
    """

    def eval_step(batch) -> Dict[str, tf.Tensor]:
        return sums(*batch)

    def sums(images, labels) -> Dict[str, tf.Tensor]:
        logits = model(images, training=False)
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        loss_sum = tf.reduce_sum(per_example_loss(labels, logits, from_logits=from_logits, categorical=categorical))
        if model.losses:
            # Regularisation is per batch in Keras' evaluate: weight it by the batch size.
            # tf.where, not multiplication: an empty batch may give NaN regularisers.
            loss_sum += tf.where(count > 0, regularization_loss(model) * count, 0.0)
        return {"loss": loss_sum, "correct": _correct(labels, logits), "count": count}

    if jit_compile:
        sums = tf.function(sums, jit_compile=True, reduce_retracing=True, autograph=False)
    return eval_step
