"""Optimizers and learning-rate schedules, built from the config."""

from __future__ import annotations

import keras

from mnist_core.config import TrainConfig


# Schedules laid over the run's total number of updates: another --epochs reshapes them.
RUN_LENGTH_SCHEDULES = ("cosine", "onecycle")


def learning_rate(config: TrainConfig, steps_per_epoch: int, per_update: int = 1):
    """Returns a float (constant) or a Keras schedule stepping once per optimizer update.

    ``cosine`` decays to 0 over the run's updates; ``exponential`` multiplies the rate by
    ``lr_decay_rate`` once per epoch (smoothly in between); ``onecycle`` rises to the rate
    over the first 30% of the updates (or ``--warmup-epochs``) and anneals to 1e-4 of it;
    ``--warmup-epochs`` ramps linearly before the others. With gradient accumulation the
    schedules count updates, not batches (:class:`mnist_core.schedules.PerUpdate`).
    """
    from mnist_core import schedules

    lr = config.learning_rate
    # steps_per_epoch are updates; with Keras' own accumulation (per_update > 1, the Keras-
    # protocol path) the optimizer counts batches, and the schedule divides them back.
    updates_per_epoch = max(1, steps_per_epoch // per_update)
    total = max(1, config.epochs * updates_per_epoch)
    warmup = int(round(config.warmup_epochs * updates_per_epoch))
    if config.lr_schedule == "onecycle":
        rise = warmup / total if warmup else 0.3
        schedule = schedules.OneCycle(lr, total, rise=rise)
        warmup = 0  # the rising phase is the warm-up
    elif config.lr_schedule == "cosine":
        schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, total - warmup))
    elif config.lr_schedule == "exponential":
        schedule = keras.optimizers.schedules.ExponentialDecay(
            lr, decay_steps=updates_per_epoch, decay_rate=config.lr_decay_rate
        )
    elif warmup:
        schedule = schedules.Constant(lr)
    else:
        return lr
    if warmup:
        schedule = schedules.Warmup(schedule, warmup)
    if per_update > 1:
        schedule = schedules.PerUpdate(schedule, per_update)
    return schedule


def make_optimizer(config: TrainConfig, steps_per_epoch: int,
                   keras_accumulation: bool = False) -> keras.optimizers.Optimizer:
    """Builds the optimizer named by ``config.optimizer`` (unbuilt: call ``build`` in scope).

    Mixed float16 wraps it in a Keras 3 ``LossScaleOptimizer`` (dynamic loss scaling);
    bfloat16 has float32's exponent range and needs no loss scaling. ``keras_accumulation``:
    the optimizer accumulates ``--grad-accum-steps`` batches itself (Keras' own, for models
    whose ``train_step`` applies gradients; ``steps_per_epoch`` then counts batches);
    mnist_core's explicit step accumulates in the step instead. ``--on-nonfinite
    skip`` wraps it in :class:`SkipNonFinite`. Both wrappers count the updates they skip
    (``skipped_updates``), so the loop can report them even when only the gradients, not
    the loss, were non-finite.
    """
    per_update = config.grad_accum_steps if keras_accumulation else 1
    lr = learning_rate(config, steps_per_epoch, per_update)
    options = optimizer_options(config, keras_accumulation)
    if config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(lr, **options)
    elif config.optimizer == "rmsprop":
        optimizer = keras.optimizers.RMSprop(lr, **options)
    elif config.optimizer == "adadelta":
        optimizer = keras.optimizers.Adadelta(lr, **options)
    else:
        optimizer = keras.optimizers.SGD(lr, momentum=config.momentum, **options)
    if config.precision == "mixed_float16":
        optimizer = CountingLossScaleOptimizer(optimizer)
    elif config.on_nonfinite == "skip":
        optimizer = SkipNonFinite(optimizer)
    return optimizer


def optimizer_options(config: TrainConfig, keras_accumulation: bool = False) -> dict:
    """The Keras optimizer arguments of the training techniques: Keras implements them all.

    Weight decay is Keras' decoupled one (AdamW-style for every optimizer), clipping is
    applied to the all-reduced gradients, the EMA is the optimizer's own, and so is gradient
    accumulation where ``keras_accumulation`` asks for it. The ``LossScaleOptimizer`` wrappers take none of these: they belong
    to the inner optimizer.
    """
    options = {}
    if config.weight_decay:
        options["weight_decay"] = config.weight_decay
    if config.clipnorm:
        options["clipnorm"] = config.clipnorm
    if config.global_clipnorm:
        options["global_clipnorm"] = config.global_clipnorm
    if config.ema:
        options.update(use_ema=True, ema_momentum=config.ema)
    if config.grad_accum_steps > 1 and keras_accumulation:
        options["gradient_accumulation_steps"] = config.grad_accum_steps
    return options


def inner(optimizer):
    """The optimizer that does the update (inside a loss-scaling wrapper, if any)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


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
