"""What the controller does between compiled loop calls, one small object per behaviour.

The epoch loop of :mod:`mnist_core.controller` is a plain loop: it asks every action how
many steps may run before it needs a boundary, runs that many in one compiled call,
evaluates at the end of an epoch, and hands each event to every action in order. Each
behaviour — checkpoints, the profiler window, preemption, signals, TensorBoard, history,
progress, the accuracy target, non-finite numbers and the user's Keras callbacks — is one
:class:`Action`, the role TF Model Garden's orbit gives its ``actions``. A new behaviour
is a new action, not another branch in the loop.

An action may end the run early in two ways: ``run.request_stop(reason)`` finishes the
current loop call's epoch (evaluation, checkpoint, ``model.keras``, ``summary.json``)
and stops, as ``model.stop_training`` does in ``fit``; raising an ``MnistCoreError``
(``InterruptedRun``, ``NonFiniteLossError``) stops at once with that error's exit status.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from typing import TYPE_CHECKING, Dict, List, Optional

import tensorflow as tf

from mnist_core.errors import MnistCoreError, one_line

if TYPE_CHECKING:  # pragma: no cover
    from mnist_core.controller import Run


class NonFiniteLossError(MnistCoreError):
    """Training produced a NaN/Inf loss or weights (``--on-nonfinite stop``); exit status 3."""

    exit_code = 3


class InterruptedRun(MnistCoreError):
    """SIGINT/SIGTERM: a checkpoint was written; exit status 128 + signal (130/143)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class CallbackError(MnistCoreError):
    """A user callback raised; the run stops with one line naming it (exit status 2)."""


class Action:
    """Something done between loop calls. Every hook is optional.

    Hooks receive the :class:`mnist_core.controller.Run`, which holds the program, the
    checkpoint state, the run directory, the global step and the history.
    """

    def on_train_begin(self, run: "Run") -> None:
        """Before the first loop call (after a resume's restore)."""

    def steps_until_boundary(self, run: "Run") -> Optional[int]:
        """How many steps may run before this action needs the loop to return (None: any)."""
        return None

    def on_epoch_begin(self, run: "Run", epoch: int) -> None:
        """Before the first loop call of ``epoch`` (0-based)."""

    def on_loop_begin(self, run: "Run", steps: int) -> None:
        """Before a loop call of ``steps`` steps from ``run.step``."""

    def on_loop_end(self, run: "Run", steps: int, result: Dict) -> None:
        """After a loop call; ``run.step`` has advanced; ``result`` is the loop's output."""

    def on_evaluate_begin(self, run: "Run", name: str) -> None:
        """Before the evaluation of the ``name`` set (``test``, ``val``)."""

    def on_evaluate_end(self, run: "Run", name: str, logs: Dict) -> None:
        """After the evaluation of the ``name`` set, with its metrics."""

    def on_epoch_end(self, run: "Run", epoch: int, entry: Dict) -> None:
        """After the epoch's evaluation; ``entry`` is its history.json record."""

    def on_train_end(self, run: "Run") -> None:
        """After the last epoch, before ``model.keras`` and ``summary.json`` are written."""

    def close(self, run: "Run") -> None:
        """Always called at the end, also when the run fails: release what was acquired."""


class NonFiniteGuard(Action):
    """Warns about skipped updates, or stops the run before anything non-finite is saved.

    Skipping (``--on-nonfinite skip``, and mixed_float16's loss scaling by design) leaves
    weights and slots untouched, so training goes on. Anything else that is not finite —
    a NaN/Inf loss in ``stop`` mode, or weights that a non-finite update (or an
    overflowing finite one) has already spoiled — stops the run without saving. It runs
    first at every loop end, so no later action checkpoints spoiled weights.
    """

    def on_loop_end(self, run, steps, result):
        if not (result["nonfinite"] or result["skipped"] or not result["weights_finite"]):
            return
        config = run.config
        span = f"steps {run.step - steps + 1}..{run.step}"
        skipping = config.precision == "mixed_float16" or config.on_nonfinite == "skip"
        if skipping and result["weights_finite"]:
            if result["skipped"]:
                run.reporter.warn(f"{int(result['skipped'])} update(s) with non-finite gradients skipped in {span}")
            if result["nonfinite"] > result["skipped"]:
                run.reporter.warn(f"{int(result['nonfinite'])} step(s) with a non-finite loss in {span} "
                                  "(left out of the reported loss)")
            return
        what = "loss (NaN/Inf)" if result["nonfinite"] else "weights (NaN/Inf) after an update"
        last = run.state.latest or "none (no checkpoint written yet)"
        run.reporter.end_epoch_progress()
        raise NonFiniteLossError(
            f"non-finite {what} within {span}; stopped without saving; last good checkpoint: {last} "
            "(resume with --resume, perhaps with a lower --lr, or use --on-nonfinite skip)"
        )


class Progress(Action):
    """The console: a progress bar per epoch (steps, loss, accuracy, img/s) and a line per epoch."""

    def on_epoch_begin(self, run, epoch):
        run.reporter.start_epoch(epoch + 1, run.config.epochs, run.program.steps_per_epoch,
                                 completed=run.epoch_step)

    def on_loop_end(self, run, steps, result):
        run.reporter.update(run.epoch_step, run.meter.logs(), run.meter.images_per_second)

    def on_epoch_end(self, run, epoch, entry):
        run.reporter.end_epoch(entry)


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


class HistoryFile(Action):
    """Rewrites ``history.json`` (atomically) after every epoch."""

    def on_epoch_end(self, run, epoch, entry):
        from mnist_core.rundir import write_json

        write_json(run.out / "history.json", run.history)


class TensorBoardSummaries(Action):
    """Scalars per epoch (train/, test/, val/), the model graph once, optional histograms."""

    def __init__(self, writers: Dict, histograms: bool = False):
        self.writers = writers
        self.histograms = histograms

    def on_train_begin(self, run):
        if run.start_step == 0:
            self._write_graph(run)

    def _write_graph(self, run) -> None:
        """The model's inference graph, once per run, for TensorBoard's Graphs tab.

        The forward pass alone (layers as name scopes), not the training loop, whose
        while-loop, distribution and optimizer ops would bury the model in plumbing.
        """
        model = run.program.model
        try:
            forward = tf.function(lambda images: model(images, training=False))
            graph = forward.get_concrete_function(
                tf.TensorSpec([None, *run.program.input_shape], tf.float32)).graph
            with self.writers["train"].as_default():
                tf.summary.graph(graph)
            self.writers["train"].flush()
        except Exception as e:  # a drawing aid: never worth failing the run over
            run.reporter.warn(f"TensorBoard model graph not written ({type(e).__name__}: {one_line(e)[:200]})")

    def on_epoch_end(self, run, epoch, entry):
        import keras

        optimizer = run.program.optimizer
        for name, writer in self.writers.items():  # train/, test/, val/: the entry's fields of each
            with writer.as_default(step=run.step):
                for key, value in entry.items():
                    if key.startswith(f"{name}_") and key != f"{name}_examples" and isinstance(value, float):
                        tf.summary.scalar(key[len(name) + 1:], value)
            writer.flush()
        with self.writers["train"].as_default(step=run.step):
            tf.summary.scalar("learning_rate", entry["learning_rate"])
            if entry["images_per_second"] is not None:
                tf.summary.scalar("images_per_second", entry["images_per_second"])
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                tf.summary.scalar("loss_scale", float(optimizer.dynamic_scale.numpy()))
            if self.histograms:
                for weight in run.program.model.weights:
                    tf.summary.histogram(weight.path, weight.value)
        self.writers["train"].flush()

    def close(self, run):
        for writer in self.writers.values():
            writer.close()


class TargetAccuracy(Action):
    """``--target-accuracy A``: stop after the first evaluated epoch whose test accuracy is >= A."""

    def __init__(self, target: float):
        self.target = target

    def on_epoch_end(self, run, epoch, entry):
        accuracy = entry.get("test_accuracy")
        if accuracy is not None and accuracy >= self.target:
            run.request_stop(f"test accuracy {accuracy:.4f} reached --target-accuracy {self.target} "
                             f"after epoch {epoch + 1}; stopping")


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
        if self._forward:
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


class KerasCallbacks(Action):
    """The user's ``keras.callbacks.Callback`` objects, called with ``model.fit``'s contract.

    * ``set_model``/``set_params`` (``epochs``, ``steps``, ``verbose=0``) before training;
      a ``History`` is added, so ``model.history`` holds the epoch logs as after ``fit``;
    * ``on_train_begin``/``on_train_end``; ``on_epoch_begin``/``on_epoch_end`` with logs
      ``loss``, ``accuracy`` (or whatever a custom ``train_step`` returns) and the
      evaluation metrics under history.json's names (``test_loss``, ``val_accuracy``...);
    * ``on_train_batch_begin``/``on_train_batch_end`` once per compiled loop call, with the
      first and last step's index in the epoch, as ``fit`` does with
      ``steps_per_execution``; the logs' ``loss`` is NaN if a step of the call had a
      non-finite loss, so ``TerminateOnNaN`` works also when such steps are skipped;
    * ``on_test_begin``/``on_test_batch_*``/``on_test_end`` around every evaluation;
    * ``model.stop_training = True`` is read after every loop call and epoch.

    An exception in a callback stops the run with one line naming the callback and hook.
    """

    def __init__(self, callbacks: List, model, params: Dict):
        import keras

        self.user = list(callbacks)
        self.model = model
        self.list = keras.callbacks.CallbackList(self.user, add_history=True, add_progbar=False, model=model,
                                                 **params)
        self._begun = False

    def _call(self, hook: str, *args) -> None:
        try:
            getattr(self.list, hook)(*args)
        except MnistCoreError:
            raise
        except Exception as e:
            raise CallbackError(f"callback {self._culprit(e)}.{hook} raised {type(e).__name__}: "
                                f"{one_line(e)[:300]}") from None

    def _culprit(self, error: Exception) -> str:
        """The class name of the innermost callback on the exception's traceback."""
        ours = {id(callback) for callback in self.list.callbacks}
        name = "?"
        tb = error.__traceback__
        while tb is not None:
            owner = tb.tb_frame.f_locals.get("self")
            if id(owner) in ours:
                name = type(owner).__name__
            tb = tb.tb_next
        return name

    def _check_stop(self, run, where: str) -> None:
        if getattr(self.model, "stop_training", False):
            run.request_stop(f"a callback set model.stop_training after {where}; stopping")

    def on_train_begin(self, run):
        self.model.stop_training = False
        self._call("on_train_begin", {})
        self._begun = True

    def on_epoch_begin(self, run, epoch):
        self._call("on_epoch_begin", epoch, {})

    def on_loop_begin(self, run, steps):
        self._call("on_train_batch_begin", run.epoch_step, {})

    def on_loop_end(self, run, steps, result):
        logs = dict(run.meter.logs())
        if result.get("nonfinite"):
            logs["loss"] = float("nan")
        self._call("on_train_batch_end", run.epoch_step - 1, logs)
        self._check_stop(run, f"step {run.step}")

    def on_evaluate_begin(self, run, name: str) -> None:
        self._call("on_test_begin", {})
        self._call("on_test_batch_begin", 0, {})

    def on_evaluate_end(self, run, name: str, logs: Dict) -> None:
        self._call("on_test_batch_end", 0, logs)
        self._call("on_test_end", logs)

    def on_epoch_end(self, run, epoch, entry):
        self._call("on_epoch_end", epoch, epoch_logs(entry))
        self._check_stop(run, f"epoch {epoch + 1}")

    def on_train_end(self, run):
        if self._begun:
            self._begun = False
            logs = epoch_logs(run.history[-1]) if run.history else {}
            self._call("on_train_end", logs)


def epoch_logs(entry: Dict) -> Dict[str, float]:
    """A history.json entry as ``fit``'s epoch logs.

    Training metrics under their own names (``loss``, ``accuracy``), evaluation metrics
    under history.json's (``test_loss``, ``val_accuracy``). Without a validation split,
    the test metrics are also given as ``val_*``: the tutorials' ``fit(...,
    validation_data=(x_test, y_test))`` reports the test set under those names, and
    callbacks default to monitoring ``val_loss``.
    """
    skip = {"epoch", "learning_rate", "images_per_second", "seconds", "step", "elapsed_seconds",
            "train_seconds", "eval_seconds"}
    logs = {}
    for key, value in entry.items():
        if key in skip or key.endswith("_examples") or not isinstance(value, (int, float)):
            continue
        logs[key[len("train_"):] if key.startswith("train_") else key] = value
    if "val_examples" not in entry:
        logs.update({f"val_{key[len('test_'):]}": value for key, value in list(logs.items())
                     if key.startswith("test_")})
    return logs
