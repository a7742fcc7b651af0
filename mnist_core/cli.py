"""Shared command-line plumbing: one-line errors with exit status 2, quiet TensorFlow logs."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, NoReturn, Optional

from mnist_core.errors import MnistCoreError, one_line


def quiet_tensorflow_logs() -> None:
    """Hides TensorFlow's C++ INFO/WARNING chatter unless the user asked for it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # mnist_core's loop is TensorFlow code: a KERAS_BACKEND=jax in the user's shell must
    # not switch Keras to another backend under it.
    os.environ["KERAS_BACKEND"] = "tensorflow"


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


def run_main(prog: str, body: Callable[[], Optional[int]]) -> int:
    """Runs a CLI body, turning user errors into one stderr line and their exit status."""
    try:
        return body() or 0
    except MnistCoreError as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130

