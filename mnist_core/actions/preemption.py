"""Preemption: under multi_worker, every worker checkpoints at the same step and stops."""

from __future__ import annotations

import shutil
import signal
import tempfile

import tensorflow as tf

from mnist_core.actions.base import Action
from mnist_core.actions.signals import Signals


class Preemption(Action):
    """multi_worker preemption: TensorFlow's ``PreemptionCheckpointHandler``.

    Under MultiWorkerMirroredStrategy a checkpoint is a collective, so one worker can't
    save alone when it is told to stop: the handler (watching SIGTERM) agrees a loop call
    with every worker through the coordination service, all of them save after it, and
    then all stop. Saving goes through the run's ``CheckpointState`` (chief: the run's
    ``checkpoints/``; others: their scratch directory), so ``--resume`` works as always.
    """

    def __init__(self, strategy, state, signals: Signals):
        self._state = state
        self._signals = signals
        self.triggered = False
        self._scratch = tempfile.mkdtemp(prefix="mnist_core_preemption_")
        # The handler restores its manager's latest checkpoint when created and counts
        # loop calls from the count saved there; every worker must count alike, so it gets
        # an empty checkpoint of its own and resuming stays with CheckpointState.
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(), self._scratch, max_to_keep=1)
        termination = tf.distribute.experimental.TerminationConfig(exit_fn=self._exit, save_fn=self._save)
        self._handler = tf.distribute.experimental.PreemptionCheckpointHandler(
            strategy.cluster_resolver, manager, termination_config=termination
        )

    def _save(self, step: int) -> None:
        self._state.save_once(step)

    def _exit(self) -> None:
        # Return instead of sys.exit: the run raises InterruptedRun (exit 143).
        self.triggered = True

    def on_loop_end(self, run, steps, result):
        logger = tf.get_logger()
        level = logger.level
        # Its save path calls its own deprecated total_run_calls, logging a warning that
        # would tell users to change code that is TensorFlow's, not theirs.
        logger.setLevel("ERROR")
        try:
            self._handler.save_checkpoint_if_preempted(run.step)
        finally:
            logger.setLevel(level)
        if self.triggered:
            run.interrupt(self._signals.received or signal.SIGTERM)

    def close(self, run):
        shutil.rmtree(self._scratch, ignore_errors=True)
