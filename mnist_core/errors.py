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
5       ``multi_worker``: a worker was lost, or never joined (:class:`LostWorkerError`);
        restart every worker with ``--resume``
130/143 interrupted by SIGINT/SIGTERM after a checkpoint (:class:`InterruptedRun`)
======  ===========================================================================

An error whose ``exit_at_once`` is true ends the command-line process right after its
line: TensorFlow's teardown after a lost peer only logs that peer's loss again.
"""

from __future__ import annotations

import contextlib
import contextvars
import re

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class MnistCoreError(Exception):
    """Base class of the errors reported to the user as one line (exit status 2 unless set)."""

    exit_code = 2
    exit_at_once = False


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


class LostWorkerError(MnistCoreError):
    """``multi_worker``: a peer died, stopped answering or never joined; exit status 5.

    The message names the lost task and the last complete checkpoint, and ends with how to
    go on: every worker started again with ``restart_flag`` (``--resume``; ``--overwrite``
    when nothing was saved; ``""`` when nothing started), as ``command`` when the command
    line is known.
    """

    exit_code = 5
    exit_at_once = True

    def __init__(self, message: str, restart_flag: str = "--resume"):
        super().__init__(message)
        self.message = message
        self.restart_flag = restart_flag
        self.command: str = ""

    def __str__(self) -> str:
        goal = "to resume, start" if self.restart_flag == "--resume" else "start"
        if self.command:
            how = f": {self.command}"
        else:
            how = f" with {self.restart_flag}" if self.restart_flag else ""
        return f"{self.message}; {goal} every worker again{how}"


class InterruptedRun(MnistCoreError):
    """SIGINT/SIGTERM: a checkpoint was written; exit status 128 + signal (130/143)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def one_line(message: str) -> str:
    """Collapses a message onto one line (and drops terminal colour codes that Keras
    puts in its exceptions), so the CLI contract "one-line error" holds."""
    return " ".join(_ANSI.sub("", str(message)).split())


def brief(message, limit: int = 300) -> str:
    """A message as one line of at most ``limit`` characters, cut where a sentence ends (else
    after a whole word, marked ``...``): a library's long explanation keeps its first point
    instead of stopping mid-word."""
    text = one_line(message)
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = cut.rfind(". ")
    if end >= limit // 3:
        return cut[:end + 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut) + " ..."


def mixed_precision_hint(message: str) -> str:
    """``"; <how to cast>"`` when an error is a float16/bfloat16 tensor meeting a float32 one
    (a mixed precision policy's layer outputs combined with float32 tensors), else ``""``."""
    if "float16" not in message:  # and bfloat16
        return ""
    return ("; under a mixed precision policy the layers compute in float16/bfloat16: cast before combining "
            "their tensors with float32 ones (keras.ops.cast(a, b.dtype)), which model.fit needs too")


# A flag whose Python argument has another name.
_PYTHON_NAMES = {"model-path": "model"}
# Words that are a flag's value when they follow it (its choices: "--strategy mirrored");
# the configuration adds its choices (mnist_core.config).
VALUE_WORDS = {"on", "off", "auto", "true", "false", "balanced"}
_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)"
                   r"( (?:'[^']*'|\"[^\"]*\"|-?[0-9][\w.+-]*|[^\s;,]*[/\\][^\s;,]*|[a-z][\w.]*)(?=[\s;,:)]|$))?")


def python_words(message: str) -> str:
    """A message in the words of a Python call: ``--batch-size 64`` becomes
    ``batch_size=64`` (a flag followed by its value), ``--strategy mirrored`` becomes
    ``strategy="mirrored"``, ``--dataset must be...`` becomes ``dataset must be...`` (a
    flag named alone)."""

    def rename(match: "re.Match") -> str:
        flag = match.group(1)
        name = _PYTHON_NAMES.get(flag, flag.replace("-", "_"))
        value = (match.group(2) or "")[1:]
        if re.fullmatch(r"[a-z][\w.]*", value):
            if value not in VALUE_WORDS:  # an English word after the flag, not its value
                return f"{name} {value}"
            value = f'"{value}"'
        return f"{name}={value}" if value else name

    return _FLAG.sub(rename, message)


# Whose words a refusal is in: the command line's flags, or a Python call's arguments.
# The command-line tools set "flags" while they run; everything else is a Python call.
_WORDS = contextvars.ContextVar("mnist_core_words", default="python")


@contextlib.contextmanager
def command_line_words():
    """Within the block, refusals name command-line flags (``--batch-size 64``)."""
    token = _WORDS.set("flags")
    try:
        yield
    finally:
        _WORDS.reset(token)


def from_python() -> bool:
    """Whether the code running was called from Python, not from a command-line tool."""
    return _WORDS.get() == "python"


def in_python_words(function):
    """Wraps a public Python function so that, called from Python, its
    :class:`MnistCoreError` messages name arguments, not command-line flags (same
    exception, same exit status); called by a command-line tool, it changes nothing."""
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except LostWorkerError:
            raise
        except MnistCoreError as e:
            if from_python():
                e.args = (python_words(str(e)), *e.args[1:])
            raise

    return wrapper
