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
    skip`` wraps it in :class:`SkipNonFinite`. Both wrappers skip an update whose gradients
    are not finite, which the loop counts (:func:`skips_updates`), so it can report them
    even when only the gradients, not the loss, were non-finite.
    """
    per_update = config.grad_accum_steps if keras_accumulation else 1
    lr = learning_rate(config, steps_per_epoch, per_update)
    options = optimizer_options(config, keras_accumulation)
    if config.epsilon is not None:
        options["epsilon"] = config.epsilon
    if config.rho is not None:
        options["rho"] = config.rho
    if config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(lr, **options)
    elif config.optimizer == "rmsprop":
        optimizer = keras.optimizers.RMSprop(lr, **options)
    elif config.optimizer == "adadelta":
        optimizer = keras.optimizers.Adadelta(lr, **options)
    else:
        optimizer = keras.optimizers.SGD(lr, momentum=config.momentum, **options)
    if config.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
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
class SkipNonFinite(keras.optimizers.LossScaleOptimizer):
    """Skips every update whose gradients are not finite; otherwise exactly the inner optimizer.

    Built on Keras' ``LossScaleOptimizer`` for its distribution-aware "apply only if every
    replica's gradients are finite" logic, with the loss scale pinned at 1.0: multiplying
    and dividing by 1 is exact, so finite steps are bit-for-bit those of the inner
    optimizer, and a NaN/Inf step leaves weights and optimizer slots untouched. It has
    exactly ``LossScaleOptimizer``'s variables, and a model compiled with it saves it as a
    ``LossScaleOptimizer`` (:func:`native_twin`), so plain Keras loads that model.
    """

    def __init__(self, inner_optimizer, **kwargs):
        kwargs.setdefault("initial_scale", 1.0)
        super().__init__(inner_optimizer, **kwargs)

    def _stateful_handle_finite_grads(self, grads, trainable_variables):
        self.inner_optimizer.apply(grads, trainable_variables=trainable_variables)

    def _stateful_handle_non_finite_grads(self):
        pass  # no scale to lower: the update is skipped, nothing else


def skips_updates(optimizer) -> bool:
    """Whether ``optimizer`` skips updates with non-finite gradients (loss scaling, ``--on-nonfinite skip``).

    Such an optimizer's ``iterations`` (its inner optimizer's) advance only for the updates
    it applies, so the loop counts the skipped ones as the steps it ran minus that advance:
    no counter of mnist_core's own lives in the optimizer, and a model saved with it is
    loadable by plain Keras.
    """
    return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


def native_twin(optimizer):
    """The plain-Keras optimizer that a model compiled with ``optimizer`` records when saved.

    Called when the model is saved (by a user's ``model.save()``, ``ModelCheckpoint``...), so
    that the saved model loads where only Keras is installed: :class:`SkipNonFinite` is
    recorded as ``LossScaleOptimizer(..., initial_scale=1.0)`` (the same variables), and a
    learning-rate schedule of mnist_core's own (warm-up, one-cycle) as a constant Keras
    schedule at the rate it gives at that moment (a schedule, not a float, so the optimizer
    keeps the same variables and loads its state). Anything else is Keras' own already and
    recorded as it is.
    """
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        inner = native_twin(optimizer.inner_optimizer)
        if inner is optimizer.inner_optimizer and not isinstance(optimizer, SkipNonFinite):
            return optimizer
        return keras.optimizers.LossScaleOptimizer(inner, initial_scale=float(optimizer.initial_scale))
    schedule = optimizer._learning_rate if hasattr(optimizer, "_learning_rate") else None
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule) and \
            type(schedule).__module__.startswith("mnist_core"):
        config = optimizer.get_config()
        config["learning_rate"] = keras.optimizers.schedules.ExponentialDecay(
            current_learning_rate(optimizer), decay_steps=1, decay_rate=1.0, name=f"{type(schedule).__name__}_as_saved")
        return type(optimizer).from_config(config)
    return optimizer


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The learning rate the next step will use (the schedule evaluated at the current step)."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
