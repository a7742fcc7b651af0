"""Files written whole or not at all: atomic JSON, files and directories.

A file mnist_core writes either appears complete or not at all: it is written to a
temporary name in the same directory and renamed into place (a rename within one
directory is atomic on POSIX and Windows alike). A write that fails (disk full,
permissions) raises :class:`~mnist_core.errors.WriteError` naming the file, and what
was there before stays as it was.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional

from mnist_core.errors import WriteError

# The causes a write fails for, as the OS words them; TensorFlow's errors embed the text.
_OS_CAUSES = tuple(os.strerror(code) for code in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM,
                                                  errno.EROFS, errno.EIO, errno.ENOENT))


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = " ".join(str(error).split())
    for cause in _OS_CAUSES:
        if cause.lower() in text.lower():
            return cause
    text = re.sub(r"\{\{.*?\}\}\s*", "", text)  # TensorFlow's op/device prefix
    return text[:200] or type(error).__name__


def write_failed(what: str, error: BaseException, kept: str = "") -> WriteError:
    """The one-line error of a failed write of ``what``."""
    tail = f"; {kept}" if kept else ""
    return WriteError(f"cannot write {what} ({_reason(error)}){tail}")


def umask_mode() -> int:
    """The mode a new file gets under the user's umask (``0o666 & ~umask``)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_json(path: Path, value) -> None:
    """Writes JSON atomically: a crash mid-write never leaves a truncated file.

    Raises:
        WriteError: the file cannot be written; the previous version is intact.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, umask_mode())  # mkstemp makes 0600; the run's files are the user's usual mode
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise write_failed(str(path), e, f"the previous {path.name} is intact" if path.exists() else "") from None


def write_atomically(path: Path, write: Callable[[Path], None], what: Optional[str] = None) -> Path:
    """Calls ``write(tmp)`` for a temporary path beside ``path``, then renames it into place.

    Works for files (``model.keras``) and directories (``saved_model/``): an old version is
    moved aside first and removed only once the new one is in place.

    Raises:
        WriteError: writing failed; nothing at ``path`` changed.
    """
    path = Path(path)
    # ".tmp.model.keras" keeps the suffix Keras insists on when saving.
    tmp = path.with_name(f".tmp.{path.name}")
    old = path.with_name(f".old.{path.name}")
    for leftover in (tmp, old):
        remove(leftover)
    try:
        write(tmp)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    except Exception as e:  # OSError, and TensorFlow's/Keras' own errors for the same causes
        remove(tmp)
        if old.exists() and not path.exists():
            os.replace(old, path)
        raise write_failed(what or str(path), e, f"the previous {path.name} is intact" if path.exists() else "") \
            from None
    remove(old)
    return path


def remove(path: Path) -> None:
    """Removes a file, link or directory tree if it is there (best effort)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        with contextlib.suppress(OSError):
            path.unlink()


def remove_stale_temporaries(directory: Path) -> None:
    """Deletes temporary files a killed run left mid-write (never a finished file)."""
    for pattern in (".*.tmp", ".tmp.*", ".old.*"):
        for leftover in Path(directory).glob(pattern):
            remove(leftover)
