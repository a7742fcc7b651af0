"""Errors that mean "the user asked for something wrong", not "mnist_core is broken".

Every error here is reported by the command-line tools as one line on stderr and exit
status 2, without a traceback. Anything else that escapes is a bug and keeps its
traceback.
"""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class MnistCoreError(Exception):
    """Base class of the errors reported to the user as one line, exit status 2."""

    exit_code = 2


class ConfigError(MnistCoreError):
    """A flag or configuration value is invalid (names the flag)."""


class DataError(MnistCoreError):
    """A data file or directory is missing, unreadable or malformed (names the file)."""


class ModelError(MnistCoreError):
    """A ``--model`` cannot be imported, built, or does not output 10 logits."""


def one_line(message: str) -> str:
    """Collapses a message onto one line (and drops terminal colour codes that Keras
    puts in its exceptions), so the CLI contract "one-line error" holds."""
    return " ".join(_ANSI.sub("", str(message)).split())
