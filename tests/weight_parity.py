"""Weighted examples against ``model.fit``: sample weights and class weights, same weights, same batches.

Run as a script (2 replicas need the CPU split into logical devices before TensorFlow
starts)::

    python tests/weight_parity.py REPLICAS

Both sides start from the same variables and see the batches mnist_core's pipeline produced
(with each example's weight) for 8 steps of batch 64: mnist_core trains with
``sample_weight`` given in the data and with ``class_weight`` (its own step), and a model
compiled by the user (Keras' ``train_step``) with ``sample_weight``; ``fit`` with the same
``sample_weight`` array and the same ``class_weight`` dict. Prints one JSON line per case
with the largest weight difference and the largest update.
"""

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from conftest import learnable_digits  # noqa: E402
from mnist_core import data as data_lib, strategy as strategy_lib  # noqa: E402
from mnist_core.config import TrainConfig  # noqa: E402

BATCH, STEPS = 64, 8
CLASS_WEIGHT = {0: 3.0, 1: 0.5, 7: 2.0}


def compiled_mlp():
    """A model compiled as the tutorials compile it: trained through Keras' train_step."""
    import keras

    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dropout(0.1), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def main(replicas):
    import keras
    import tensorflow as tf

    from mnist_core.program import make_program

    tf.get_logger().setLevel("ERROR")
    extra = {"strategy": "mirrored", "cpu_replicas": replicas} if replicas > 1 else {}
    base = TrainConfig(model="deep_mlp", batch_size=BATCH, steps_per_loop=3, jit_compile="off", update="keras",
                       **extra)
    strategy_lib.configure_devices(base)
    strategy = strategy_lib.make_strategy(base) if replicas > 1 else tf.distribute.get_strategy()
    images, labels = learnable_digits(STEPS * BATCH, seed=5)
    sample_weight = np.random.default_rng(3).uniform(0.1, 2.0, len(labels)).astype(np.float32)
    plain = data_lib.MnistData(images, labels, images[:64], labels[:64], "mnist", "generated")
    weighted = data_lib.MnistData(images, labels, images[:64], labels[:64], "mnist", "generated",
                                  train_weights=sample_weight)
    cases = {
        "sample_weight": (base, weighted, {"sample_weight": sample_weight}),
        "compiled_by_user": (base, weighted, {"sample_weight": sample_weight}),
        "class_weight": (base.replace(class_weight=CLASS_WEIGHT),
                         data_lib.with_class_weight(plain, CLASS_WEIGHT), {"class_weight": CLASS_WEIGHT}),
    }
    for case, (config, data, fit_args) in cases.items():
        keras.utils.set_random_seed(1)
        from mnist_core import models

        spec = models.spec_for(compiled_mlp) if case == "compiled_by_user" else None
        program = make_program(config, strategy, data.num_train, weighted=True, spec=spec)
        initial = [v.numpy() for v in program.model.variables]
        initial_weights = program.model.get_weights()
        pipeline = data_lib.train_dataset(images, labels, global_batch_size=BATCH, seed=config.seed,
                                          input_shape=program.input_shape, weights=data.train_weights)
        batches = list(pipeline.take(STEPS).as_numpy_iterator())
        x, y, w = (np.concatenate([b[i] for b in batches]) for i in range(3))
        iterator = program.train_iterator(data)
        for steps in (3, 3, 2):
            program.run_steps(iterator, steps)
        ours = program.model.get_weights()

        with strategy.scope():
            fit_model = keras.models.clone_model(program.model)
            fit_model.compile(optimizer=keras.optimizers.Adam(1e-3),
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        fit_model(x[:2])
        for variable, value in zip(fit_model.variables, initial):
            variable.assign(value)
        if "sample_weight" in fit_args:
            fit_args = {"sample_weight": w}
        fit_model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, **fit_args)
        theirs = fit_model.get_weights()
        print(json.dumps({
            "case": case, "replicas": replicas, "keras_protocol": program.keras_protocol,
            "max_weight_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(ours, theirs)),
            "max_update": max(float(np.max(np.abs(a - b))) for a, b in zip(ours, initial_weights)),
        }), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
