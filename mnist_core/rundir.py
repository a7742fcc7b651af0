"""The run directory: checked before anything runs, locked for a run's life.

Every file a run writes either appears whole or not at all:

* ``history.json``, ``summary.json``, ``config.json``, ``model.keras`` and
  ``saved_model/``: written beside their place and renamed into it
  (:mod:`mnist_core.files`);
* ``checkpoints/``: TensorFlow writes each checkpoint's files before naming it in the
  ``checkpoint`` index, and a checkpoint that cannot be read completely is skipped on
  resume (:mod:`mnist_core.checkpoint`).

One run per directory: :class:`RunLock` holds an OS file lock (``flock`` on Linux and
macOS, ``msvcrt.locking`` on Windows) on ``OUTPUT_DIR/.lock`` while the run lives. The
operating system drops it when the process ends, even by SIGKILL, so no stale lock can
block ``--resume``; any second run into a locked directory — fresh, ``--resume`` or
``--overwrite`` — is refused before it touches anything.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Dict, Iterator, Optional

from mnist_core.checkpoint import CHECKPOINT_DIR, has_checkpoint
from mnist_core.config import TrainConfig
from mnist_core.errors import ConfigError
from mnist_core.files import remove, remove_stale_temporaries, umask_mode

LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"
SAVEDMODEL_DIR = "saved_model"
RUN_FILES = ("history.json", "history.json.damaged", "summary.json", CONFIG_FILE, "model.keras", "model.h5",
             "model.weights.h5", "model.tflite", SAVEDMODEL_DIR, CHECKPOINT_DIR, "tensorboard")


def default_output_dir() -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = candidate = Path("runs") / stamp
    n = 1
    while candidate.exists():
        candidate = Path(f"{base}-{n}")
        n += 1
    return candidate


def _has_run_files(out: Path) -> bool:
    return any(entry.name != LOCK_FILE for entry in out.iterdir())


def check_output_dir(config: TrainConfig) -> Path:
    """Checks the run directory without changing it; returns its path.

    Refuses a directory another run holds (:class:`RunLock`), and a non-empty one unless
    ``--resume`` (which needs a checkpoint there) or ``--overwrite`` is given. Nothing is
    created or removed here, so a run refused later (bad model, bad batch size) leaves the
    directory as it was.
    """
    out = Path(config.output_dir) if config.output_dir else default_output_dir()
    flag = f"--output-dir {out}"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag}: exists and is not a directory")
    RunLock.check_free(out)
    if config.resume:
        if not has_checkpoint(str(out)):
            raise ConfigError(f"--resume: no checkpoint in {out / CHECKPOINT_DIR}")
    elif out.exists() and _has_run_files(out) and not config.overwrite:
        raise ConfigError(
            f"{flag}: not empty (an earlier run?); use --resume to continue it, "
            "--overwrite to replace it, or another directory"
        )
    return out


def prepare_output_dir(config: TrainConfig, out: Path) -> None:
    """Empties the directory of an earlier run's files with ``--overwrite``, checks it is writable.

    Call while holding the :class:`RunLock`. Stale temporary files of a killed run go.
    """
    flag = f"--output-dir {out}"
    if config.overwrite and not config.resume:
        for name in RUN_FILES:
            remove(out / name)
    remove_stale_temporaries(out)
    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise ConfigError(f"{flag}: not writable ({e.strerror or e})") from None


# Windows locks byte ranges, and a locked byte cannot be read by another process: the lock
# is taken on a byte far past the pid text, so the pid stays readable for the message.
_WINDOWS_LOCK_OFFSET = 1 << 20


def _os_lock():
    """``(name, try_lock(fd, exclusive) -> bool, unlock(fd))`` of this platform's file lock.

    ``flock`` on Linux and macOS, ``msvcrt.locking`` on Windows: both belong to the open
    file and are released by the operating system when the process ends, however it
    ends. Where neither exists, ``("pid", None, None)``: the lock is the pid in the file,
    and a run whose pid is no longer alive holds nothing.
    """
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if fcntl is not None:
        def try_lock(fd: int, exclusive: bool) -> bool:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
                return True
            except OSError as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return False
                raise

        return "flock", try_lock, lambda fd: fcntl.flock(fd, fcntl.LOCK_UN)
    try:
        import msvcrt
    except ImportError:
        return "pid", None, None

    def try_lock_windows(fd: int, exclusive: bool) -> bool:  # Windows has no shared lock: always exclusive
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def unlock_windows(fd: int) -> None:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

    return "msvcrt", try_lock_windows, unlock_windows


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on a platform that cannot tell: assumed so)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, AttributeError):
        return True
    return True


class RunLock:
    """An exclusive lock on ``OUTPUT_DIR/.lock`` for the life of a run.

    The file holds the owner's pid, for the message another run gets. The lock is the
    operating system's (:func:`_os_lock`): it belongs to the open file and vanishes with
    the process, so a killed run leaves nothing that blocks the next one.
    """

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = self.out / LOCK_FILE
        self._fd: Optional[int] = None

    @staticmethod
    def _pid(path: Path) -> Optional[int]:
        try:
            text = path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    @classmethod
    def _refuse(cls, out: Path) -> ConfigError:
        pid = cls._pid(Path(out) / LOCK_FILE)
        holder = f"pid {pid}" if pid is not None else "another process"
        return ConfigError(f"--output-dir {out}: in use by a running mnist_core run ({holder}); wait for it, or use "
                           "another directory")

    @classmethod
    def check_free(cls, out: Path) -> None:
        """Refuses at once if a live run holds ``out``, without creating anything."""
        path = Path(out) / LOCK_FILE
        if not path.exists():
            return
        _, try_lock, unlock = _os_lock()
        if try_lock is None:
            pid = cls._pid(path)
            if pid is not None and pid != os.getpid() and _alive(pid):
                raise cls._refuse(out)
            return
        try:
            fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
        except OSError:
            return
        try:
            if not try_lock(fd, False):
                raise cls._refuse(out)
            unlock(fd)
        finally:
            os.close(fd)

    def acquire(self) -> "RunLock":
        """Creates the directory if needed and takes the lock, or refuses in one line.

        Raises:
            ConfigError: another run holds it, or the directory cannot be created.
        """
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, umask_mode())
        except OSError as e:
            raise ConfigError(f"--output-dir {self.out}: not writable ({e.strerror or e})") from None
        _, try_lock, _ = _os_lock()
        if try_lock is None:
            pid = self._pid(self.path)
            held = pid is not None and pid != os.getpid() and _alive(pid)
        else:
            held = not try_lock(fd, True)
        if held:
            os.close(fd)
            raise self._refuse(self.out)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            # The file stays (removing it could race with a run that just opened it).
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the file releases the operating system's lock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def locked(out: Optional[Path]) -> Iterator[None]:
    """Holds the run lock on ``out`` (no-op for ``None``: a non-chief worker's scratch)."""
    if out is None:
        yield
        return
    with RunLock(out):
        yield


def read_run_record(out: Path) -> Optional[Dict]:
    """What a run in ``out`` recorded about itself when it started (``config.json``).

    Falls back to a finished run's ``summary.json``, which holds the same fields.
    Returns ``None`` when neither can be read.
    """
    for name in (CONFIG_FILE, "summary.json"):
        try:
            value = json.loads((Path(out) / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(value, dict) and isinstance(value.get("config"), dict):
            return value
    return None
