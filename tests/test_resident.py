"""The one-replica loop that holds the training set: the same batches as the tf.data
pipeline, from any step, in calls of any length, with and without XLA."""

import numpy as np
import pytest
import tensorflow as tf

from mnist_core import data as data_lib
from mnist_core import loop as loop_lib

N, BATCH, SEED = 50, 8, 3  # 6 steps an epoch, 2 examples dropped each epoch


def _arrays():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (N, 28, 28), dtype=np.uint8), rng.integers(0, 10, N).astype(np.uint8)


def _probe_step(batch):
    """Reports what the step was given: its pixels summed, weighted by place in the batch, and its labels summed."""
    images, labels = batch
    weights = tf.reshape(tf.range(1.0, tf.cast(tf.shape(images)[0], tf.float32) + 1.0), (-1, 1))
    return {"loss": tf.reduce_sum(images * weights), "correct": tf.cast(tf.reduce_sum(labels), tf.float32),
            "count": tf.cast(tf.shape(labels)[0], tf.float32)}


def _pipeline_sums(images, labels, start, steps):
    dataset = data_lib.train_dataset(images, labels, global_batch_size=BATCH, seed=SEED, input_shape=(784,),
                                     skip_batches=start)
    weights = np.arange(1.0, BATCH + 1.0, dtype=np.float32).reshape(-1, 1)
    return [(float(tf.reduce_sum(x * weights)), float(tf.reduce_sum(y))) for x, y in dataset.take(steps)]


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
def test_every_call_gets_the_pipelines_batches_from_any_step(jit):
    images, labels = _arrays()
    strategy = tf.distribute.get_strategy()
    loop = loop_lib.ResidentTrainLoop(strategy, _probe_step, jit_compile=jit, input_shape=(784,))
    for start in (0, 5, 13):
        expected = _pipeline_sums(images, labels, start, 16)
        batches = data_lib.ResidentBatches(images, labels, global_batch_size=BATCH, seed=SEED, start_step=start)
        one_by_one = []
        for _ in range(4):
            out = loop(batches, tf.constant(1, tf.int32))
            one_by_one.append((float(out["loss"]), float(out["correct"])))
        np.testing.assert_allclose(np.array(one_by_one), np.array(expected[:4]), rtol=1e-6)
        # 12 steps from here cross two epoch ends: the call is split, its sums add up.
        out = loop(batches, tf.constant(12, tf.int32))
        assert float(out["count"]) == 12 * BATCH
        assert float(out["correct"]) == pytest.approx(sum(y for _, y in expected[4:16]))
        assert float(out["loss"]) == pytest.approx(sum(x for x, _ in expected[4:16]), rel=1e-6)
        assert batches.position == start + 16


def test_too_few_examples_for_a_batch_is_refused():
    images, labels = _arrays()
    with pytest.raises(ValueError, match="a batch of 64 needs at least that many examples, got 50"):
        data_lib.ResidentBatches(images, labels, global_batch_size=64, seed=SEED)


@pytest.mark.parametrize("jit_compile", ["off", "on"])
def test_a_one_replica_run_trains_as_the_pipeline_loop_does(jit_compile):
    """The program's one-replica loop (batches gathered inside it) against the tf.data loop
    around the same step, from the same weights: the same updates."""
    import keras

    from mnist_core import step as step_lib
    from mnist_core.config import TrainConfig
    from mnist_core.program import make_program

    images, labels = _arrays()
    data = data_lib.MnistData(images, labels, images[:8], labels[:8], name="synthetic", source="test")
    config = TrainConfig(dataset="synthetic", model="mlp_small", batch_size=BATCH, seed=SEED, jit_compile=jit_compile,
                         steps_per_loop=4)
    keras.utils.set_random_seed(SEED)
    program = make_program(config, tf.distribute.get_strategy(), N)
    assert program.resident and isinstance(program.train_loop, loop_lib.ResidentTrainLoop)
    start = [v.numpy() for v in program.model.variables] + [v.numpy() for v in program.optimizer.variables]
    batches = program.train_iterator(data, 2)
    for _ in range(3):
        program.run_steps(batches, 4)
    resident = [v.numpy() for v in program.model.trainable_variables]

    for variable, value in zip([*program.model.variables, *program.optimizer.variables], start):
        variable.assign(value)
    keras.utils.set_random_seed(SEED)  # dropout-free model: only the batches matter
    step = step_lib.make_train_step(program.model, program.optimizer, BATCH, jit_compile=jit_compile == "on")
    pipeline_loop = loop_lib.make_train_loop(program.strategy, step)
    dataset = data_lib.train_dataset(images, labels, global_batch_size=BATCH, seed=SEED, input_shape=(784,),
                                     skip_batches=2)
    iterator = iter(program.strategy.experimental_distribute_dataset(dataset))
    for _ in range(3):
        pipeline_loop(iterator, tf.constant(4, tf.int32))
    for a, b in zip(resident, program.model.trainable_variables):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-6)
    assert max(float(np.max(np.abs(a - s))) for a, s in zip(resident, start)) > 1e-4  # it trained
