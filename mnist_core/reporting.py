"""Console output: a rich progress bar per epoch on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
from typing import Dict, List, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def make_console() -> Console:
    """A stdout console; 150 columns when redirected, so tables in logs aren't squeezed to 80."""
    return Console(file=sys.stdout, soft_wrap=True, width=None if sys.stdout.isatty() else 150)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


class Reporter:
    """Reports a run's progress.

    On a terminal each epoch gets a rich progress bar (steps, loss, accuracy, img/s) and
    the run ends with a rich table; when stdout is redirected every epoch is one plain
    line (log files and CI stay readable); ``quiet`` prints only the final result.

    Args:
        quiet: Print only the final result line.
        console: Console to write to (tests pass one writing to a buffer).
    """

    def __init__(self, quiet: bool = False, console: Optional[Console] = None):
        self.quiet = quiet
        self.console = console or Console(file=sys.stdout, soft_wrap=True)
        self.interactive = self.console.is_terminal and not quiet
        self._progress: Optional[Progress] = None
        self._task = None

    def info(self, message: str) -> None:
        """A line of information (data source, resume point...)."""
        if not self.quiet:
            self.console.print(message, highlight=False, markup=False)

    def warn(self, message: str) -> None:
        """A warning, printed even when quiet."""
        self.console.print(f"warning: {message}", highlight=False, markup=False, style="yellow")

    def start_epoch(self, epoch: int, epochs: int, steps: int, completed: int = 0) -> None:
        if not self.interactive:
            return
        self._progress = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=steps, completed=completed, stats="")

    def update(self, steps_done: int, loss: float, accuracy: float, images_per_second: Optional[float]) -> None:
        if self._progress is None:
            return
        stats = f"loss {loss:.4f}  acc {accuracy:.4f}  {_fmt(images_per_second, ',.0f')} img/s"
        self._progress.update(self._task, completed=steps_done, stats=stats)

    def end_epoch_progress(self) -> None:
        """Stops the live progress bar (before an early exit message)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def end_epoch(self, entry: Dict) -> None:
        self.end_epoch_progress()
        if self.quiet:
            return
        val = ""
        if "val_accuracy" in entry:
            val = f" val_loss {entry['val_loss']:.4f} val_acc {entry['val_accuracy']:.4f}"
        self.console.print(
            f"epoch {entry['epoch']}: loss {entry['train_loss']:.4f} acc {entry['train_accuracy']:.4f}"
            f"{val} test_loss {entry['test_loss']:.4f} test_acc {entry['test_accuracy']:.4f}"
            f" {_fmt(entry['images_per_second'], ',.0f')} img/s {entry['seconds']:.1f}s",
            highlight=False,
            markup=False,
        )

    def final(self, history: List[Dict], summary: Dict) -> None:
        if self.interactive and history:
            table = Table(title=f"mnist_core: {summary['config']['model']} on {summary['dataset']}")
            for column in ("epoch", "train loss", "train acc", "test loss", "test acc", "img/s", "seconds"):
                table.add_column(column, justify="right")
            for e in history:
                table.add_row(
                    str(e["epoch"]),
                    f"{e['train_loss']:.4f}",
                    f"{e['train_accuracy']:.4f}",
                    f"{e['test_loss']:.4f}",
                    f"{e['test_accuracy']:.4f}",
                    _fmt(e["images_per_second"], ",.0f"),
                    f"{e['seconds']:.1f}",
                )
            self.console.print(table)
        self.console.print(
            f"test_accuracy {summary['test_accuracy']:.4f} test_loss {summary['test_loss']:.4f} "
            f"images_per_second {_fmt(summary['images_per_second'], ',.0f')} "
            f"seconds {summary['seconds']:.1f} output {summary['output_dir']}",
            highlight=False,
            markup=False,
        )
