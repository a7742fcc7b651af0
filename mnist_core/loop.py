"""Layer 2: compiled in-graph loops that run many steps per Python call.

``train_loop(iterator, num_steps)`` takes the *distributed iterator* and the number of
steps as a *tensor*: one trace serves every epoch and every loop length (the last, shorter
loop of an epoch too), and the Python↔graph round trip is paid once per ``num_steps``
steps instead of once per step, which is where ``model.fit``'s default
(``steps_per_execution=1``) loses time on small models.
"""

from __future__ import annotations

import warnings
from typing import Callable, Dict, Optional

import tensorflow as tf

# Iterating a distributed dataset inside tf.function reads its options in graph mode, and
# TensorFlow warns about that once per trace; the options used here are fixed before
# distribution, so the warning says nothing about this code.
warnings.filterwarnings("ignore", message="To make it possible to preserve tf.data options", category=UserWarning)

SUM = tf.distribute.ReduceOp.SUM
_KEYS = ("loss", "correct", "count")


def _zeros(keys=_KEYS) -> Dict[str, tf.Tensor]:
    return {key: tf.constant(0.0, tf.float32) for key in keys}


def _accumulate(strategy, totals: Dict[str, tf.Tensor], per_replica: Dict) -> Dict[str, tf.Tensor]:
    return {key: totals[key] + strategy.reduce(SUM, per_replica[key], axis=None) for key in _KEYS}


def make_train_loop(strategy, train_step: Callable, on_trace: Optional[Callable[[], None]] = None):
    """Returns ``train_loop(iterator, num_steps) -> {"loss", "correct", "count", "nonfinite"}``.

    ``loss`` is the sum of the finite steps' global mean losses (divide by
    ``num_steps - nonfinite``); ``correct``/``count`` are summed over all replicas and
    steps; ``nonfinite`` counts steps whose loss was NaN/Inf (their update was skipped
    by a loss-scaling optimizer, or the controller stops the run).

    Args:
        strategy: The ``tf.distribute.Strategy`` whose ``run`` executes the step.
        train_step: Per-replica step from :func:`mnist_core.step.make_train_step`.
        on_trace: Called each time the loop is traced (Python side), for retrace tests.
    """

    @tf.function
    def train_loop(iterator, num_steps):
        if on_trace is not None:
            on_trace()
        totals = _zeros(_KEYS + ("nonfinite",))
        for _ in tf.range(num_steps):
            per_replica = strategy.run(train_step, args=(next(iterator),))
            loss = strategy.reduce(SUM, per_replica["loss"], axis=None)
            finite = tf.math.is_finite(loss)
            totals = {
                "loss": totals["loss"] + tf.where(finite, loss, 0.0),
                "correct": totals["correct"] + strategy.reduce(SUM, per_replica["correct"], axis=None),
                "count": totals["count"] + strategy.reduce(SUM, per_replica["count"], axis=None),
                "nonfinite": totals["nonfinite"] + tf.cast(tf.logical_not(finite), tf.float32),
            }
        return totals

    return train_loop


def make_eval_loop(strategy, eval_step: Callable, on_trace: Optional[Callable[[], None]] = None):
    """Returns ``eval_loop(distributed_dataset) -> {"loss", "correct", "count"}`` sums.

    Iterates the finite dataset to its end inside the graph, so every example is counted
    exactly once, including a final batch smaller than the replica count.
    """

    @tf.function
    def eval_loop(dataset):
        if on_trace is not None:
            on_trace()
        totals = _zeros()
        for batch in dataset:
            per_replica = strategy.run(eval_step, args=(batch,))
            totals = _accumulate(strategy, totals, per_replica)
        return totals

    return eval_loop
