"""One training step on 1 replica and on 2 CPU replicas, from the same weights and batch.

Run as a script (the CPU must be split into 2 logical devices before TensorFlow starts):

    python tests/replica_parity.py MODEL[+jit][@B/B...][,...] BATCH[,BATCH...]

Prints one JSON line per (model, batch): the largest weight difference after the step
and both losses. Both programs are built by ``program.make_program``, exactly as a run
builds them; the single-replica one never uses XLA, so ``MODEL+jit`` compares mirrored+XLA
against the plain step.
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


def _norm(a, b):
    return float(np.sqrt(sum(np.sum((x.astype(np.float64) - y) ** 2) for x, y in zip(a, b))))


def main(models, batches):
    import keras
    import tensorflow as tf

    from mnist_core.program import make_program

    tf.get_logger().setLevel("ERROR")  # building many programs in one process is expected here
    mirrored_config = TrainConfig(strategy="mirrored", cpu_replicas=2)
    strategy_lib.configure_devices(mirrored_config)
    strategies = {"single": tf.distribute.get_strategy(), "mirrored": strategy_lib.make_strategy(mirrored_config)}
    for entry in models:
        entry, _, own_batches = entry.partition("@")
        model, _, option = entry.partition("+")
        jit = option == "jit"
        for batch in ([int(b) for b in own_batches.split("/")] if own_batches else batches):
            images, labels = learnable_digits(2 * batch, seed=batch)
            data = data_lib.MnistData(images, labels, images[:10], labels[:10], "mnist", "generated")
            programs, results = {}, {}
            for name, strategy in strategies.items():
                keras.utils.set_random_seed(batch)
                config = TrainConfig(model=f"parity_models:{model}", optimizer="sgd", lr=0.1, momentum=0.0,
                                     batch_size=batch, jit_compile="on" if jit and name == "mirrored" else "off",
                                     **({"strategy": "mirrored", "cpu_replicas": 2} if name == "mirrored" else {}))
                programs[name] = make_program(config, strategy, data.num_train)
            initial = programs["single"].model.get_weights()
            programs["mirrored"].model.set_weights(initial)
            for name, program in programs.items():
                results[name] = program.train_loop(program.train_iterator(data), tf.constant(1))
            single, mirrored = (programs[n].model.get_weights() for n in ("single", "mirrored"))
            print(json.dumps({
                "model": model, "batch": batch, "jit": jit,
                "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
                "max_weight_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(single, mirrored)),
                "max_update": max(float(np.max(np.abs(a - b))) for a, b in zip(single, initial)),
                # ||update(1 replica) - update(2 replicas)|| / ||update(1 replica)|| over all weights.
                "relative_update_diff": _norm(single, mirrored) / _norm(single, initial),
                "loss_single": float(results["single"]["loss"]),
                "loss_mirrored": float(results["mirrored"]["loss"]),
            }), flush=True)


if __name__ == "__main__":
    main(sys.argv[1].split(","), [int(b) for b in sys.argv[2].split(",")])
