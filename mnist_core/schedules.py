"""Learning-rate schedules Keras lacks: linear warm-up, one-cycle, and counting updates.

Keras 3 has ``CosineDecay`` and ``ExponentialDecay``; these add what the recipes use. All
are ``keras.optimizers.schedules.LearningRateSchedule`` objects, registered for saving, and
take the optimizer's step — the number of *updates* (see :class:`PerUpdate`).
"""

from __future__ import annotations

import math

import keras
from keras import ops

LearningRateSchedule = keras.optimizers.schedules.LearningRateSchedule


def _serializable(cls):
    return keras.saving.register_keras_serializable(package="mnist_core")(cls)


def _schedule(schedule) -> LearningRateSchedule:
    """A wrapped schedule: given as itself, or as its config when a saved model is loaded."""
    return schedule if isinstance(schedule, LearningRateSchedule) else keras.saving.deserialize_keras_object(schedule)


@_serializable
class Constant(LearningRateSchedule):
    """The same rate at every step (a schedule, so that warm-up can wrap it)."""

    def __init__(self, learning_rate: float):
        self.learning_rate = float(learning_rate)

    def __call__(self, step):
        return ops.convert_to_tensor(self.learning_rate, "float32")

    def get_config(self):
        return {"learning_rate": self.learning_rate}


@_serializable
class Warmup(LearningRateSchedule):
    """A linear ramp from ``rate/steps`` to the schedule's first rate over ``warmup_steps``,
    then ``schedule`` counted from the end of the ramp."""

    def __init__(self, schedule, warmup_steps: int):
        self.schedule = _schedule(schedule)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = float(max(self.warmup_steps, 1))
        ramp = self.schedule(0) * ops.minimum(1.0, (step + 1.0) / warm)
        after = self.schedule(ops.maximum(step - warm, 0.0))
        return ops.where(step < warm, ramp, after)

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule), "warmup_steps": self.warmup_steps}


@_serializable
class OneCycle(LearningRateSchedule):
    """Smith's one-cycle policy: up from ``max_rate/div`` to ``max_rate`` over the first
    ``rise`` fraction of the steps (linearly), then down to ``max_rate/final_div`` along a
    half cosine."""

    def __init__(self, max_rate: float, total_steps: int, rise: float = 0.3, div: float = 25.0,
                 final_div: float = 1e4):
        self.max_rate, self.total_steps = float(max_rate), int(total_steps)
        self.rise, self.div, self.final_div = float(rise), float(div), float(final_div)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        up = max(1.0, self.rise * self.total_steps)
        down = max(1.0, self.total_steps - up)
        low, high, end = self.max_rate / self.div, self.max_rate, self.max_rate / self.final_div
        rising = low + (high - low) * ops.minimum(step / up, 1.0)
        progress = ops.clip((step - up) / down, 0.0, 1.0)
        falling = end + (high - end) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < up, rising, falling)

    def get_config(self):
        return {"max_rate": self.max_rate, "total_steps": self.total_steps, "rise": self.rise, "div": self.div,
                "final_div": self.final_div}


@_serializable
class PerUpdate(LearningRateSchedule):
    """``schedule`` stepped once per optimizer *update*.

    With gradient accumulation Keras passes schedules its micro-step counter (a step per
    batch) although the weights change once per N batches; this divides it back, so that
    ``--grad-accum-steps`` changes the effective batch, not the schedule's length.
    """

    def __init__(self, schedule, every: int):
        self.schedule = _schedule(schedule)
        self.every = int(every)

    def __call__(self, step):
        return self.schedule(ops.floor_divide(ops.cast(step, "int64"), self.every))

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule), "every": self.every}
