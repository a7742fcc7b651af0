"""Keras' GAN, VAE and Distiller against ``model.fit``: same variables, same batches, same steps.

Run as a script (2 replicas need the CPU split into logical devices before TensorFlow
starts)::

    python tests/subclass_parity.py REPLICAS CASE[,CASE...]

A case is a factory of :mod:`keras_io_models` (``make_gan``, ``make_vae``,
``make_distiller``). mnist_core trains the model through its own ``train_step`` /
``compute_loss`` (Keras' update, ``--update keras``) for 8 steps of batch 64 in loop calls of
3, 3 and 2; a second model from the same factory starts from the same variables (weights,
the random generators' states) and ``fit`` trains it on the very batches mnist_core's
pipeline produced (images alone where mnist_core fed images alone, as ``fit(x)``). Prints
one JSON line per case: the largest weight difference, the largest update, and both sides'
last logs.
"""

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from conftest import parity_start  # noqa: E402
from mnist_core import data as data_lib  # noqa: E402

BATCH, STEPS = 64, 8
# The VAE's train_step takes images alone (keras.io fits it on images): so is it fed here.
IMAGES_ONLY = {"make_vae"}


def main(replicas, cases):
    import keras
    import tensorflow as tf

    import keras_io_models
    from mnist_core.program import make_program, python_logs

    base, strategy, data = parity_start(replicas, BATCH, STEPS)
    images, labels = data.train_images, data.train_labels
    for case in cases:
        config = base.replace(model=f"keras_io_models:{case}")
        keras.utils.set_random_seed(1)
        program = make_program(config, strategy, data.num_train)
        program.feed_labels = case not in IMAGES_ONLY
        initial = [v.numpy() for v in program.model.variables]
        initial_weights = program.model.get_weights()
        pipeline = data_lib.train_dataset(images, labels, global_batch_size=BATCH, seed=config.seed,
                                          input_shape=program.input_shape, pixels=config.pixels,
                                          label_format="sparse" if program.feed_labels else "none")
        batches = list(pipeline.take(STEPS).as_numpy_iterator())
        iterator = program.train_iterator(data)
        for steps in (3, 3, 2):
            result = program.run_steps(iterator, steps)
        ours = program.model.get_weights()
        our_logs = python_logs(result["logs"])

        with strategy.scope():
            fit_model = getattr(keras_io_models, case)()
        assert len(fit_model.variables) == len(initial), (case, len(fit_model.variables), len(initial))
        for variable, value in zip(fit_model.variables, initial):
            variable.assign(value)
        if replicas > 1:
            # Under a strategy fit first builds the model by calling it, which a model without
            # call() (the GAN, the VAE) cannot take; its networks are built: say so.
            fit_model.built = True
        if program.feed_labels:
            x = np.concatenate([b[0] for b in batches])
            y = np.concatenate([b[1] for b in batches])
            history = fit_model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        else:
            x = np.concatenate(batches)
            history = fit_model.fit(x, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        theirs = fit_model.get_weights()
        print(json.dumps({
            "case": case, "replicas": replicas, "classifier": program.classifier,
            "optimizers": sorted(program.other_optimizers),
            "max_weight_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(ours, theirs)),
            "max_update": max(float(np.max(np.abs(a - b))) for a, b in zip(ours, initial_weights)),
            "logs": our_logs, "fit_logs": {k: float(v[-1]) for k, v in history.history.items()},
        }), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2].split(","))
