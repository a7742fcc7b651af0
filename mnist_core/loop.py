"""Layer 2: compiled in-graph loops that run many steps per Python call.

``train_loop(iterator, num_steps)`` takes the *distributed iterator* and the number of
steps as a *tensor*: one trace serves every epoch and every loop length (the last, shorter
loop of an epoch too), and the Python↔graph round trip is paid once per ``num_steps``
steps instead of once per step, which is where ``model.fit``'s default
(``steps_per_execution=1``) loses time on small models.

Two kinds of step run in the same loops:

* mnist_core's explicit step (:func:`mnist_core.step.make_train_step`), which returns sums
  (``loss``, ``correct``, ``count``) that the loop reduces across replicas and steps;
* a Keras-protocol step (a model's own ``train_step``/``test_step``), which returns a dict
  of logs, usually running metric values; the loop keeps the last step's logs, reduced
  across replicas as ``model.fit`` reduces them (the mean), and counts the examples.

Both loops also report, once per call, what the controller needs to keep a run from being
lost to a non-finite number: how many updates a skipping optimizer refused
(``skipped``) and whether every weight is still finite (``weights_finite``).
"""

from __future__ import annotations

import warnings
from typing import Callable, Dict, Optional, Sequence

import tensorflow as tf

# Iterating a distributed dataset inside tf.function reads its options in graph mode, and
# TensorFlow warns about that once per trace; the options used here are fixed before
# distribution, so the warning says nothing about this code.
warnings.filterwarnings("ignore", message="To make it possible to preserve tf.data options", category=UserWarning)

# AutoGraph converts only the loops' own ``for`` statements. Everything they call is plain
# tensor code, left unconverted as Keras' trainer leaves its step (``do_not_convert``):
# the steps and these helpers. Converting them (parsing and rewriting each function's
# source) cost about a second of every run's start on 2 CPU cores.
_plain = tf.autograph.experimental.do_not_convert

SUM = tf.distribute.ReduceOp.SUM
MEAN = tf.distribute.ReduceOp.MEAN
_KEYS = ("loss", "correct", "count", "weight")


@_plain
def _zeros(keys=_KEYS) -> Dict[str, tf.Tensor]:
    return {key: tf.constant(0.0, tf.float32) for key in keys}


@_plain
def _accumulate(strategy, totals: Dict[str, tf.Tensor], per_replica: Dict) -> Dict[str, tf.Tensor]:
    sums = {key: strategy.reduce(SUM, per_replica[key], axis=None) for key in _KEYS if key in per_replica}
    return {key: totals[key] + _weight_or_count(sums, key) for key in _KEYS}


@_plain
def _weight_or_count(sums: Dict, key: str):
    # A step that does not weigh its examples reports no "weight": each example weighs 1,
    # and the count already reduced across replicas stands for it (no second all-reduce).
    return sums[key] if key in sums else sums["count"]


@_plain
def _read(variable) -> tf.Tensor:
    # Keras variables wrap a tf.Variable (a distributed one under a strategy).
    return tf.convert_to_tensor(getattr(variable, "value", variable))


@_plain
def _all_finite(variables: Sequence) -> tf.Tensor:
    """True if every element of every variable is finite (one pass, once per loop call)."""
    if not variables:
        return tf.constant(True)
    return tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(_read(v))) for v in variables]))


@_plain
def _counter(variable) -> tf.Tensor:
    if variable is None:
        return tf.constant(0.0, tf.float32)
    return tf.cast(_read(variable), tf.float32)


@_plain
def _add_step(strategy, totals: Dict[str, tf.Tensor], per_replica: Dict) -> Dict[str, tf.Tensor]:
    """``totals`` plus one step of mnist_core's explicit step: its loss only if finite (a
    non-finite one is counted in ``nonfinite``), its correct predictions and examples."""
    sums = {key: strategy.reduce(SUM, per_replica[key], axis=None) for key in _KEYS if key in per_replica}
    loss = sums["loss"]
    finite = tf.math.is_finite(loss)
    return {
        "loss": totals["loss"] + tf.where(finite, loss, 0.0),
        "correct": totals["correct"] + sums["correct"],
        "count": totals["count"] + sums["count"],
        "weight": totals["weight"] + _weight_or_count(sums, "weight"),
        "nonfinite": totals["nonfinite"] + tf.cast(tf.logical_not(finite), tf.float32),
    }


@_plain
def _health(totals: Dict[str, tf.Tensor], updates_before, update_counter, num_steps,
            variables) -> Dict[str, tf.Tensor]:
    """Adds ``skipped`` (steps whose update the optimizer did not apply) and ``weights_finite``."""
    totals = dict(totals)
    if update_counter is None:
        totals["skipped"] = tf.constant(0.0, tf.float32)
    else:
        totals["skipped"] = tf.cast(num_steps, tf.float32) - (_counter(update_counter) - updates_before)
    totals["weights_finite"] = tf.cast(_all_finite(variables), tf.float32)
    return totals


def make_train_loop(strategy, train_step: Callable, on_trace: Optional[Callable[[], None]] = None, *,
                    variables: Sequence = (), update_counter=None):
    """Returns ``train_loop(iterator, num_steps)`` for mnist_core's explicit step.

    The result holds ``loss``: the sum of the finite steps' global mean losses (divide by
    ``num_steps - nonfinite``); ``correct``/``count`` summed over all replicas and steps;
    ``nonfinite``: steps whose loss was NaN/Inf; ``skipped``: updates the optimizer
    skipped because a gradient was not finite (0 for an optimizer that never skips);
    ``weights_finite``: 1.0 if every variable in ``variables`` is finite after the call.

    Args:
        strategy: The ``tf.distribute.Strategy`` whose ``run`` executes the step.
        train_step: Per-replica step from :func:`mnist_core.step.make_train_step`.
        on_trace: Called each time the loop is traced (Python side), for retrace tests.
        variables: Checked for finiteness after the steps (the model's trainable weights).
        update_counter: For an optimizer that skips non-finite updates
            (:func:`mnist_core.optim.skips_updates`), its ``iterations``, which advance
            once per applied update: ``skipped`` is the steps run minus that advance.
            ``None`` for an optimizer that never skips.
    """

    train_step = _plain(train_step)

    @tf.function
    def train_loop(iterator, num_steps):
        if on_trace is not None:
            on_trace()
        updates_before = _counter(update_counter)
        totals = _zeros(_KEYS + ("nonfinite",))
        for _ in tf.range(num_steps):
            totals = _add_step(strategy, totals, strategy.run(train_step, args=(next(iterator),)))
        return _health(totals, updates_before, update_counter, num_steps, variables)

    return train_loop


class ResidentTrainLoop:
    """``train_loop(batches, num_steps)`` for one replica whose batches are gathered in the program.

    The input is a :class:`mnist_core.data.ResidentBatches` (the training set in variables on
    the device); each step gathers and normalises its batch inside the compiled program,
    in the same order and with the same ops as the tf.data pipeline, and runs
    mnist_core's explicit step. With ``jit_compile`` the whole call — every step, its
    batch and the sums — is one XLA program (what ``--jit-compile`` means on one replica);
    XLA compiles it once: the arrays, the epoch's batch indices and the counts keep their
    shapes from call to call.

    The result is :func:`make_train_loop`'s. A call that would run into a third epoch is
    split into calls of at most two (the program is given the batch indices of the
    current epoch and the next).
    """

    def __init__(self, strategy, train_step: Callable, *, jit_compile: bool, input_shape: Sequence[int],
                 pixels: str = "unit", on_trace: Optional[Callable[[], None]] = None, variables: Sequence = (),
                 update_counter=None):
        from mnist_core.data.pipeline import encode_labels, normalize_images

        # Named train_loop like make_train_loop's: profiles find a call by that name.
        def train_loop(images, labels, orders, offset, num_steps, *weights):
            if on_trace is not None:
                on_trace()
            updates_before = _counter(update_counter)

            def body(i, totals):
                # tf.gather, not orders[offset + i]: XLA would take a slice's start as a
                # compile-time constant and compile the program again for every call.
                batch = tf.gather(orders, offset + i)
                inputs = (normalize_images(tf.gather(images, batch), input_shape, pixels),
                          encode_labels(tf.gather(labels, batch)), *(tf.gather(w, batch) for w in weights))
                return i + 1, _add_step(strategy, totals, strategy.run(train_step, args=(inputs,)))

            _, totals = tf.while_loop(lambda i, _: i < num_steps, body,
                                      (tf.constant(0, tf.int32), _zeros(_KEYS + ("nonfinite",))))
            return _health(totals, updates_before, update_counter, num_steps, variables)

        # No AutoGraph: the loop is an explicit tf.while_loop.
        self._loop = tf.function(train_loop, jit_compile=jit_compile, autograph=False)

    def _arguments(self, batches, offset, num_steps):
        epoch = batches.position // batches.steps_per_epoch
        return (batches.images, batches.labels, batches.orders(epoch), tf.constant(offset, tf.int32),
                tf.constant(num_steps, tf.int32), *([] if batches.weights is None else [batches.weights]))

    def get_concrete_function(self, batches, num_steps_spec=None):
        """Traces the call for ``batches`` (the controller traces before training)."""
        return self._loop.get_concrete_function(*self._arguments(batches, 0, 1))

    def __call__(self, batches, num_steps) -> Dict[str, tf.Tensor]:
        remaining = int(num_steps)
        out: Dict[str, tf.Tensor] = {}
        while True:
            offset = batches.position % batches.steps_per_epoch
            steps = min(remaining, 2 * batches.steps_per_epoch - offset)
            result = self._loop(*self._arguments(batches, offset, steps))
            batches.position += steps
            remaining -= steps
            # Sums add up over the pieces; whether the weights are finite is the last piece's.
            out = {key: value if key == "weights_finite" or key not in out else out[key] + value
                   for key, value in result.items()}
            if remaining <= 0:
                return out


def make_eval_loop(strategy, eval_step: Callable, on_trace: Optional[Callable[[], None]] = None):
    """Returns ``eval_loop(distributed_dataset) -> {"loss", "correct", "count"}`` sums.

    Iterates the finite dataset to its end inside the graph, so every example is counted
    exactly once, including a final batch smaller than the replica count.
    """

    eval_step = _plain(eval_step)

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


# --------------------------------------------------------------------------- Keras protocol


def _reduce_logs(strategy, per_replica_logs):
    """Per-replica logs → one value each: the mean over replicas, as ``model.fit`` reports.

    Metric results are running values per replica; with equal shares of each batch their
    mean is the global value. Non-float logs (counts, flags) take the first replica's.
    """

    def reduce(value):
        if isinstance(value, tf.Tensor) and not value.dtype.is_floating:
            return strategy.experimental_local_results(value)[0]
        if not isinstance(value, (tf.Tensor, tf.Variable)) and not hasattr(value, "values"):
            return value
        dtype = strategy.experimental_local_results(value)[0].dtype
        if not dtype.is_floating:
            return strategy.experimental_local_results(value)[0]
        return strategy.reduce(MEAN, value, axis=None)

    return tf.nest.map_structure(reduce, per_replica_logs)


def _examples(batch) -> tf.Tensor:
    """Examples in this replica's share of a batch ``(x, y, ...)`` (0 for an empty share)."""
    first = tf.nest.flatten(batch)[0]
    return tf.cast(tf.shape(first)[0], tf.float32)


def make_keras_step(strategy, step: Callable):
    """One distributed Keras-protocol step: ``data -> (logs, examples)``, both reduced.

    ``step`` runs per replica (``model.train_step``, ``model.test_step``, or mnist_core's
    transcription of Keras' ``train_step``). As in Keras' own trainer, the step is its own
    ``tf.function`` without AutoGraph: it is traced once and called from every iteration
    of the loop, and user code runs exactly as ``model.fit`` runs it.
    """

    @tf.autograph.experimental.do_not_convert
    def replica_step(data):
        return step(data), _examples(data)

    @tf.function(reduce_retracing=True, autograph=False)
    def one_step(data):
        logs, examples = strategy.run(replica_step, args=(data,))
        return _reduce_logs(strategy, logs), strategy.reduce(SUM, examples, axis=None)

    return one_step


def _zeros_like_structure(structure):
    return tf.nest.map_structure(lambda spec: tf.zeros(spec.shape, spec.dtype), structure)


def output_structure(one_step, element_spec):
    """The (logs, examples) structure of ``one_step`` for batches of ``element_spec``.

    Tracing here, before training, is also where a user's ``train_step``/``test_step``
    that cannot become a graph fails: the controller turns that into one line.
    """
    concrete = one_step.get_concrete_function(element_spec)
    return tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), concrete.structured_outputs)


def make_keras_train_loop(strategy, one_step: Callable, on_trace: Optional[Callable[[], None]] = None,
                          *, variables: Sequence = (), update_counter=None):
    """Returns ``train_loop(iterator, num_steps) -> {"logs", "count", "skipped", "weights_finite"}``.

    ``logs`` are the last step's logs (running metrics, as ``model.fit`` hands them to
    callbacks after a ``steps_per_execution`` call); ``count`` the examples trained on.

    Args:
        strategy: The distribution strategy.
        one_step: From :func:`make_keras_step` over the model's ``train_step``.
        on_trace, variables, update_counter: As for :func:`make_train_loop`.
    """

    @tf.function
    def train_loop(iterator, num_steps):
        if on_trace is not None:
            on_trace()
        logs_spec, _ = output_structure(one_step, iterator.element_spec)
        updates_before = _counter(update_counter)
        logs = _zeros_like_structure(logs_spec)
        count = tf.constant(0.0, tf.float32)
        for _ in tf.range(num_steps):
            logs, examples = one_step(next(iterator))
            count += examples
        return _health({"logs": logs, "count": count}, updates_before, update_counter, num_steps, variables)

    return train_loop


def make_keras_eval_loop(strategy, one_step: Callable, on_trace: Optional[Callable[[], None]] = None):
    """Returns ``eval_loop(distributed_dataset) -> {"logs", "count"}`` over the whole dataset."""

    @tf.function
    def eval_loop(dataset):
        if on_trace is not None:
            on_trace()
        logs_spec, _ = output_structure(one_step, dataset.element_spec)
        logs = _zeros_like_structure(logs_spec)
        count = tf.constant(0.0, tf.float32)
        for batch in dataset:
            logs, examples = one_step(batch)
            count += examples
        return {"logs": logs, "count": count}

    return eval_loop
