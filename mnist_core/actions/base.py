"""The action interface: what the controller calls between compiled loop calls.

An action is one behaviour of a run (checkpoints, progress, signals...). The controller
(:mod:`mnist_core.controller`) asks every action how many steps may run before it needs a
boundary, runs that many in one compiled call, and hands each event to every action in
order. An action may end the run early in two ways: ``run.request_stop(reason)`` finishes
the current epoch (evaluation, checkpoint, ``model.keras``, ``summary.json``) and stops, as
``model.stop_training`` does in ``fit``; raising an ``MnistCoreError`` (``InterruptedRun``,
``NonFiniteLossError``) stops at once with that error's exit status.
"""

from __future__ import annotations

from typing import Dict, Optional

from mnist_core.run import Run


class Action:
    """Something done between loop calls. Every hook is optional.

    Hooks receive the :class:`mnist_core.run.Run`, which holds the program, the
    checkpoint state, the run directory, the global step and the history.
    """

    def on_train_begin(self, run: Run) -> None:
        """Before the first loop call (after a resume's restore)."""

    def steps_until_boundary(self, run: Run) -> Optional[int]:
        """How many steps may run before this action needs the loop to return (None: any)."""
        return None

    def on_epoch_begin(self, run: Run, epoch: int) -> None:
        """Before the first loop call of ``epoch`` (0-based)."""

    def on_loop_begin(self, run: Run, steps: int) -> None:
        """Before a loop call of ``steps`` steps from ``run.step``."""

    def on_loop_end(self, run: Run, steps: int, result: Dict) -> None:
        """After a loop call; ``run.step`` has advanced; ``result`` is the loop's output."""

    def on_evaluate_begin(self, run: Run, name: str) -> None:
        """Before the evaluation of the ``name`` set (``test``, ``val``)."""

    def on_evaluate_end(self, run: Run, name: str, logs: Dict) -> None:
        """After the evaluation of the ``name`` set, with its metrics."""

    def on_epoch_end(self, run: Run, epoch: int, entry: Dict) -> None:
        """After the epoch's evaluation; ``entry`` is its history.json record."""

    def on_train_end(self, run: Run) -> None:
        """After the last epoch, before ``model.keras`` and ``summary.json`` are written."""

    def close(self, run: Run) -> None:
        """Always called at the end, also when the run fails: release what was acquired."""
