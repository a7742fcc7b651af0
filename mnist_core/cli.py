"""Shared command-line plumbing: one-line errors with exit status 2, quiet TensorFlow logs."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sys
import tempfile
import threading
from typing import Callable, Iterator, NoReturn, Optional

from mnist_core import reporting
from mnist_core.errors import MnistCoreError, command_line_words, one_line


def quiet_tensorflow_logs() -> None:
    """Hides TensorFlow's C++ INFO/WARNING chatter unless the user asked for it, and sets
    the TensorFlow defaults every command shares (Keras backend, GPU memory growth)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # mnist_core's loop is TensorFlow code: a KERAS_BACKEND=jax in the user's shell must
    # not switch Keras to another backend under it.
    os.environ["KERAS_BACKEND"] = "tensorflow"
    # Every command (train, evaluate, predict, benchmarks) takes GPU memory as it needs it,
    # so two of them can share a GPU (see strategy._grow_gpu_memory); the user's value wins.
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")


# What TensorFlow's C++ side prints while it loads and looks for devices, before absl
# logging is initialised (so TF_CPP_MIN_LOG_LEVEL cannot hide it), on every machine
# without a GPU: absl's notice, INFO lines (oneDNN, CPU features, "Could not find cuda
# drivers"), and the warnings/errors that only say CUDA or TensorRT is absent.
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] (.*)$")
_ABSENT_GPU = re.compile(r"cuInit|cuda drivers|CUDA|TensorRT|Unable to register cu(DNN|FFT|BLAS) factory|"
                         r"computation placer already registered|GPU will not be used")
_CPU_FEATURES = "To enable the following instructions:"
# Errors TensorFlow's C++ side logs during a run that say nothing the user can act on:
# a tf.data attribute its runtime does not know yet (with op determinism on), and oneDNN
# falling back from float16 kernels on a CPU without them (mnist_core says that itself,
# once, in its own words); and the TensorFlow Lite converter's warnings about options it
# sets itself (a run from Python shows warnings: TF_CPP_MIN_LOG_LEVEL is the user's there).
_RUN_NOISE = re.compile(r"NodeDef mentions attribute use_unbounded_threadpool|oneDNN supports DT_HALF only|"
                        r"GeneratorDatasetOp::Dataset will not be optimized|"
                        r"^Ignored (output_format|drop_control_dependency)\.$|"
                        r"^Skipping runtime version metadata in the model")
# Grappler, TensorFlow's graph optimiser, logs an error when one of its passes cannot
# rewrite a graph (the remapper on a GAN's step, say) and runs the graph unrewritten:
# nothing failed that the user could act on.
_GRAPPLER_PASS_FAILED = re.compile(r"\smeta_optimizer\.cc:\d+\] \w+ failed: ")
# The errors TensorFlow's C++ side logs when a multi_worker peer is lost (aborted
# collectives, the coordination service's heartbeats), each followed by lines of gRPC detail.
_CLUSTER_FAULT = re.compile(r"^E\d{4} [\d:.]+\s+\d+ (ring_alg|base_collective_executor|coordination_service\w*|"
                            r"context_distributed_manager|collective_\w+|\w*grpc\w*|add_port|preemption_\w+)\.cc:\d+\]")

# Written through the pipe by last_word: everything before it has been copied.
_DRAINED = b"\x00mnist_core: drained\n"
# Where a log entry's detail lines end: the next entry, or a line of mnist_core's own.
# TensorFlow Lite's converter (int8 calibration) and interpreter print these themselves, not
# through absl: the export's own line says what was written and how it scored.
_TFLITE_NOISE = re.compile(r"^(fully_quantize: \d+, inference_type: \d+, input_inference_type: |"
                           r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$)")
_LOG_LINE = re.compile(r"^[IWEF]\d{4} ")
_OWN_LINE = re.compile(r"^(warning: |mnist-\w+: )")


def is_startup_noise(line: str) -> bool:
    """True for a TensorFlow log line that says nothing about the user's run."""
    text = line.rstrip("\n")
    if not text.strip() or text == _ABSL_NOTICE or text.startswith(_CPU_FEATURES) or _TFLITE_NOISE.match(text):
        return True
    match = _ABSL_LINE.match(text)
    if match is None:
        return False
    level, message = match.groups()
    if _GRAPPLER_PASS_FAILED.search(text):
        return True
    return level == "I" or bool(_ABSENT_GPU.search(message)) or bool(_RUN_NOISE.search(message))


def import_tensorflow():
    """Imports TensorFlow and finds its devices with the start-up noise filtered out of stderr.

    TensorFlow's C++ libraries write a few lines to file descriptor 2 while loading and
    while probing for CUDA, before absl logging exists, so neither ``TF_CPP_MIN_LOG_LEVEL``
    nor Python's logging reach them. The descriptor is pointed at a temporary file for
    the import and the device probe, and every line that is not known start-up noise is
    written back to stderr afterwards: genuine warnings and errors still show. Command-line
    tools call this once, after their flags are parsed, before anything else loads
    TensorFlow.
    """
    if "tensorflow" in sys.modules and getattr(import_tensorflow, "_done", False):
        return sys.modules["tensorflow"]
    quiet_tensorflow_logs()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True)
                if not is_startup_noise(line)]
    if kept:
        sys.stderr.write("".join(kept))
        sys.stderr.flush()
    import_tensorflow._done = True
    return tf


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Keeps TensorFlow's C++ log noise (:func:`is_startup_noise`) off stderr while a command runs.

    TensorFlow writes some log lines straight to file descriptor 2 while a run is under way,
    not only at start-up. For the block, descriptor 2 is a pipe whose lines a thread copies
    to the real stderr unless they are known noise; Python's own writes to ``sys.stderr``
    go the same way, in order. Restored at the end (also on an exception), after the
    thread has copied everything written.

    Yields a function ``last_word(text)`` for a process that ends right after it: it
    waits until everything written so far is copied, writes ``text`` to the real stderr
    and leaves descriptor 2 the pipe, so lines TensorFlow's threads log afterwards (about
    the loss the text reports) are never shown.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    held: list = []
    drained = threading.Event()

    def pump() -> None:
        in_fault = False  # inside a lost peer's log entry: its line and the gRPC detail after it
        with os.fdopen(read_end, "rb") as source:
            for line in iter(source.readline, b""):
                if line == _DRAINED:
                    drained.set()
                    continue
                text = line.decode("utf-8", "replace")
                if is_startup_noise(text):
                    continue
                if _CLUSTER_FAULT.match(text):
                    in_fault = True
                elif in_fault and (_LOG_LINE.match(text) or _OWN_LINE.match(text)):
                    in_fault = False
                if in_fault:
                    held.append(line)  # decided at the end: shown only if the error is not about it
                else:
                    os.write(saved, line)

    thread = threading.Thread(target=pump, name="mnist_core-stderr", daemon=True)
    thread.start()
    # TensorFlow's log of a lost peer is dropped when the body succeeds (a peer that ended
    # first is logged by the others' heartbeats, after the result) or ends with an error
    # that reports the loss itself (exit_at_once); any other error keeps every line.
    reported = True

    def last_word(text: str) -> None:
        sys.stderr.flush()
        os.write(2, _DRAINED)
        drained.wait(timeout=5)
        os.write(saved, text.encode("utf-8", "replace"))

    try:
        yield last_word
    except BaseException as e:
        reported = bool(getattr(e, "exit_at_once", False))
        raise
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last write end closes: the thread reads to its end
        thread.join(timeout=10)
        if held and not reported:
            os.write(saved, b"".join(held))
        os.close(saved)


@contextlib.contextmanager
def quiet_python_api() -> Iterator[None]:
    """What a run from Python (a script, a notebook cell) shows: mnist_core's lines.

    The command-line tools filter TensorFlow's noise for their whole process; a run from
    Python does it for the run: TensorFlow's C++ log lines that say nothing about the run
    (:func:`is_startup_noise`) are kept off file descriptor 2, which Jupyter copies into
    the cell, and TensorFlow's Python logger says only warnings (a notebook's logging set
    up at INFO otherwise shows ``INFO:tensorflow:Reduce to ...`` for every mirrored
    reduction, once through stdout and once through stderr). Both are as they were after
    the run.
    """
    import logging

    logger = logging.getLogger("tensorflow")
    level = logger.level
    if logger.getEffectiveLevel() < logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        with filtered_stderr():
            yield
    finally:
        logger.setLevel(level)


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse`` parser whose errors are one line (no usage dump), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or a positive integer, got {value}")
    return value


# Set by finish_at_once, cleared by run_main at each start: a flag, not state to derive.
_finishing = threading.Event()


def finish_at_once() -> None:
    """Asks :func:`run_main` to end the process as soon as the body returns, skipping the
    interpreter's teardown (when the body runs as the process's command).

    A ``multi_worker`` worker calls it after a complete run: its peers end moments apart,
    and TensorFlow's teardown, still heartbeating, would log each departure as a lost peer
    after a result that is complete. Everything the run writes is closed by then.
    """
    _finishing.set()


def run_main(prog: str, body: Callable[[], Optional[int]], argv: Optional[list] = ()) -> int:
    """Runs a CLI body, turning user errors into one stderr line and their exit status.

    TensorFlow's log noise stays off stderr throughout (:func:`filtered_stderr`). When the
    body runs as the process's command (``argv`` is ``None``: the flags come from the
    command line), Ctrl-C is ignored once its work is done: the interpreter's teardown
    (TensorFlow's destructors take seconds after a mirrored run) has nothing left to
    interrupt, and an interrupt there would only print a traceback from a destructor.
    """
    as_command = argv is None and threading.current_thread() is threading.main_thread()
    # Ctrl-C is ignored from the moment the result line is printed, not only once the body
    # returns: what runs between them (closing writers, dropping the strategy) is teardown.
    forget = reporting.on_result(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if as_command else None
    _finishing.clear()
    try:
        with filtered_stderr() as last_word:
            try:
                with command_line_words():  # refusals name this tool's flags
                    code = body() or 0
            except MnistCoreError as e:
                if e.exit_at_once and as_command:
                    # The process's last word: TensorFlow's teardown after a lost peer would
                    # only log the loss again (and may wait on the peer), so it is skipped.
                    sys.stdout.flush()
                    last_word(f"{prog}: error: {one_line(e)}\n")
                    os._exit(e.exit_code)
                raise
            if as_command and _finishing.is_set():
                sys.stdout.flush()
                last_word("")
                os._exit(code)
        return code
    except MnistCoreError as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    finally:
        if as_command:
            forget()
            signal.signal(signal.SIGINT, signal.SIG_IGN)

