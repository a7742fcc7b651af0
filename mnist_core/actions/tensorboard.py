"""TensorBoardSummaries: scalars per epoch, the model graph once, optional weight histograms."""

from __future__ import annotations

from typing import Dict

import tensorflow as tf

from mnist_core.actions.base import Action
from mnist_core.errors import brief


class TensorBoardSummaries(Action):
    """Scalars per epoch (train/, test/, val/), the model graph once, optional histograms."""

    def __init__(self, writers: Dict, histograms: bool = False):
        self.writers = writers
        self.histograms = histograms

    def on_train_begin(self, run):
        if run.start_step == 0:
            self._write_graph(run)

    def _write_graph(self, run) -> None:
        """The model's inference graph, once per run, for TensorBoard's Graphs tab.

        The forward pass alone (layers as name scopes), not the training loop, whose
        while-loop, distribution and optimizer ops would bury the model in plumbing.
        """
        model = run.program.model
        if not run.program.classifier:  # no forward pass of its own (a GAN's call): its networks are its graph
            return
        try:
            forward = tf.function(lambda images: model(images, training=False))
            graph = forward.get_concrete_function(
                tf.TensorSpec([None, *run.program.input_shape], tf.float32)).graph
            with self.writers["train"].as_default():
                tf.summary.graph(graph)
            self.writers["train"].flush()
        except Exception as e:  # a drawing aid: never worth failing the run over
            run.reporter.warn(f"TensorBoard model graph not written ({type(e).__name__}: {brief(e, 200)})")

    def on_epoch_end(self, run, epoch, entry):
        import keras

        optimizer = run.program.optimizer
        for name, writer in self.writers.items():  # train/, test/, val/: the entry's fields of each
            with writer.as_default(step=run.step):
                for key, value in entry.items():
                    if key.startswith(f"{name}_") and key != f"{name}_examples" and isinstance(value, float):
                        tf.summary.scalar(key[len(name) + 1:], value)
            writer.flush()
        with self.writers["train"].as_default(step=run.step):
            tf.summary.scalar("learning_rate", entry["learning_rate"])
            if entry["images_per_second"] is not None:
                tf.summary.scalar("images_per_second", entry["images_per_second"])
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                tf.summary.scalar("loss_scale", float(optimizer.dynamic_scale.numpy()))
            if self.histograms:
                for weight in run.program.model.weights:
                    tf.summary.histogram(weight.path, weight.value)
        self.writers["train"].flush()

    def close(self, run):
        for writer in self.writers.values():
            writer.close()
