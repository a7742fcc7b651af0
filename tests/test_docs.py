"""The documentation as a user meets it: every page reachable, every link alive, every code
block a user would copy runs as written.

Each page's ``bash`` and ``python`` blocks run in order in a fresh working directory whose
``../shared/data`` holds tiny learnable stand-ins of ``mnist-5k`` and ``fashion-mnist`` (the
layout the docs' commands name), with ``$MNIST_CORE_DATA_DIR`` pointing at the MNIST one
for commands that name no data. Each bash block runs in bash; consecutive python blocks
run one after the other in one Python process, each in a namespace of its own (as
separate cells of a notebook: TensorFlow is imported once). A block that cannot run here
(a GPU, a second machine, minutes of benchmarking) is preceded by ``<!-- not run: REASON -->``.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, make_idx_dir

# Part of the full suite (`python -m pytest -m "not slow"`, what CI runs), not of the quick
# `python -m pytest` a contributor runs between edits: its commands and harnesses take minutes.
pytestmark = pytest.mark.full

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUNNABLE = ("bash", "python")
ILLUSTRATIONS = ("text", "toml")
_BLOCK = re.compile(r"(?:<!-- not run: (?P<reason>[^>]*?) -->\n)?^```(?P<lang>[^\n]*)\n(?P<code>.*?)^```\s*$",
                    re.S | re.M)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def blocks(page: Path):
    """``(language, code, reason it is not run or None)`` of every fenced block of a page."""
    return [(m["lang"].strip(), m["code"], m["reason"]) for m in _BLOCK.finditer(page.read_text())]


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_every_doc_page_is_linked_from_the_readme():
    readme = (REPO / "README.md").read_text()
    for page in PAGES[1:]:
        assert f"(docs/{page.name})" in readme, f"{page.name} is not reachable from README.md"


def test_links_point_at_files_and_headings_that_exist():
    for page in PAGES:
        for target in _LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            assert file.exists(), f"{page.name}: link to {target}: no such file"
            if anchor and file.suffix == ".md":
                prose = re.sub(r"^```.*?^```", "", file.read_text(), flags=re.S | re.M)
                headings = re.findall(r"^#+ (.+)$", prose, re.M)
                assert anchor in {_anchor(h) for h in headings}, f"{page.name}: link to {target}: no such heading"


def test_every_block_says_what_it_is():
    for page in PAGES:
        for lang, code, reason in blocks(page):
            assert lang in RUNNABLE + ILLUSTRATIONS, f"{page.name}: a ```{lang} block: say bash, python, text or toml"
            assert reason is None or reason.strip(), f"{page.name}: '<!-- not run: -->' needs its reason"


def test_the_block_finder_sees_blocks_and_reasons(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("x\n\n```bash\necho hi\n```\n\n<!-- not run: needs a GPU -->\n```python\nprint(1)\n```\n")
    assert blocks(page) == [("bash", "echo hi\n", None), ("python", "print(1)\n", "needs a GPU")]


def _runnable_pages():
    return [page for page in PAGES if any(lang in RUNNABLE and reason is None for lang, _, reason in blocks(page))]


@pytest.mark.parametrize("page", _runnable_pages(), ids=lambda p: p.name)
def test_code_blocks_run_as_written(page, tmp_path):
    data = tmp_path / "shared" / "data"
    make_idx_dir(data / "mnist-5k", n_train=512, n_test=200)
    make_idx_dir(data / "fashion-mnist", n_train=512, n_test=200)
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, MNIST_CORE_DATA_DIR=str(data / "mnist-5k"),
               PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    runs = []  # bash blocks one by one; consecutive python blocks together
    for lang, code, reason in blocks(page):
        if lang not in RUNNABLE or reason is not None:
            continue
        if lang == "python" and runs and runs[-1][0] == "python":
            runs[-1][1].append(code)
        else:
            runs.append((lang, [code]))
    for lang, codes in runs:
        if lang == "bash":
            command = ["bash", "-euo", "pipefail", "-c", codes[0]]
        else:
            command = [sys.executable, "-c", _PYTHON_CELLS, *codes]
        result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        shown = "\n".join(codes)
        shown = shown if len(shown) < 400 else shown[:400] + "..."
        assert result.returncode == 0, f"{page.name}: this block failed:\n{shown}\n{result.stdout[-2000:]}\n{result.stderr}"
        assert "Traceback" not in result.stderr, f"{page.name}:\n{shown}\n{result.stderr}"


# Runs each argument as a cell: its own globals, in order, in one process.
_PYTHON_CELLS = "import sys\nfor cell in sys.argv[1:]:\n    exec(compile(cell, '<docs block>', 'exec'), {'__name__': '__main__'})\n"
