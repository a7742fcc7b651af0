"""mnist_core's loop and ``model.fit`` from the same weights on the same batches.

Run as a script (2 replicas need the CPU split into logical devices before TensorFlow
starts)::

    python tests/protocol_parity.py REPLICAS MODEL[+jit][,MODEL[+jit]...]

For each model of ``protocol_models`` it trains 8 steps of batch 64 with mnist_core (loop
calls of 3, 3 and 2 steps, as the controller runs them) and 8 steps with ``model.fit``
(``shuffle=False`` over the very batches mnist_core's pipeline produced), both under the
same strategy, and prints the largest weight difference as one JSON line. With ``+jit``
fit compiles with XLA too on 1 replica; on 2 it cannot (its update is a cross-replica
all-reduce), so there mnist_core's split XLA step is compared with plain fit.
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

BATCH, STEPS = 64, 8


def main(replicas, names):
    import keras
    import tensorflow as tf

    import protocol_models
    from mnist_core.program import make_program

    tf.get_logger().setLevel("ERROR")
    extra = {"strategy": "mirrored", "cpu_replicas": replicas} if replicas > 1 else {}
    base = TrainConfig(optimizer="adam", batch_size=BATCH, steps_per_loop=3, update="keras", **extra)
    strategy_lib.configure_devices(base)
    strategy = strategy_lib.make_strategy(base) if replicas > 1 else tf.distribute.get_strategy()
    images, labels = learnable_digits(STEPS * BATCH, seed=5)
    data = data_lib.MnistData(images, labels, images[:64], labels[:64], "mnist", "generated")
    for entry in names:
        name, _, option = entry.partition("+")
        jit = option == "jit"
        keras.utils.set_random_seed(1)
        program = make_program(base.replace(model=f"protocol_models:{name}", jit_compile=jit), strategy,
                               data.num_train)
        initial = program.model.get_weights()
        # The batches the pipeline yields, in order, for fit to see the same ones.
        pipeline = data_lib.train_dataset(images, labels, global_batch_size=BATCH, seed=base.seed,
                                          input_shape=(784,))
        batches = list(pipeline.take(STEPS).as_numpy_iterator())
        x = np.concatenate([b[0] for b in batches])
        y = np.concatenate([b[1] for b in batches])
        iterator = program.train_iterator(data)
        for steps in (3, 3, 2):
            program.run_steps(iterator, steps)
        ours = program.model.get_weights()

        with strategy.scope():
            fit_model = getattr(protocol_models, name)()
            fit_model(x[:2])
            fit_model.set_weights(initial)
            fit_model.compile(optimizer=keras.optimizers.Adam(1e-3),
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              metrics=["accuracy"], jit_compile=jit and replicas == 1)
        fit_model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        theirs = fit_model.get_weights()
        print(json.dumps({
            "model": name, "replicas": replicas, "jit": jit, "protocol": list(program.protocol),
            "max_weight_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(ours, theirs)),
            "max_update": max(float(np.max(np.abs(a - b))) for a, b in zip(ours, initial)),
        }), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2].split(","))
