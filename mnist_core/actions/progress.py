"""Progress: the console's progress bar per epoch and its line per epoch."""

from __future__ import annotations

from mnist_core.actions.base import Action


class Progress(Action):
    """The console: a progress bar per epoch (steps, loss, accuracy, img/s) and a line per epoch."""

    def on_epoch_begin(self, run, epoch):
        run.reporter.start_epoch(epoch + 1, run.config.epochs, run.program.steps_per_epoch,
                                 completed=run.epoch_step)

    def on_loop_end(self, run, steps, result):
        run.reporter.update(run.epoch_step, run.meter.logs(), run.meter.images_per_second)

    def on_epoch_end(self, run, epoch, entry):
        run.reporter.end_epoch(entry)
