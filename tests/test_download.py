"""The first run on a laptop: data downloaded (from a server on 127.0.0.1 standing in for the
internet), checked, cached, resumed after an interruption; the trainer on a platform without
``fcntl`` (Windows)."""

import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, error_lines, learnable_digits, write_idx
from mnist_core.data import download
from mnist_core.errors import DataError

# Part of the full suite (`python -m pytest -m "not slow"`, what CI runs), not of the quick
# `python -m pytest` a contributor runs between edits: its commands and harnesses take minutes.
pytestmark = pytest.mark.full

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")


def _mirror(root: Path, name: str, n_train=128, n_test=64):
    """Writes a dataset's four files under ``root/name`` (a mirror's layout); returns their
    published (size, SHA-256) as the download checks them."""
    directory = root / name
    directory.mkdir(parents=True)
    x, y = learnable_digits(n_train, seed=1)
    xt, yt = learnable_digits(n_test, seed=2)
    for file, array in zip(FILES, (x, y, xt, yt)):
        write_idx(directory / file, array)
    return {f: ((directory / f).stat().st_size, hashlib.sha256((directory / f).read_bytes()).hexdigest())
            for f in FILES}


class _Server:
    """A static file server on 127.0.0.1 that honours Range requests; it can drop each
    connection after ``cut`` bytes, or send slowly."""

    def __init__(self, root: Path, cut=None, delay=0.0):
        self.root, self.cut, self.delay, self.ranges = root, cut, delay, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = server.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                header = self.headers.get("Range")
                if header:
                    server.ranges.append(header)
                    start = int(header.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if server.cut is not None:
                    body = body[:server.cut]
                for i in range(0, len(body), 4096):
                    self.wfile.write(body[i:i + 4096])
                    if server.delay:
                        time.sleep(server.delay)
                # with a cut, the connection closes short of Content-Length: a dropped download

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    """No data anywhere but what the test serves: an empty home, TFDS dir and cache."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("MNIST_CORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MNIST_CORE_NO_DOWNLOAD", raising=False)
    monkeypatch.delenv("MNIST_CORE_DATA_DIR", raising=False)
    from mnist_core.data import sources

    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    return tmp_path


def test_tensorflow_datasets_download_path_imports():
    """What made the TFDS download fail on every laptop: a module its download path imports."""
    from tensorflow_datasets.core import dataset_builder

    assert dataset_builder.importlib_resources.files is not None  # the lazy import resolves


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_a_dataset_found_nowhere_is_downloaded_checked_and_cached(offline_home, monkeypatch, name):
    from mnist_core import data

    published = _mirror(offline_home / "mirror", name)
    monkeypatch.setitem(download.CHECKSUMS, name, published)
    server = _Server(offline_home / "mirror")
    monkeypatch.setenv(download.ENV_URL, server.url)
    lines = []
    try:
        loaded = data.load(name, log=lines.append)
    finally:
        server.close()
    cache = offline_home / "cache" / "data" / name
    assert loaded.source == f"IDX files in {cache}" and loaded.num_train == 128 and loaded.name == name
    assert lines[0] == f"downloading {name} from {server.url}/{name}/ into {cache}"
    assert sorted(p.name for p in cache.iterdir()) == sorted(FILES)
    again = data.load(name)  # the server is gone: the cache is found first
    np.testing.assert_array_equal(again.train_images, loaded.train_images)


def test_a_dropped_connection_keeps_the_part_and_the_next_run_resumes(offline_home, monkeypatch):
    from mnist_core import data

    published = _mirror(offline_home / "mirror", "mnist", n_train=2000)
    monkeypatch.setitem(download.CHECKSUMS, "mnist", published)
    broken = _Server(offline_home / "mirror", cut=20000)
    monkeypatch.setenv(download.ENV_URL, broken.url)
    with pytest.raises(DataError) as raised:
        data.load("mnist")
    broken.close()
    cache = offline_home / "cache" / "data" / "mnist"
    message = str(raised.value)
    assert message.startswith("no mnist data found; supply it with one of:")
    assert f"downloading {broken.url}/mnist/train-images-idx3-ubyte.gz failed" in message
    assert "20,000 of" in message and "the next run resumes there" in message
    assert not (cache / "train-images-idx3-ubyte.gz").exists(), "no truncated file where data is read"
    assert (cache / "train-images-idx3-ubyte.gz.part").stat().st_size == 20000
    good = _Server(offline_home / "mirror")
    monkeypatch.setenv(download.ENV_URL, good.url)
    try:
        loaded = data.load("mnist")
    finally:
        good.close()
    assert good.ranges == ["bytes=20000-"], "it asked for the rest"
    assert loaded.num_train == 2000 and not list(cache.glob("*.part"))


def test_a_file_that_is_not_the_published_one_is_refused(offline_home, monkeypatch):
    from mnist_core import data

    published = _mirror(offline_home / "mirror", "mnist")
    size, _ = published["train-labels-idx1-ubyte.gz"]
    monkeypatch.setitem(download.CHECKSUMS, "mnist", {**published, "train-labels-idx1-ubyte.gz": (size, "0" * 64)})
    server = _Server(offline_home / "mirror")
    monkeypatch.setenv(download.ENV_URL, server.url)
    try:
        with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: the file downloaded .* is not the published "
                                            "one .*; removed it"):
            data.load("mnist")
    finally:
        server.close()
    assert not list((offline_home / "cache" / "data" / "mnist").glob("train-labels*"))


def test_ctrl_c_during_a_download_then_the_command_again(offline_home, tmp_path):
    """The command as a user runs it: progress lines, Ctrl-C mid-file (exit 130, a .part, no
    data file), the same command again (resumes, trains)."""
    published = _mirror(offline_home / "mirror", "mnist", n_train=4000)
    server = _Server(offline_home / "mirror", delay=0.02)
    env = dict(os.environ, MNIST_CORE_DATA_URL=server.url, HOME=str(offline_home / "home"),
               TFDS_DATA_DIR=str(offline_home / "tfds"), MNIST_CORE_CACHE_DIR=str(offline_home / "cache"))
    env.pop("MNIST_CORE_NO_DOWNLOAD", None)
    # The published checksums stand for the files this server holds.
    program = ("import json, sys; from mnist_core.data import download; "
               f"download.CHECKSUMS['mnist'] = {{k: tuple(v) for k, v in json.loads({json.dumps(json.dumps(published))}).items()}}; "
               "from mnist_core.train import main; sys.exit(main())")
    command = [sys.executable, "-c", program, "--model", "mlp_small", "--epochs", "1", "--output-dir",
               str(tmp_path / "run"), "--quiet"]
    part = offline_home / "cache" / "data" / "mnist" / "train-images-idx3-ubyte.gz.part"
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (part.exists() and part.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert error_lines(stderr) == ["mnist-train: interrupted"]
    assert part.exists() and not part.with_name("train-images-idx3-ubyte.gz").exists()
    server.delay = 0.0
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    server.close()
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert any(r.startswith("bytes=") for r in server.ranges)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["dataset"].startswith("mnist from IDX files in") and summary["test_examples"] == 64


def test_offline_without_a_mirror_is_one_line_listing_every_way(offline_home, monkeypatch):
    from mnist_core import data

    monkeypatch.setenv(download.ENV_URL, "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(DataError) as raised:
        data.load("fashion_mnist")
    message = str(raised.value)
    assert "\n" not in message
    for way in ("--data-dir DIR", "$MNIST_CORE_DATA_DIR", "dataset-fashion-mnist", "$MNIST_CORE_DATA_URL",
                "(download failed: downloading http://127.0.0.1:9/fashion_mnist/"):
        assert way in message, message


# ---------------------------------------------------------------- Windows and macOS

WITHOUT_FCNTL = """
import sys
sys.modules["fcntl"] = None  # as on Windows: import fcntl raises ImportError
import importlib, pkgutil
import mnist_core
for module in pkgutil.walk_packages(mnist_core.__path__, "mnist_core."):
    if not module.name.endswith("__main__"):
        importlib.import_module(module.name)
from mnist_core import rundir
assert rundir._os_lock()[0] == "pid"
"""


def test_the_package_imports_and_trains_without_fcntl(tmp_path):
    from conftest import make_idx_dir

    data = make_idx_dir(tmp_path / "data", n_train=128, n_test=32)
    train = (WITHOUT_FCNTL + "from mnist_core.train import main\n"
             "sys.exit(main(sys.argv[1:]))\n")
    result = subprocess.run([sys.executable, "-c", train, "--data-dir", str(data), "--model", "mlp_small",
                             "--epochs", "1", "--output-dir", str(tmp_path / "run"), "--quiet"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "model.keras").exists()
    # One run per directory still: a live holder refuses the next run; a dead one does not.
    hold = WITHOUT_FCNTL + ("rundir.RunLock(sys.argv[1]).acquire()\nprint('held', flush=True)\n"
                            "import time\ntime.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path / "run")], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    check = WITHOUT_FCNTL + ("from mnist_core.errors import ConfigError\ntry:\n"
                             "    rundir.RunLock.check_free(sys.argv[1])\nexcept ConfigError as e:\n    print(e)\n")
    refused = subprocess.run([sys.executable, "-c", check, str(tmp_path / "run")], cwd=REPO, capture_output=True,
                             text=True, timeout=300)
    assert f"in use by a running mnist_core run (pid {holder.pid})" in refused.stdout, refused.stdout + refused.stderr
    holder.kill()
    holder.wait()
    free = subprocess.run([sys.executable, "-c", check, str(tmp_path / "run")], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert free.returncode == 0 and free.stdout == "", free.stdout + free.stderr
