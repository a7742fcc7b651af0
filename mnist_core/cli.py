"""Shared command-line plumbing: one-line errors with exit status 2, quiet TensorFlow logs."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sys
import threading
from typing import Callable, Iterator, NoReturn, Optional

from mnist_core import reporting
from mnist_core.errors import MnistCoreError, command_line_words, one_line
# Re-exported: the tools call cli.quiet_tensorflow_logs() and cli.import_tensorflow().
from mnist_core.startup import import_tensorflow, is_startup_noise, quiet_tensorflow_logs  # noqa: F401

# The errors TensorFlow's C++ side logs when a multi_worker peer is lost (aborted
# collectives, the coordination service's heartbeats), each followed by lines of gRPC detail.
_CLUSTER_FAULT = re.compile(r"^E\d{4} [\d:.]+\s+\d+ (ring_alg|base_collective_executor|coordination_service\w*|"
                            r"context_distributed_manager|collective_\w+|\w*grpc\w*|add_port|preemption_\w+)\.cc:\d+\]")

# Written through the pipe by last_word: everything before it has been copied.
_DRAINED = b"\x00mnist_core: drained\n"
# Where a log entry's detail lines end: the next entry, or a line of mnist_core's own.
_LOG_LINE = re.compile(r"^[IWEF]\d{4} ")
_OWN_LINE = re.compile(r"^(warning: |mnist-\w+: )")


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

