"""Signals: SIGINT/SIGTERM finish the running loop call, checkpoint, and stop (exit 130/143)."""

from __future__ import annotations

import os
import signal
import threading
from typing import Dict, Optional

from mnist_core.actions.base import Action


class Signals(Action):
    """SIGINT/SIGTERM: finish the running loop call, checkpoint, stop (exit 130/143).

    A signal can't stop a compiled loop midway anyway; the handler only sets a flag that
    is read between calls. The first signal restores SIGINT's default action, so a second
    Ctrl-C kills the process at once, even inside a long TF call.

    Args:
        forward_sigint_as_sigterm: under multi_worker, SIGTERM belongs to TensorFlow's
            PreemptionCheckpointHandler (a checkpoint is a collective: every worker must
            save at the same step, which only it coordinates). Ctrl-C is then re-sent to
            this process as SIGTERM so that it takes the same coordinated path.
    """

    def __init__(self, forward_sigint_as_sigterm: bool = False):
        self.signum: Optional[int] = None
        self.received: Optional[int] = None
        self._forward = forward_sigint_as_sigterm
        self._previous: Dict = {}

    def on_train_begin(self, run):
        if threading.current_thread() is threading.main_thread():
            signals = (signal.SIGINT,) if self._forward else (signal.SIGINT, signal.SIGTERM)
            for signum in signals:
                self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum, frame):
        self.received = signum
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if self._forward and os.name != "nt":  # on Windows os.kill(SIGTERM) would end the process at once
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            self.signum = signum

    def on_loop_end(self, run, steps, result):
        if self.signum is not None and run.epoch_step < run.program.steps_per_epoch:
            run.interrupt(self.signum)

    def on_epoch_end(self, run, epoch, entry):
        if self.signum is not None and epoch + 1 < run.config.epochs:
            run.interrupt(self.signum)

    def close(self, run):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
