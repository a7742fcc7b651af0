"""Console output: a rich progress bar per epoch on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
from typing import Callable, Dict, List, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


_result_hooks: List[Callable[[], None]] = []


def on_result(hook: Callable[[], None]) -> Callable[[], None]:
    """Registers ``hook`` to run just before a command prints its result line.

    The CLI uses it to stop Ctrl-C from interrupting a run whose work is done: what follows
    the result line is only TensorFlow's teardown. Returns a function that unregisters it.
    """
    _result_hooks.append(hook)
    return lambda: _result_hooks.remove(hook) if hook in _result_hooks else None


def result_ready() -> None:
    """Tells the registered hooks that the work is done and its result line comes next."""
    for hook in list(_result_hooks):
        hook()


def make_console() -> Console:
    """A stdout console; 150 columns when redirected, so tables in logs aren't squeezed to 80."""
    return Console(file=sys.stdout, soft_wrap=True, width=None if sys.stdout.isatty() else 150)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (IPython's ZMQ shell), not a terminal."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"


class NotebookProgress:
    """An epoch's progress in a Jupyter cell: one line, updated in place after every loop call
    (``epoch 1/3 ███████░░░ 140/200 loss 0.31 acc 0.91 12,000 img/s``), removed when the
    epoch's own line is printed."""

    WIDTH = 24

    def __init__(self):
        self._handle = None

    def _show(self, text: str) -> None:
        from IPython.display import Pretty, display

        if self._handle is None:
            self._handle = display(Pretty(text), display_id=True)
        else:
            self._handle.update(Pretty(text))

    def start(self, epoch: int, epochs: int, steps: int, completed: int = 0) -> None:
        self._epoch, self._epochs, self._steps = epoch, epochs, max(steps, 1)
        self.update(completed, "")

    def update(self, steps_done: int, stats: str) -> None:
        filled = int(self.WIDTH * min(steps_done, self._steps) / self._steps)
        bar = "█" * filled + "░" * (self.WIDTH - filled)
        self._show(f"epoch {self._epoch}/{self._epochs} {bar} {steps_done}/{self._steps} {stats}".rstrip())

    def end(self) -> None:
        if self._handle is not None:
            from IPython.display import Pretty

            self._handle.update(Pretty(""))  # the epoch's line follows, printed once
            self._handle = None


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
        # A console given by the caller (a test's buffer) takes the warnings too.
        self.errors = console or Console(file=sys.stderr, soft_wrap=True)
        self.interactive = self.console.is_terminal and not quiet
        self._progress: Optional[Progress] = None
        self._task = None
        # In a Jupyter notebook rich cannot redraw a bar in place: an IPython display
        # updated in place shows the epoch's progress instead (NotebookProgress).
        self._notebook = NotebookProgress() if console is None and not quiet and in_notebook() else None

    def info(self, message: str) -> None:
        """A line of information (data source, resume point...)."""
        if not self.quiet:
            self.console.print(message, highlight=False, markup=False)

    def warn(self, message: str) -> None:
        """A warning: on stderr, beside errors (stdout stays the run's record), even when quiet."""
        self.errors.print(f"warning: {message}", highlight=False, markup=False, style="yellow")

    def start_epoch(self, epoch: int, epochs: int, steps: int, completed: int = 0) -> None:
        if self._notebook is not None:
            self._notebook.start(epoch, epochs, steps, completed)
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

    def update(self, steps_done: int, logs: Dict[str, float], images_per_second: Optional[float]) -> None:
        stats = f"{format_metrics(logs)}  {_fmt(images_per_second, ',.0f')} img/s"
        if self._notebook is not None:
            self._notebook.update(steps_done, stats)
        if self._progress is None:
            return
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
        if self._notebook is not None:
            self._notebook.end()
        train = format_metrics(_group(entry, "train"))
        evaluated = " ".join(format_metrics(_group(entry, name), prefix=f"{name}_")
                             for name in _eval_sets(entry))
        seconds = f"{entry['seconds']:.1f}s"
        if evaluated:
            seconds += f" (eval {entry.get('eval_seconds', 0.0):.1f}s)"
        self.console.print(
            f"epoch {entry['epoch']}: {train}{' ' + evaluated if evaluated else ''}"
            f" {_fmt(entry['images_per_second'], ',.0f')} img/s {seconds}",
            highlight=False,
            markup=False,
        )

    def final(self, history: List[Dict], summary: Dict) -> None:
        if self.interactive and history:
            last = history[-1]
            train_keys = list(_group(last, "train"))
            eval_keys = [(name, key) for name in _eval_sets(last) for key in _group(last, name)]
            table = Table(title=f"mnist_core: {summary['model']} on {summary['dataset']}")
            columns = ["epoch", *(f"train {_short(k)}" for k in train_keys),
                       *(f"{name} {_short(k)}" for name, k in eval_keys), "img/s", "seconds"]
            for column in columns:
                table.add_column(column, justify="right")
            for e in history:
                table.add_row(
                    str(e["epoch"]),
                    *(_fmt(e.get(f"train_{k}"), ".4f") for k in train_keys),
                    *(_fmt(e.get(f"{name}_{k}"), ".4f") for name, k in eval_keys),
                    _fmt(e["images_per_second"], ",.0f"),
                    f"{e['seconds']:.1f}",
                )
            self.console.print(table)
        result_ready()
        if summary.get("classifier", True):
            headline = (f"test_accuracy {_fmt(summary['test_accuracy'], '.4f')} "
                        f"test_loss {_fmt(summary['test_loss'], '.4f')}")
        else:  # a GAN, a VAE: its own metrics, as the last epoch left them
            headline = " ".join(f"{key} {_fmt(value, '.4f')}" for key, value in summary["metrics"].items()
                                if isinstance(value, float))
        self.console.print(
            f"{headline} images_per_second {_fmt(summary['images_per_second'], ',.0f')} "
            f"seconds {summary['seconds']:.1f} output {summary['output_dir']}",
            highlight=False,
            markup=False,
        )


_NOT_METRICS = ("examples", "seconds")


def _group(entry: Dict, name: str) -> Dict[str, float]:
    """The scalar metrics ``name_*`` of a history entry, without the prefix."""
    prefix = f"{name}_"
    return {key[len(prefix):]: value for key, value in entry.items()
            if key.startswith(prefix) and key[len(prefix):] not in _NOT_METRICS and isinstance(value, (int, float))}


def _eval_sets(entry: Dict) -> List[str]:
    """The evaluated sets of an entry, validation before test (``val``, ``test``)."""
    return [name for name in ("val", "test") if f"{name}_examples" in entry]


def _short(key: str) -> str:
    return "acc" if key == "accuracy" else key


def format_metrics(logs: Dict, prefix: str = "") -> str:
    """``loss 0.1234 acc 0.9876 ...`` (accuracy shortened as in Keras' progress bar)."""
    return " ".join(f"{prefix}{_short(key)} {_fmt(value, '.4f')}" for key, value in logs.items()
                    if isinstance(value, (int, float)))
