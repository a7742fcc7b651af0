"""Checkpoints: a checkpoint at every epoch end and every ``--checkpoint-every`` steps."""

from __future__ import annotations

from mnist_core.actions.base import Action


class Checkpoints(Action):
    """A checkpoint at every epoch end and, with ``--checkpoint-every N``, every N steps."""

    def __init__(self, every: int):
        self.every = every

    def steps_until_boundary(self, run):
        if not self.every:
            return None
        return self.every - run.step % self.every

    def on_loop_end(self, run, steps, result):
        if self.every and run.step % self.every == 0 and run.epoch_step < run.program.steps_per_epoch:
            run.state.save(run.step)

    def on_epoch_end(self, run, epoch, entry):
        run.state.save_once(run.step)
