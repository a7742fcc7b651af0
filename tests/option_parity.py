"""Each training option in mnist_core and in ``model.fit`` with the same Keras setting.

Run as a script (2 replicas need the CPU split before TensorFlow starts)::

    python tests/option_parity.py REPLICAS OPTION[,OPTION...] [UPDATE[,UPDATE]]

For each option (``name=value`` of a TrainConfig field) it trains a small dense model for
12 steps of batch 64 with mnist_core (loop calls of 5, 5 and 2 steps) and with
``model.fit`` over the very batches mnist_core's pipeline produced, from the same weights,
the optimizer built by the same code (``optim.make_optimizer``: Keras' weight decay,
clipping, EMA, gradient accumulation, schedules) and the loss Keras would use
(``CategoricalCrossentropy(label_smoothing)`` on one-hot labels for smoothing). It prints
one JSON line per option: the largest weight difference from fit, and from mnist_core
without the option (which must not be zero: an option silently ignored shows there).
UPDATE is mnist_core's ``--update`` (default ``keras``, fit's own update: bit for bit);
with ``keras,fused`` each option is trained both ways against one ``fit`` run.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from conftest import learnable_digits  # noqa: E402
from mnist_core import data as data_lib, strategy as strategy_lib  # noqa: E402
from mnist_core.config import TrainConfig  # noqa: E402

BATCH, STEPS, CALLS = 64, 12, (5, 5, 2)


def _value(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(replicas, options, updates=("keras",)):
    import keras
    import tensorflow as tf

    from mnist_core import optim
    from mnist_core.program import make_program

    tf.get_logger().setLevel("ERROR")
    extra = {"strategy": "mirrored", "cpu_replicas": replicas} if replicas > 1 else {}
    # 2 epochs of 6 steps: schedules that count epochs (warm-up) have something to count.
    base = TrainConfig(model="parity_models:dense_l2", optimizer="adam", lr=0.01, batch_size=BATCH, epochs=2,
                       jit_compile="off", **extra)
    strategy_lib.configure_devices(base)
    strategy = strategy_lib.make_strategy(base) if replicas > 1 else tf.distribute.get_strategy()
    images, labels = learnable_digits(STEPS // 2 * BATCH, seed=5)
    data = data_lib.MnistData(images, labels, images[:64], labels[:64], "mnist", "generated")
    pipeline = data_lib.train_dataset(images, labels, global_batch_size=BATCH, seed=base.seed,
                                      input_shape=(28, 28, 1))
    batches = list(pipeline.take(STEPS).as_numpy_iterator())
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])

    def ours(config):
        keras.utils.set_random_seed(1)
        program = make_program(config, strategy, data.num_train)
        initial = program.model.get_weights()
        iterator = program.train_iterator(data)
        # A step is an update: with --grad-accum-steps N it takes N of fit's batches.
        updates = STEPS // config.grad_accum_steps
        done = 0
        for steps in CALLS:
            steps = min(steps, updates - done)
            if steps > 0:
                program.run_steps(iterator, steps)
                done += steps
        program.optimizer.finalize_variable_values(program.model.trainable_variables)
        return initial, program.model.get_weights()

    plains = {update: ours(base.replace(update=update))[1] for update in updates}
    for option in options:
        name, _, text = option.partition("=")
        config = base.replace(**{name: _value(text)})
        trained = {update: ours(config.replace(update=update)) for update in updates}
        initial = trained[updates[0]][0]
        # Keras' accumulation puts its all-reduce inside a cond, which fit cannot run on
        # several replicas: there the reference is fit on one.
        reference = tf.distribute.get_strategy() if config.grad_accum_steps > 1 else strategy
        with reference.scope():
            import parity_models

            model = parity_models.dense_l2()
            model.set_weights(initial)
            # fit's own accumulation: Keras' optimizer option, counting fit's batches.
            optimizer = optim.make_optimizer(config.replace(precision="float32", on_nonfinite="stop"),
                                             data.num_train // BATCH, keras_accumulation=True)
            if config.label_smoothing:
                loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.label_smoothing)
                targets = keras.utils.to_categorical(y, 10)
            else:
                loss, targets = keras.losses.SparseCategoricalCrossentropy(from_logits=True), y
            model.compile(optimizer=optimizer, loss=loss, jit_compile=False)
        model.fit(x, targets, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        fit = model.get_weights()
        for update in updates:
            weights = trained[update][1]
            print(json.dumps({
                "option": option, "update": update, "replicas": replicas,
                "fit_replicas": reference.num_replicas_in_sync,
                "max_weight_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(weights, fit)),
                "diff_from_plain": max(float(np.max(np.abs(a - b))) for a, b in zip(weights, plains[update])),
                "max_update": max(float(np.max(np.abs(a - b))) for a, b in zip(weights, initial)),
            }), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2].split(","), tuple(sys.argv[3].split(",")) if len(sys.argv) > 3 else ("keras",))
