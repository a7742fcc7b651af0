"""Shared fixtures: tiny learnable IDX datasets written to tmp dirs, paths to real data."""

from __future__ import annotations

import gzip
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Never touch the network, never spam the logs, whatever the order tests are run in.
os.environ["MNIST_CORE_NO_DOWNLOAD"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.pop("MNIST_CORE_DATA_DIR", None)
# --jit-compile auto caches its decisions: in a directory of this test session, never ~/.cache.
os.environ["MNIST_CORE_CACHE_DIR"] = __import__("tempfile").mkdtemp(prefix="mnist_core_test_cache_")

# A test runner started as a background job of a non-interactive shell (`bash .ci/run &`)
# has SIGINT ignored, and so would every command a test starts: Python keeps an inherited
# SIG_IGN, and the tests that press Ctrl-C in a command would see nothing happen. The
# commands start with Ctrl-C working, as they do from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)



@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unknown when it is not loaded
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker more than the cores. Most tests spend part of their time
    waiting on commands they start (TensorFlow's start-up in another process, a peer's
    heartbeat), and a third worker on 2 cores fills those waits: the suite took 19.0
    minutes against 22.2 with one worker per core (2-core CPU-C, 2026-12-01)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        cores = os.cpu_count() or 1
    return cores + 1


REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def write_idx(path: Path, array: np.ndarray, *, gz: bool = True, magic: int | None = None,
              dims: tuple | None = None) -> Path:
    """Writes ``array`` (uint8) as an IDX file; ``magic``/``dims`` override the header."""
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x00000803 if array.ndim == 3 else 0x00000801
    dims = array.shape if dims is None else dims
    payload = struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + array.tobytes()
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def learnable_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is a bright 7x7 block at one of 10 positions, plus noise.

    A model that learns anything separates them: tiny runs reach high accuracy in a few
    epochs, so end-to-end tests can assert learning, not just "it ran".
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        r, c = divmod(int(label), 5)
        images[i, 2 + r * 12 : 9 + r * 12, 1 + c * 5 : 6 + c * 5] = 255
    return images, labels


def parity_start(replicas: int, batch: int, steps: int):
    """What the fit-parity harnesses start from: a config of Keras' own update (as fit runs
    it: parity is bit for bit) on ``replicas`` mirrored CPU replicas, its strategy, and
    ``steps`` batches of learnable digits. Call before anything else starts TensorFlow."""
    import tensorflow as tf

    from mnist_core import data as data_lib, strategy as strategy_lib
    from mnist_core.config import TrainConfig

    tf.get_logger().setLevel("ERROR")
    extra = {"strategy": "mirrored", "cpu_replicas": replicas} if replicas > 1 else {}
    base = TrainConfig(batch_size=batch, steps_per_loop=3, jit_compile="off", update="keras", **extra)
    strategy_lib.configure_devices(base)
    strategy = strategy_lib.make_strategy(base) if replicas > 1 else tf.distribute.get_strategy()
    images, labels = learnable_digits(steps * batch, seed=5)
    return base, strategy, data_lib.MnistData(images, labels, images[:64], labels[:64], "mnist", "generated")


def make_idx_dir(directory: Path, n_train: int = 512, n_test: int = 200, gz: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    x, y = learnable_digits(n_train, seed=1)
    xt, yt = learnable_digits(n_test, seed=2)
    write_idx(directory / f"train-images-idx3-ubyte{suffix}", x, gz=gz)
    write_idx(directory / f"train-labels-idx1-ubyte{suffix}", y, gz=gz)
    write_idx(directory / f"t10k-images-idx3-ubyte{suffix}", xt, gz=gz)
    write_idx(directory / f"t10k-labels-idx1-ubyte{suffix}", yt, gz=gz)
    return directory


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """A directory with the four gzip IDX files of a tiny learnable dataset (512/200)."""
    return make_idx_dir(tmp_path / "data")


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (real MNIST-5k and Fashion-MNIST), or skip when it is absent."""
    if not (SHARED_DATA / "mnist-5k").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (needs the ../shared checkout beside the repo)")
    return SHARED_DATA


def run_cli(module: str, *args: str, cwd: Path | None = None, timeout: int = 600,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs ``python -m module args`` in a subprocess, as a user would."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def error_lines(stderr: str) -> list[str]:
    """All of stderr, line by line: the commands filter TensorFlow's start-up noise
    themselves, so a test that asserts this list asserts the whole of stderr."""
    return stderr.splitlines()
