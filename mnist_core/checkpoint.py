"""Checkpoints of the complete training state, so a resumed run continues exactly.

What is saved: the model's weights, the optimizer (its slots exist because the optimizer
is built before the first save or restore), the global step, and the state of every
Keras ``SeedGenerator`` (Dropout masks). Keras' own tracking leaves the seed generators
out of ``tf.train.Checkpoint``, so a resumed run would draw different dropout masks; they
are added explicitly here.

The data order needs no saved iterator: the input pipeline is a pure function of the seed
and the global step (see ``mnist_core.data.train_dataset``'s ``skip_batches``), which is
exact on every strategy and keeps a 60k-example shuffle buffer out of every checkpoint.
``tf.train.CheckpointManager`` writes each checkpoint to new files and updates its index
last, so a kill during a write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

import tensorflow as tf

from mnist_core.errors import ConfigError, one_line

CHECKPOINT_DIR = "checkpoints"


def _seed_variables(model):
    variables = {}
    for variable in model.variables:
        if "seed_generator" in variable.path:
            # tf.train.Checkpoint needs the backend tf.Variable, not Keras' wrapper.
            variables[variable.path.replace("/", ".")] = getattr(variable, "value", variable)
    return variables


class CheckpointState:
    """The training state that a checkpoint saves and restores.

    Args:
        model: The Keras model (built).
        optimizer: The Keras optimizer (built, so its slot variables are tracked).
        directory: Where checkpoints go (the run's ``checkpoints/``).
        keep: Number of checkpoints kept.
    """

    def __init__(self, model, optimizer, directory: str, keep: int = 3):
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, step=self.step, rng=_seed_variables(model)
        )
        self.directory = directory
        self.keep = keep
        self._manager: Optional[tf.train.CheckpointManager] = None

    @property
    def manager(self) -> tf.train.CheckpointManager:
        # Created at first use, not here: a manager reads the directory's index when
        # created, and the run directory is prepared (an --overwrite clears it) only
        # after the program is built and traced.
        if self._manager is None:
            self._manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=self.keep)
        return self._manager

    @property
    def latest(self) -> Optional[str]:
        return self.manager.latest_checkpoint

    def save(self, step: int, path_options: Optional[tf.train.CheckpointOptions] = None) -> str:
        """Saves the state at global ``step``; returns the checkpoint path."""
        self.step.assign(step)
        return self.manager.save(checkpoint_number=step, options=path_options)

    def save_once(self, step: int) -> str:
        """Saves at ``step`` unless the newest checkpoint already is that step; returns its path."""
        latest = self.latest
        if latest and latest.endswith(f"-{step}"):
            return latest
        return self.save(step)

    def restore_latest(self, directory: Optional[str] = None) -> Tuple[int, str]:
        """Restores the newest checkpoint of ``directory`` (default: this state's own).

        Returns:
            The global step of the restored checkpoint, and its path.

        Raises:
            ConfigError: no checkpoint exists, or it does not match this model/optimizer.
        """
        directory = directory or self.directory
        path = tf.train.latest_checkpoint(directory)
        if path is None:
            raise ConfigError(f"--resume: no checkpoint in {directory}")
        try:
            status = self.checkpoint.restore(path)
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            raise ConfigError(
                f"--resume: checkpoint {path} does not match this model/optimizer "
                f"({type(e).__name__}: {one_line(e)[:200]})"
            ) from None
        return int(self.step.numpy()), path


def has_checkpoint(run_dir: str) -> bool:
    """True if ``run_dir`` holds at least one complete checkpoint."""
    return tf.train.latest_checkpoint(os.path.join(run_dir, CHECKPOINT_DIR)) is not None
