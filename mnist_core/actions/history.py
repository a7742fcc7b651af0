"""HistoryFile: ``history.json`` rewritten (atomically) after every epoch."""

from __future__ import annotations

from mnist_core.actions.base import Action
from mnist_core.files import write_json


class HistoryFile(Action):
    """Rewrites ``history.json`` (atomically) after every epoch."""

    def on_epoch_end(self, run, epoch, entry):
        write_json(run.out / "history.json", run.history)
