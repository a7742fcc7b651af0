"""A notebook as users run one: executed in a real Jupyter kernel (nbclient), its training
cells hold mnist_core's lines only — no TensorFlow log lines from Python or C++, twice or
once — show each epoch's progress live, and resume a run whose model was passed as an
object with the model's class."""

import json
import sys

import pytest

nbclient = pytest.importorskip("nbclient", reason="nbclient (a test dependency: pip install -e '.[test]')")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

SETUP = """\
import numpy as np, keras, mnist_core
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (512, 28, 28), dtype=np.uint8)
y = rng.integers(0, 10, 512)

class MyNet(keras.Model):
    def __init__(self):
        super().__init__()
        self.flat = keras.layers.Flatten()
        self.out = keras.layers.Dense(10)

    def call(self, x):
        return self.out(self.flat(x))
"""
MIRRORED = """\
config = mnist_core.TrainConfig(epochs=2, batch_size=64, steps_per_loop=2, output_dir="mirrored", overwrite=True,
                                strategy="mirrored", cpu_replicas=2)
summary = mnist_core.train(config, model=MyNet, data=(x, y, x[:128], y[:128]))
"""
AGAIN = "summary = mnist_core.train(config, model=MyNet, data=(x, y, x[:128], y[:128]))\n"
OBJECT = """\
first = mnist_core.TrainConfig(epochs=1, batch_size=64, steps_per_loop=2, output_dir="object", overwrite=True)
summary = mnist_core.train(first, model=MyNet(), data=(x, y, x[:128], y[:128]))
"""
RESUME_WITH_CLASS = """\
summary = mnist_core.train(first.replace(epochs=2, resume=True, overwrite=False), model=MyNet,
                           data=(x, y, x[:128], y[:128]))
print(summary["epochs"])
"""
OURS = ("data: ", "--jit-compile auto: ", "epoch ", "test_accuracy ", "resumed from ")


class _Recording(nbclient.NotebookClient):
    """Counts the in-place display updates each cell received (a live progress line)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.updates = {}

    def process_message(self, msg, cell, cell_index):
        if msg["msg_type"] == "update_display_data":
            self.updates[cell_index] = self.updates.get(cell_index, 0) + 1
        return super().process_message(msg, cell, cell_index)


def _texts(cell):
    """Every output of a cell as ``(kind, text)``."""
    out = []
    for output in cell.outputs:
        if output.output_type == "stream":
            out.append((output.name, output.text))
        elif output.output_type == "error":
            out.append(("error", f"{output.ename}: {output.evalue}"))
        else:
            out.append((output.output_type, str(output.get("data", {}).get("text/plain", ""))))
    return out


def test_training_cells_hold_only_mnist_cores_lines_with_live_progress(tmp_path, monkeypatch):
    # A kernel of this very interpreter (the one with mnist_core installed), whatever is on PATH.
    spec = tmp_path / "kernels" / "mnist_core_test"
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "mnist_core test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    cells = [SETUP, MIRRORED, AGAIN, OBJECT, RESUME_WITH_CLASS]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = _Recording(notebook, timeout=600, kernel_name="mnist_core_test", allow_errors=True,
                        resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    for index in range(1, len(cells)):
        texts = _texts(notebook.cells[index])
        assert not [t for t in texts if t[0] == "error"], texts
        for kind, text in texts:
            if kind == "stdout" and text.strip() == "2":  # the cell's own print
                continue
            assert kind == "display_data", (index, kind, text)
            assert not text.strip() or text.startswith(OURS), (index, text)
        # Each loop call of 2 steps updated the progress line in place: more updates than epochs.
        epochs = sum(text.startswith("epoch ") for _, text in texts)
        assert epochs >= 1 and client.updates.get(index, 0) > 2 * epochs, (index, client.updates)
    assert any(text.startswith("resumed from ") for _, text in _texts(notebook.cells[4]))
