"""The state of a run in progress, as the controller and its actions see it.

:class:`Run` holds the program, the checkpoint state, the run directory, the position
(global step, epoch, step within the epoch), the history so far and whether to stop;
:class:`EpochMeter` the current epoch's running training metrics.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Dict, List, Optional

from mnist_core import keras_step
from mnist_core.checkpoint import CheckpointState
from mnist_core.config import TrainConfig
from mnist_core.errors import InterruptedRun
from mnist_core.program import Program, python_logs
from mnist_core.reporting import Reporter



def accuracy_name(names) -> "str | None":
    """The accuracy among a set of metric names: ``accuracy``, else any metric named as one
    (``sparse_categorical_accuracy``, ``categorical_accuracy``, ``acc``: a model compiled as
    Keras' guides compile it), else ``None``."""
    names = sorted(names)
    if "accuracy" in names:
        return "accuracy"
    return next((n for n in names if n.endswith("accuracy") or n in ("acc", "sparse_acc")), None)


def accuracy_of(entry: Dict, name: str = "test"):
    """The ``name`` set's accuracy in a history entry, under whatever name it was measured."""
    prefix = f"{name}_"
    key = accuracy_name(k[len(prefix):] for k in entry if k.startswith(prefix))
    return entry.get(prefix + key) if key else None


class EpochMeter:
    """The running training metrics of one epoch, as the progress bar and callbacks see them.

    For the explicit step: the mean loss over the epoch's finite steps and the accuracy
    over its examples. For a Keras-protocol model: the last loop call's logs (its
    running metrics), and at the epoch's end the model's metrics read across replicas,
    as ``fit`` reports them.
    """

    def __init__(self, program: Program):
        self.program = program
        self.loss = self.correct = self.count = self.weight = 0.0
        self.finite_steps = 0
        self.keras_logs: Dict = {}
        self.images = self.seconds = 0.0

    def add(self, result: Dict, steps: int, seconds: Optional[float]) -> None:
        """Adds a loop call's result; ``seconds`` is None for a call that included tracing."""
        if self.program.keras_protocol:
            self.keras_logs = python_logs(result["logs"])
        else:
            self.loss += float(result["loss"])
            self.finite_steps += steps - int(result["nonfinite"])
            self.correct += float(result["correct"])
            self.weight += float(result.get("weight", result["count"]))
        self.count += float(result["count"])
        if seconds is not None:
            self.images += float(result["count"])
            self.seconds += seconds

    @property
    def images_per_second(self) -> Optional[float]:
        return self.images / self.seconds if self.seconds else None

    def logs(self) -> Dict:
        if self.program.keras_protocol:
            return dict(self.keras_logs)
        return {"loss": self.loss / max(self.finite_steps, 1), "accuracy": self.correct / self.weight if self.weight else 0.0}

    def final_logs(self) -> Dict:
        if self.program.keras_protocol and self.keras_logs:
            return python_logs(keras_step.metrics_or_logs(self.program.model, self.keras_logs))
        return self.logs()


class Run:
    """What the actions see of a run in progress: program, state, position, history.

    Attributes:
        config, program, state, out, reporter: The run's parts.
        step: Global step (optimizer steps taken, counted across resumes).
        epoch: The current epoch (0-based).
        epoch_step: Steps done in the current epoch.
        start_step: The step the run started (or resumed) at.
        history: The history.json entries so far.
        meter: The current epoch's training metrics.
        chief: Whether this worker writes the run directory.
    """

    def __init__(self, config: TrainConfig, program: Program, state: CheckpointState, out: Path,
                 reporter: Reporter, start_step: int, history: List[Dict], chief: bool, started: float):
        self.config, self.program, self.state, self.out, self.reporter = config, program, state, out, reporter
        self.step = self.start_step = start_step
        self.epoch = start_step // program.steps_per_epoch
        self.epoch_step = start_step - self.epoch * program.steps_per_epoch
        self.history = history
        self.chief = chief
        self.started = started
        self.meter = EpochMeter(program)
        self.stop_reason: Optional[str] = None
        self.last_eval_digest: Optional[str] = None
        # Training throughput over the run's timed loop calls (the first, tracing, is not).
        self.timed_images = self.timed_seconds = 0.0

    def request_stop(self, reason: str) -> None:
        """Ends the run after the current loop call: its epoch is evaluated and saved."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def interrupt(self, signum: int) -> None:
        """Checkpoints now and stops with exit status 128 + ``signum``."""
        self.reporter.end_epoch_progress()
        path = self.state.save_once(self.step)
        name = signal.Signals(signum).name
        if not self.chief:
            # A non-chief worker's checkpoint is scratch; the run resumes from the chief's.
            saved, out = "its worker checkpoint", self.config.output_dir
        else:
            saved, out = path, self.out
        raise InterruptedRun(
            f"{name} received; stopped after step {self.step} and saved {saved}; "
            f"resume with the same flags plus --resume --output-dir {out}",
            signum,
        )
