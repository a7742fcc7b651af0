"""``python -m benchmarks.update_diff``: how far the fused update is from Keras' own.

For each optimizer, trains the same model from the same weights on the same batches with
``--update fused`` (the default) and ``--update keras`` (what ``model.fit`` runs) and
prints, for each of the first ``--steps`` steps, the largest difference of any weight
array relative to that array's largest magnitude: of one step from the same state
(``per_step``), and of the two runs left to themselves (``free_running``, see
:func:`differences`). One JSON line per optimizer.

    python -m benchmarks.update_diff --data-dir ../shared/data/mnist-5k --model mlp
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Dict, List, Optional

OPTIMIZERS = {"adam": {}, "rmsprop": {"optimizer": "rmsprop"}, "adadelta": {"optimizer": "adadelta", "lr": 1.0},
              "sgd (momentum 0.9)": {"optimizer": "sgd"}, "sgd": {"optimizer": "sgd", "momentum": 0.0}}


def relative(a, b) -> float:
    import numpy as np

    return max(float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(y))), 1e-12)) for x, y in zip(a, b))


def _program(data, update: str, **values):
    import keras
    import tensorflow as tf

    from mnist_core.config import TrainConfig
    from mnist_core.program import make_program

    config = TrainConfig(**{"jit_compile": "off", "steps_per_loop": 1, **values, "update": update})
    keras.utils.set_random_seed(config.seed)
    program = make_program(config, tf.distribute.get_strategy(), data.num_train)
    return program, program.train_iterator(data)


def differences(data, steps: int, **values) -> Dict[str, List[float]]:
    """``per_step``: at each step, one fused and one Keras step from the same state (the
    fused program is given the Keras program's weights and optimizer slots first): the
    difference a single update makes. ``free_running``: the two trajectories from the same
    start, where round-off can flip a ReLU unit at its threshold and Adam turns that unit's
    changed gradient into a step of full size (as any change of summation order does)."""
    fused, fused_batches = _program(data, "fused", **values)
    keras_, keras_batches = _program(data, "keras", **values)
    free, free_batches = _program(data, "fused", **values)
    per_step, free_running = [], []
    for _ in range(steps):
        for target, source in ((fused.model.variables, keras_.model.variables),
                               (fused.optimizer.variables, keras_.optimizer.variables)):
            for a, b in zip(target, source):
                a.assign(b)
        for program, batches in ((fused, fused_batches), (keras_, keras_batches), (free, free_batches)):
            program.run_steps(batches, 1)
        reference = keras_.model.get_weights()
        per_step.append(relative(fused.model.get_weights(), reference))
        free_running.append(relative(free.model.get_weights(), reference))
    return {"per_step": per_step, "free_running": free_running}


def main(argv: Optional[List[str]] = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    p = argparse.ArgumentParser(prog="benchmarks.update_diff", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--model", default="mlp")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--optimizers", type=lambda text: text.split(","), default=list(OPTIMIZERS),
                   help=f"some of {','.join(OPTIMIZERS)} (default: all)")
    args = p.parse_args(argv)
    unknown = [name for name in args.optimizers if name not in OPTIMIZERS]
    if unknown:
        p.error(f"--optimizers: unknown {', '.join(unknown)}")
    from mnist_core import data as data_lib

    data = data_lib.load(args.dataset, args.data_dir)
    for name in args.optimizers:
        values = OPTIMIZERS[name]
        found = differences(data, args.steps, model=args.model, batch_size=args.batch_size, **values)
        print(json.dumps({"optimizer": name, "model": args.model, "batch_size": args.batch_size, **found}),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
