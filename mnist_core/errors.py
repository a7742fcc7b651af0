"""The errors mnist_core reports as one line, each with its documented exit status.

Every error here means "the run cannot go on, and here is why in one line": the
command-line tools print it on stderr without a traceback and exit with its
``exit_code``. Anything else that escapes is a bug and keeps its traceback.

======  ===========================================================================
status  meaning
======  ===========================================================================
2       bad input: a flag, file, model, callback or directory (:class:`ConfigError`,
        :class:`DataError`, :class:`ModelError`, :class:`CallbackError`)
3       a non-finite loss or weights (:class:`NonFiniteLossError`)
4       a run file could not be written (:class:`WriteError`)
130/143 interrupted by SIGINT/SIGTERM after a checkpoint (:class:`InterruptedRun`)
======  ===========================================================================
"""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class MnistCoreError(Exception):
    """Base class of the errors reported to the user as one line (exit status 2 unless set)."""

    exit_code = 2


class ConfigError(MnistCoreError):
    """A flag or configuration value is invalid (names the flag)."""


class DataError(MnistCoreError):
    """A data file or directory is missing, unreadable or malformed (names the file)."""


class ModelError(MnistCoreError):
    """A ``--model`` cannot be imported, built, or does not output 10 logits."""


class CallbackError(MnistCoreError):
    """A user callback raised; the run stops with one line naming it (exit status 2)."""


class NonFiniteLossError(MnistCoreError):
    """Training produced a NaN/Inf loss or weights (``--on-nonfinite stop``); exit status 3."""

    exit_code = 3


class WriteError(MnistCoreError):
    """A run file could not be written (disk full, permissions): exit status 4."""

    exit_code = 4


class InterruptedRun(MnistCoreError):
    """SIGINT/SIGTERM: a checkpoint was written; exit status 128 + signal (130/143)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def one_line(message: str) -> str:
    """Collapses a message onto one line (and drops terminal colour codes that Keras
    puts in its exceptions), so the CLI contract "one-line error" holds."""
    return " ".join(_ANSI.sub("", str(message)).split())
