"""mnist_core against ``model.fit`` from the same weights on the same batches: users' code as written.

Run as a script (2 replicas need the CPU split into logical devices before TensorFlow
starts)::

    python tests/fit_parity.py REPLICAS CASE[,CASE...]

A case is ``guide:NAME`` (an example of Keras' guide, :mod:`guide_models`, compiled by its
factory as the guide compiles it) or ``script:ID`` (a tutorial script: mnist_core trains its
recipe ``tutorial-ID``, fit runs the script's own model and compile,
:mod:`benchmarks.tutorial_scripts`). Both sides start from the same variables (weights and
dropout seeds) and see the very batches mnist_core's pipeline produced (pixels scaled as
the recipe scales them, labels one-hot where the loss takes them) for 8 steps of batch 64,
mnist_core in loop calls of 3, 3 and 2; the largest weight difference is printed as one
JSON line per case.
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
from mnist_core.config import TrainConfig  # noqa: E402

BATCH, STEPS = 64, 8


def _case(case, base):
    """``(config, fit_model_factory)`` of a case."""
    kind, _, name = case.partition(":")
    if kind == "guide":
        import guide_models

        return base.replace(model=f"guide_models:{name}"), getattr(guide_models, name)
    from benchmarks.tutorial_scripts import SCRIPTS
    from mnist_core import recipes

    options = dict(recipes.get(f"tutorial-{name}").options)
    options.update(batch_size=BATCH, steps_per_loop=3)
    return TrainConfig.from_dict({**base.to_dict(), **options}), SCRIPTS[name].build


def main(replicas, cases):
    import keras
    import tensorflow as tf

    from mnist_core.program import make_program

    base, strategy, data = parity_start(replicas, BATCH, STEPS)
    images, labels = data.train_images, data.train_labels
    for case in cases:
        config, fit_factory = _case(case, base)
        keras.utils.set_random_seed(1)
        program = make_program(config, strategy, data.num_train)
        initial = [v.numpy() for v in program.model.variables]
        initial_weights = program.model.get_weights()
        # The batches the pipeline yields, in order, for fit to see the same ones.
        pipeline = data_lib.train_dataset(images, labels, global_batch_size=BATCH, seed=config.seed,
                                          input_shape=program.input_shape, pixels=config.pixels,
                                          label_format="one_hot" if config.loss == "categorical_crossentropy"
                                          else program.labels)
        batches = list(pipeline.take(STEPS).as_numpy_iterator())
        x = np.concatenate([b[0] for b in batches])
        y = np.concatenate([b[1] for b in batches])
        iterator = program.train_iterator(data)
        for steps in (3, 3, 2):
            program.run_steps(iterator, steps)
        ours = program.model.get_weights()

        with strategy.scope():
            fit_model = fit_factory()
        shape = tuple(fit_model.inputs[0].shape[1:])
        x = x.reshape((len(x), *shape))
        fit_model(x[:2])
        assert len(fit_model.variables) == len(initial), (case, len(fit_model.variables), len(initial))
        for variable, value in zip(fit_model.variables, initial):
            variable.assign(value)
        fit_model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        theirs = fit_model.get_weights()
        print(json.dumps({
            "case": case, "replicas": replicas, "outputs": program.outputs, "labels": program.labels,
            "compiled_by_user": program.compiled_by_user, "protocol": list(program.protocol),
            "max_weight_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(ours, theirs)),
            "max_update": max(float(np.max(np.abs(a - b))) for a, b in zip(ours, initial_weights)),
        }), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2].split(","))
