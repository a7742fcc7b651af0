"""StepProfiler: ``--profile-steps A,B``, a TensorBoard profiler trace of exactly those steps."""

from __future__ import annotations

import tensorflow as tf

from mnist_core.actions.base import Action


class StepProfiler(Action):
    """``--profile-steps A,B``: a TensorBoard profiler trace of exactly global steps A..B.

    Loop calls are shortened so that one ends after step A-1 and one after step B; the
    trace then starts and stops between calls and holds only those steps. Viewed in
    TensorBoard's Profile tab (``pip install tensorboard-plugin-profile``).
    """

    def __init__(self, first: int, last: int, logdir: str):
        self.first, self.last, self.logdir = first, last, logdir
        self.active = self.finished = False

    def steps_until_boundary(self, run):
        ahead = [b - run.step for b in (self.first - 1, self.last) if b > run.step]
        return min(ahead) if ahead else None

    def on_loop_begin(self, run, steps):
        # Starts the trace if the next call runs step A (or later, after a resume).
        if not (self.active or self.finished) and self.first - 1 <= run.step < self.last:
            tf.profiler.experimental.start(self.logdir)
            self.active = True

    def on_loop_end(self, run, steps, result):
        if self.active and run.step >= self.last:
            self.close(run)

    def close(self, run):
        if self.active:
            tf.profiler.experimental.stop()
            self.active = False
            self.finished = True
