import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import learnable_digits, make_idx_dir, write_idx
from mnist_core import data
from mnist_core.data import sources
from mnist_core.errors import DataError


def test_loads_gzip_and_raw_idx(tmp_path):
    gz = data.load_idx_dir(make_idx_dir(tmp_path / "gz", 64, 32, gz=True))
    raw = data.load_idx_dir(make_idx_dir(tmp_path / "raw", 64, 32, gz=False))
    x, y = learnable_digits(64, seed=1)
    np.testing.assert_array_equal(gz.train_images, x)
    np.testing.assert_array_equal(gz.train_labels, y)
    np.testing.assert_array_equal(raw.test_images, gz.test_images)
    assert gz.train_images.dtype == np.uint8 and gz.train_images.shape == (64, 28, 28)
    assert gz.num_test == 32


def test_real_mnist_5k_checksums(shared_data):
    d = data.load_idx_dir(shared_data / "mnist-5k")
    assert (d.num_train, d.num_test) == (5000, 10000)
    assert np.bincount(d.train_labels, minlength=10).tolist() == [500] * 10


def _bad_file(tmp_path, name, content: bytes, gz=True):
    path = tmp_path / name
    path.write_bytes(gzip.compress(content) if gz else content)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: write_idx(p / "f", np.zeros((2, 28, 28)), magic=0x00000801), "wrong IDX magic number 0x00000801"),
        (lambda p: write_idx(p / "f", np.zeros((2, 32, 32))), "images are 32x32, expected 28x28"),
        (lambda p: write_idx(p / "f", np.zeros((2, 28, 28)), dims=(3, 28, 28)), "declares 3 images"),
        (lambda p: write_idx(p / "f", np.zeros((0, 28, 28))), "contains no images"),
        (lambda p: _bad_file(p, "f", b"\x00\x00"), "too short"),
        (lambda p: _bad_file(p, "f", b"\x00\x00\x08\x03\x00"), "truncated IDX header"),
    ],
)
def test_bad_image_files_name_file_and_problem(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(DataError, match=message) as e:
        data.read_idx(path, "images")
    assert str(path) in str(e.value)


def test_labels_outside_0_9(tmp_path):
    path = write_idx(tmp_path / "labels", np.array([1, 2, 10, 3, 255]))
    with pytest.raises(DataError, match=r"labels must be in 0..9, found 10 at index 2 \(2 bad"):
        data.read_idx(path, "labels")


def test_corrupt_and_truncated_gzip(tmp_path):
    good = gzip.compress(b"\x00\x00\x08\x01" + b"\x00\x00\x00\x02" + b"\x01\x02")
    truncated = _bad_file(tmp_path, "t.gz", good[:-6], gz=False)
    with pytest.raises(DataError, match="t.gz: corrupt or truncated gzip"):
        data.read_idx(truncated, "labels")
    corrupt = _bad_file(tmp_path, "c.gz", good[:10] + b"garbage!" * 4, gz=False)
    with pytest.raises(DataError, match="c.gz: corrupt or truncated gzip"):
        data.read_idx(corrupt, "labels")


def test_image_label_count_mismatch(tmp_path):
    d = make_idx_dir(tmp_path / "d", 16, 8)
    write_idx(d / "train-labels-idx1-ubyte.gz", np.zeros(15))
    with pytest.raises(DataError, match="has 16 images but .*train-labels-idx1-ubyte.gz has 15 labels"):
        data.load_idx_dir(d)


def test_missing_idx_file(tmp_path):
    d = make_idx_dir(tmp_path / "d", 16, 8)
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte.gz"):
        data.load_idx_dir(d)


def _npz(path, **overrides):
    x, y = learnable_digits(20, seed=3)
    arrays = {"x_train": x, "y_train": y, "x_test": x[:10], "y_test": y[:10], **overrides}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_npz_loads_and_validates(tmp_path):
    d = data.load_npz(_npz(tmp_path / "mnist.npz"))
    assert (d.num_train, d.num_test) == (20, 10)
    with pytest.raises(DataError, match="missing key\\(s\\) y_test"):
        data.load_npz(_npz(tmp_path / "a.npz", y_test=None))
    with pytest.raises(DataError, match="x_train has 20 images but y_train has 3"):
        data.load_npz(_npz(tmp_path / "b.npz", y_train=np.zeros(3, np.uint8)))
    (tmp_path / "c.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="c.npz: not a readable .npz"):
        data.load_npz(tmp_path / "c.npz")


def test_data_dir_accepts_npz_file_and_dir(tmp_path):
    _npz(tmp_path / "mnist.npz")
    assert data.load_from_path(tmp_path / "mnist.npz", "mnist").num_train == 20
    assert data.load_from_path(tmp_path, "mnist").source.startswith("Keras npz")


def test_data_dir_errors(tmp_path):
    with pytest.raises(DataError, match="--data-dir .*nope: no such file or directory"):
        data.load_from_path(tmp_path / "nope", "mnist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="--data-dir .*empty: found no mnist data"):
        data.load_from_path(tmp_path / "empty", "mnist")


def test_unreadable_data_dir(idx_dir, monkeypatch):
    if os.geteuid() == 0:
        # Root reads any directory whatever its mode bits: simulate what a user would see.
        real_access = os.access
        monkeypatch.setattr(sources.os, "access", lambda p, mode: Path(p) != idx_dir and real_access(p, mode))
    idx_dir.chmod(0o000)
    try:
        with pytest.raises(DataError, match=r"^--data-dir .*data: directory is not readable$"):
            data.load_from_path(idx_dir, "mnist")
    finally:
        idx_dir.chmod(0o755)


def test_unreadable_idx_file_is_one_line_error(idx_dir, monkeypatch):
    target = idx_dir / "train-images-idx3-ubyte.gz"
    real_read = Path.read_bytes

    def read_bytes(path):
        if path == target:  # as for a file of mode 000 owned by someone else
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: cannot read \(Permission denied\)$"):
        data.load_from_path(idx_dir, "mnist")


def test_resolution_order_env_then_keras_then_debian(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "tfds_prepared", lambda name, data_dir=None: False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", tmp_path / "debian")
    # Nothing anywhere: one message listing every way, no download attempted.
    with pytest.raises(DataError) as e:
        data.load("fashion_mnist")
    message = str(e.value)
    for way in ("--data-dir DIR", "FILE.npz", "$MNIST_CORE_DATA_DIR", "TFDS", "dataset-fashion-mnist"):
        assert way in message
    assert "\n" not in message
    make_idx_dir(tmp_path / "debian", 32, 16)
    assert data.load("fashion_mnist").source == f"IDX files in {tmp_path / 'debian'}"
    keras_dir = tmp_path / "home" / ".keras" / "datasets"
    keras_dir.mkdir(parents=True)
    _npz(keras_dir / "mnist.npz")
    assert data.load("mnist").source.startswith("Keras npz")
    monkeypatch.setenv("MNIST_CORE_DATA_DIR", str(make_idx_dir(tmp_path / "env", 48, 16)))
    assert data.load("mnist").num_train == 48


def test_synthetic_has_mnist_shapes():
    d = data.load("synthetic", synthetic_train_size=100)
    assert d.train_images.shape == (100, 28, 28) and d.test_images.shape == (10000, 28, 28)
    assert d.train_images.dtype == np.uint8


def test_validation_split_is_disjoint_and_seeded(idx_dir):
    d = data.load_idx_dir(idx_dir)
    a = data.split_validation(d, 0.25, seed=7)
    b = data.split_validation(d, 0.25, seed=7)
    assert (a.num_train, len(a.val_labels)) == (384, 128)
    np.testing.assert_array_equal(a.val_images, b.val_images)
    rows = {x.tobytes() for x in a.train_images}
    assert not any(x.tobytes() in rows for x in a.val_images)


def _batches(ds, n):
    return [(x.numpy(), y.numpy()) for x, y in ds.take(n)]


def test_train_pipeline_shapes_reshuffle_and_skip():
    x, y = learnable_digits(100, seed=4)
    make = lambda skip=0: data.train_dataset(x, y, global_batch_size=32, seed=5, input_shape=(784,), skip_batches=skip)
    batches = _batches(make(), 9)  # 3 epochs of 3 full batches (4 examples dropped per epoch)
    assert all(b[0].shape == (32, 784) and b[0].dtype == np.float32 for b in batches)
    assert 0.0 <= min(b[0].min() for b in batches) and max(b[0].max() for b in batches) == 1.0
    assert batches[0][1].dtype == np.int32
    epoch1 = np.concatenate([b[1] for b in batches[:3]])
    epoch2 = np.concatenate([b[1] for b in batches[3:6]])
    assert not np.array_equal(epoch1, epoch2), "each epoch must be reshuffled"
    again = _batches(make(), 9)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(batches, again)), "same seed, same order"
    skipped = _batches(make(skip=4), 5)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(batches[4:], skipped)), "skip resumes the order"


def test_eval_pipeline_counts_every_example_once():
    x, y = learnable_digits(103, seed=6)
    ds = data.eval_dataset(x, y, batch_size=16, input_shape=(28, 28, 1))
    labels = np.concatenate([b[1] for b in _batches(ds, 100)])
    np.testing.assert_array_equal(labels, y)
