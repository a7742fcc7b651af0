"""TargetAccuracy: ``--target-accuracy A`` ends the run at the first epoch that reaches A."""

from __future__ import annotations

from mnist_core.actions.base import Action
from mnist_core.run import accuracy_of


class TargetAccuracy(Action):
    """``--target-accuracy A``: stop after the first evaluated epoch whose test accuracy is >= A."""

    def __init__(self, target: float):
        self.target = target

    def on_epoch_end(self, run, epoch, entry):
        accuracy = accuracy_of(entry, "test")
        if accuracy is not None and accuracy >= self.target:
            run.request_stop(f"test accuracy {accuracy:.4f} reached --target-accuracy {self.target} "
                             f"after epoch {epoch + 1}; stopping")
