"""Optimizers and learning-rate schedules, built from the config."""

from __future__ import annotations

import keras

from mnist_core.config import TrainConfig


def learning_rate(config: TrainConfig, steps_per_epoch: int):
    """Returns a float (constant) or a Keras schedule stepping once per training step.

    ``cosine`` decays to 0 over all ``epochs * steps_per_epoch`` steps; ``exponential``
    multiplies the rate by ``lr_decay_rate`` once per epoch (smoothly in between).
    """
    lr = config.learning_rate
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=config.epochs * steps_per_epoch)
    if config.lr_schedule == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            lr, decay_steps=steps_per_epoch, decay_rate=config.lr_decay_rate
        )
    return lr


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Builds the optimizer named by ``config.optimizer`` (unbuilt: call ``build`` in scope).

    Mixed float16 wraps it in a Keras 3 ``LossScaleOptimizer`` (dynamic loss scaling);
    bfloat16 has float32's exponent range and needs no loss scaling. ``--on-nonfinite
    skip`` wraps it in :class:`SkipNonFinite`. Both wrappers count the updates they skip
    (``skipped_updates``), so the loop can report them even when only the gradients, not
    the loss, were non-finite.
    """
    lr = learning_rate(config, steps_per_epoch)
    if config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(lr)
    elif config.optimizer == "rmsprop":
        optimizer = keras.optimizers.RMSprop(lr)
    elif config.optimizer == "adadelta":
        optimizer = keras.optimizers.Adadelta(lr)
    else:
        optimizer = keras.optimizers.SGD(lr, momentum=config.momentum)
    if config.precision == "mixed_float16":
        optimizer = CountingLossScaleOptimizer(optimizer)
    elif config.on_nonfinite == "skip":
        optimizer = SkipNonFinite(optimizer)
    return optimizer


@keras.saving.register_keras_serializable(package="mnist_core")
class CountingLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras 3's ``LossScaleOptimizer``, plus a count of the updates it skipped.

    A step whose gradients are not finite (on any replica) is skipped and the scale
    halved, exactly as in Keras; ``skipped_updates`` counts those steps. The loop reads
    it before and after a call: a finite loss with overflowing gradients is then still
    reported, which a check of the loss alone would miss.
    """

    def build(self, var_list):
        super().build(var_list)
        self.skipped_updates = self.add_variable(
            shape=(), dtype="int", initializer=keras.initializers.Zeros(), aggregation="none",
            name="skipped_updates",
        )

    def _stateful_handle_non_finite_grads(self):
        super()._stateful_handle_non_finite_grads()
        self.skipped_updates.assign_add(1)


@keras.saving.register_keras_serializable(package="mnist_core")
class SkipNonFinite(CountingLossScaleOptimizer):
    """Skips every update whose gradients are not finite; otherwise exactly the inner optimizer.

    Built on Keras' ``LossScaleOptimizer`` for its distribution-aware "apply only if every
    replica's gradients are finite" logic, with the loss scale pinned at 1.0: multiplying
    and dividing by 1 is exact, so finite steps are bit-for-bit those of the inner
    optimizer, and a NaN/Inf step leaves weights and optimizer slots untouched.
    """

    def __init__(self, inner_optimizer, **kwargs):
        kwargs.setdefault("initial_scale", 1.0)
        super().__init__(inner_optimizer, **kwargs)

    def _stateful_handle_finite_grads(self, grads, trainable_variables):
        self.inner_optimizer.apply(grads, trainable_variables=trainable_variables)

    def _stateful_handle_non_finite_grads(self):
        # No scale to lower: the update is skipped and counted, nothing else.
        self.skipped_updates.assign_add(1)


def skipped_updates(optimizer) -> "keras.Variable | None":
    """The optimizer's count of skipped updates, or ``None`` if it never skips."""
    return getattr(optimizer, "skipped_updates", None)


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The learning rate the next step will use (the schedule evaluated at the current step)."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
