"""README's examples run as written."""

import json
import re
import subprocess
import sys

from conftest import REPO, make_idx_dir


def _section_code(title: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, f"one python example under '## {title}'"
    return blocks[0]


def test_from_python_example_runs(tmp_path):
    # The example reads ../shared/data/mnist-5k: a tiny learnable stand-in, same layout.
    make_idx_dir(tmp_path / "shared" / "data" / "mnist-5k", n_train=512, n_test=200)
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run([sys.executable, "-c", _section_code("From Python")], cwd=work, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    summary = json.loads((work / "runs" / "python" / "summary.json").read_text())
    assert summary["keras_protocol"] == ["compute_loss"] and summary["config"]["model"].endswith(":SmoothedNet")
    printed = result.stdout.strip().splitlines()
    assert printed[-3].startswith(f"{summary['test_accuracy']} ") and "['compute_loss']" in printed[-3]
    assert (work / "runs" / "python-epochs.csv").read_text().startswith("epoch,")
