"""Downloading MNIST and Fashion-MNIST: the published files, checked against their published checksums.

The last source :mod:`mnist_core.data.sources` tries. The four IDX files of a dataset are
fetched from ``$MNIST_CORE_DATA_URL`` (a mirror: ``<URL>/mnist/`` and
``<URL>/fashion_mnist/`` each hold the four ``.gz`` files) or else from the dataset's own
distribution (the addresses TensorFlow Datasets uses), into a cache directory
(``$MNIST_CORE_CACHE_DIR/data/<dataset>``, default ``~/.cache/mnist_core/data/<dataset>``)
where the next run finds them.

A download never leaves a file that could be read as data when it did not finish: bytes
go to ``FILE.part``, which is checked against the file's published size and SHA-256 and
only then renamed to ``FILE``. An interrupted download (Ctrl-C, a dropped connection)
keeps its ``.part``, and the next run asks the server for the rest (an HTTP range
request), or starts that file again where the server cannot resume. Progress is a bar on a
terminal and a line per file otherwise.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from mnist_core.data.dataset import MnistData
from mnist_core.errors import DataError

ENV_URL = "MNIST_CORE_DATA_URL"
TIMEOUT_SECONDS = 30
CHUNK = 1 << 16

# The distributions' own addresses and the files' published (size, SHA-256), as TensorFlow
# Datasets records them (tensorflow_datasets/url_checksums/{mnist,fashion_mnist}.txt).
SOURCES: Dict[str, str] = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
CHECKSUMS: Dict[str, Dict[str, Tuple[int, str]]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": (9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "train-labels-idx1-ubyte.gz": (28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        "t10k-images-idx3-ubyte.gz": (1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "t10k-labels-idx1-ubyte.gz": (4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": (26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        "train-labels-idx1-ubyte.gz": (29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        "t10k-images-idx3-ubyte.gz": (4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        "t10k-labels-idx1-ubyte.gz": (5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    },
}


def cache_dir(name: str) -> Path:
    """Where the downloaded files of dataset ``name`` are kept."""
    base = os.environ.get("MNIST_CORE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mnist_core")
    return Path(base) / "data" / name


def base_url(name: str) -> str:
    """The address the files of ``name`` are fetched from: the mirror's, else the distribution's."""
    mirror = os.environ.get(ENV_URL)
    if mirror:
        return f"{mirror.rstrip('/')}/{name}/"
    return SOURCES[name]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Progress:
    """A bar on a terminal (stderr), else one line per finished file through ``log``."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.bar = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                TransferSpeedColumn(), console=Console(stderr=True), transient=False)
            self.bar.start()

    def start(self, name: str, total: int, done: int):
        return self.bar.add_task(name, total=total, completed=done) if self.bar else None

    def advance(self, task, n: int) -> None:
        if self.bar:
            self.bar.update(task, advance=n)

    def finished(self, name: str, size: int, seconds: float, resumed: int) -> None:
        if not self.bar:
            resumed_text = f", resumed after {resumed:,} bytes" if resumed else ""
            self.log(f"  {name}: {size:,} bytes in {seconds:.1f} s{resumed_text}")

    def close(self) -> None:
        if self.bar:
            self.bar.stop()


def fetch(url: str, target: Path, size: int, sha256: str, progress: _Progress) -> None:
    """Downloads ``url`` to ``target`` through ``target.part``, resuming a partial one.

    Raises:
        DataError: the server cannot be reached or stops sending (the partial file is
            kept for the next run), or the file differs from its published size and
            checksum (the partial file is removed: it cannot be resumed).
        KeyboardInterrupt: passed on; the partial file is kept.
    """
    part = target.with_name(target.name + ".part")
    done = part.stat().st_size if part.exists() else 0
    if done > size:  # not a prefix of this file
        part.unlink()
        done = 0
    if done == size:  # complete but never checked and renamed (interrupted just then)
        return _finish(url, part, target, size, sha256, progress, 0.0, done)
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    started = time.monotonic()
    resumed = done
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            if done and response.status != 206:  # the server sends the whole file: start again
                done = resumed = 0
            task = progress.start(target.name, size, done)
            with open(part, "ab" if done else "wb") as out:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    done += len(block)
                    progress.advance(task, len(block))
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        raise _interrupted(url, part, size, f"{type(e).__name__}: {reason}") from None
    if done < size:  # the server closed the connection before the end
        raise _interrupted(url, part, size, "the connection closed early")
    _finish(url, part, target, size, sha256, progress, time.monotonic() - started, resumed)


def _interrupted(url: str, part: Path, size: int, reason: str) -> DataError:
    kept = part.stat().st_size if part.exists() else 0
    return DataError(f"downloading {url} failed ({reason}); {kept:,} of {size:,} bytes are kept in {part}, and the "
                     "next run resumes there")


def _finish(url: str, part: Path, target: Path, size: int, sha256: str, progress: _Progress, seconds: float,
            resumed: int) -> None:
    """Renames a complete ``part`` to ``target`` once its size and SHA-256 are the published ones."""
    done = part.stat().st_size
    if done != size or _sha256(part) != sha256:
        part.unlink()
        raise DataError(f"{url}: the file downloaded ({done:,} bytes) is not the published one ({size:,} bytes, "
                        f"SHA-256 {sha256[:12]}...); removed it")
    os.replace(part, target)
    progress.finished(target.name, size, seconds, resumed)


def cached(name: str) -> Optional[Path]:
    """The cache directory of ``name`` if it holds all four files (a complete download)."""
    directory = cache_dir(name)
    if name in CHECKSUMS and all((directory / f).is_file() for f in CHECKSUMS[name]):
        return directory
    return None


def download(name: str, log: Callable[[str], None] = lambda message: None) -> MnistData:
    """Downloads the four files of ``name`` (those still missing) and loads them.

    Raises:
        DataError: one line naming the file and why (unreachable, interrupted, a wrong
            checksum) or a malformed file.
    """
    from mnist_core.data.formats import load_idx_dir

    directory = cache_dir(name)
    directory.mkdir(parents=True, exist_ok=True)
    url = base_url(name)
    missing = [f for f in CHECKSUMS[name] if not (directory / f).is_file()]
    if missing:
        log(f"downloading {name} from {url} into {directory}")
        progress = _Progress(log)
        try:
            for file in missing:
                size, sha256 = CHECKSUMS[name][file]
                fetch(url + file, directory / file, size, sha256, progress)
        finally:
            progress.close()
    return load_idx_dir(directory, name)
