"""Smoke test of ``python -m benchmarks.run`` on tiny data: every suite runs and writes
well-formed measurements. No timing assertions: speed targets live in benchmarks/RESULTS.md."""

import json

import pytest

from conftest import error_lines, make_idx_dir, run_cli

# Part of the full suite (`python -m pytest -m "not slow"`, what CI runs), not of the quick
# `python -m pytest` a contributor runs between edits: its commands and harnesses take minutes.
pytestmark = pytest.mark.full

SUITES = {"pipeline", "train", "fit", "scaling", "tta"}


def test_quick_benchmarks_run_every_suite_on_tiny_data(tmp_path):
    shared = tmp_path / "shared"
    data = make_idx_dir(shared / "mnist-5k", n_train=640, n_test=100)
    out = tmp_path / "bench.jsonl"
    result = run_cli("benchmarks.run", "--quick", "--data-dir", str(data), "--shared-data", str(shared),
                     "--models", "mlp_small", "--window-seconds", "0.01", "--repeats", "2",
                     "--dataset-sizes", "256,512", "--tta-target", "0.5", "--json", str(out))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["suite"] for r in records} == SUITES
    for record in records:
        assert record["machine"]["tensorflow"] and record["unit"]
        if record["name"].startswith("ratio"):
            assert record["repeats"] == 2 and record["median"] > 0
            continue
        assert record["min"] <= record["median"] <= record["max"], record
        assert record["median"] > 0 and record["repeats"] >= 1
    by_name = {r["name"]: r for r in records}
    core = [r for r in records if r["suite"] == "train" and not r["config"].get("defaults")
            and not r["name"].startswith("ratio")]
    assert {r["config"]["steps_per_loop"] for r in core} == {1, 100}
    assert all(r["repeats"] == 2 and r["warmup_seconds"] > 0 for r in core)
    fit = by_name["model.fit mlp_small (defaults)"]
    assert fit["config"]["steps_per_execution"] == 1 and fit["config"]["jit_compile"] == "auto"
    # The ratio pairs each round's mnist_core window with that round's fit window.
    ratio = by_name["ratio mnist_core/fit mlp_small (defaults)"]
    defaults = by_name["mnist_core mlp_small (defaults)"]
    assert defaults["config"]["jit_compile"] == "auto" and defaults["config"]["jit_decision"]["reason"]
    assert ratio["samples"] == [c / f for c, f in zip(defaults["samples"], fit["samples"])]
    assert by_name["ratio defaults/best fixed mlp_small"]["median"] > 0
    assert {r["config"]["replicas"] for r in records if r["name"].startswith("replicas")} == {1, 2}
    epochs = [r for r in records if r["name"].startswith("epoch")]
    assert [r["config"]["examples"] for r in epochs] == [256, 512]
    tta = by_name["mlp to 0.5"]
    assert tta["reached"] and tta["median"] > tta["from_first_step_seconds"] > 0
    assert "pipeline: tf.data training input alone" in result.stdout
    assert "ratio = mnist_core / fit" in result.stdout

    # benchmarks.report renders the same records as RESULTS.md's tables.
    report = run_cli("benchmarks.report", str(out))
    assert report.returncode == 0, report.stderr
    text = report.stdout
    for section in ("Input pipeline alone", "mnist_core loop vs `model.fit`", "Scaling", "Time to accuracy"):
        assert f"### {section}" in text
    row = next(line for line in text.splitlines() if line.startswith("| mlp_small | 128 | ") and "×" in line)
    assert f"{ratio['median']:.2f}× [{min(ratio['samples']):.2f}-{max(ratio['samples']):.2f}]" in row
    assert "| `mlp`, mnist-5k | 0.5 | 1/1 |" in text


def test_report_rejects_a_file_that_is_not_benchmark_output(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    result = run_cli("benchmarks.report", str(bad))
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        f"benchmarks.report: error: {bad}: not the JSON lines that benchmarks.run --json writes"]
    other = tmp_path / "other.jsonl"
    other.write_text('{"a": 1}\n')
    result = run_cli("benchmarks.report", str(other))
    assert result.returncode == 2 and "not the JSON lines" in error_lines(result.stderr)[0]


def test_bad_flags_are_one_line_errors(tmp_path):
    result = run_cli("benchmarks.run", "--suite", "train,nope")
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "benchmarks.run: error: --suite: unknown suite(s) nope; choose from pipeline,train,fit,scaling,tta,peers,tutorials"]
    result = run_cli("benchmarks.run", "--data-dir", str(tmp_path / "missing"))
    assert result.returncode == 2 and "no such file or directory" in error_lines(result.stderr)[0]


def test_profile_splits_step_time_and_counts_loop_calls(tmp_path):
    data = make_idx_dir(tmp_path / "data", n_train=640, n_test=100)
    logdir = tmp_path / "traces"
    result = run_cli("benchmarks.profile", "--data-dir", str(data), "--model", "mlp_small", "--batch-size", "64",
                     "--steps-per-loop", "1,2", "--steps", "4", "--logdir", str(logdir))
    assert result.returncode == 0, result.stderr
    assert "in graph" in result.stdout and "outside graph" in result.stdout

    from benchmarks.profile import read_trace

    for spl, calls in ((1, 4), (2, 2)):
        [trace] = (logdir / f"spl{spl}" / "plugins" / "profile").glob("*/*.xplane.pb")
        summary = read_trace(str(trace))
        assert summary["calls"] == calls, "one EagerLocalExecute of train_loop per call"
        assert summary["graph_seconds"] > 0
        assert any("MatMul" in name for name in summary["ops"]), "the model's ops are in the trace"


def test_calibrated_steps_fill_the_window_with_a_floor_that_depends_on_step_length():
    from benchmarks.suites import calibrated_steps

    assert calibrated_steps(0.02, 2.0) == 100  # fast steps fill the window
    assert calibrated_steps(0.5, 2.0) == 5  # at least five calls' worth of fast-ish steps
    assert calibrated_steps(14.0, 2.0) == 2  # a step longer than the window: two are enough
    assert calibrated_steps(1e-9, 2.0, max_steps=300) == 300


def test_peak_memory_of_a_child_is_its_own_not_its_parents():
    # Linux carries getrusage's ru_maxrss over from the parent through fork and exec; the
    # epoch-size benchmark runs in children, so their peak must be measured another way.
    import subprocess
    import sys

    from conftest import REPO

    ballast = bytearray(512 * 2**20)
    ballast[::4096] = b"\1" * len(ballast[::4096])  # touch every page: resident
    child = subprocess.run([sys.executable, "-c", "from benchmarks.common import peak_rss_mib; print(peak_rss_mib())"],
                           cwd=REPO, capture_output=True, text=True, check=True)
    assert 0 < float(child.stdout) < 256, child.stdout
    del ballast


def test_peers_suite_runs_with_whatever_is_installed(tmp_path):
    from benchmarks.peers import missing

    data = make_idx_dir(tmp_path / "data", n_train=640, n_test=100)
    out = tmp_path / "peers.jsonl"
    # Mixed precision as the GPU run asks for it (--precisions), here on the CPU.
    result = run_cli("benchmarks.run", "--suite", "peers", "--data-dir", str(data), "--models", "mlp",
                     "--batch-sizes", "64", "--window-seconds", "0.01", "--repeats", "2",
                     "--precisions", "float32,mixed_bfloat16", "--json", str(out))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    by_name = {r["name"]: r for r in records}
    assert by_name["mnist_core mlp"]["config"]["precision"] == "float32"
    assert by_name["mnist_core mlp mixed_bfloat16"]["config"]["precision"] == "mixed_bfloat16"
    absent = missing()
    for framework in ("torch", "jax"):
        said = f"peers: {framework} is not available here" in result.stdout
        assert said == (framework in absent), result.stdout
    for label in ("", " mixed_bfloat16"):
        if "jax" not in absent:
            assert f"ratio mnist_core/jax.jit mlp{label}" in by_name
        if "torch" not in absent:
            assert f"ratio mnist_core/torch eager mlp{label}" in by_name
            assert by_name[f"torch eager mlp{label}"]["config"]["precision"] == (label.strip() or "float32")


def test_update_diff_reports_every_optimizer_step_by_step(tmp_path):
    data = make_idx_dir(tmp_path / "data", n_train=256, n_test=50)
    result = run_cli("benchmarks.update_diff", "--data-dir", str(data), "--model", "mlp_small", "--batch-size", "32",
                     "--steps", "2", "--optimizers", "adam,sgd")
    assert result.returncode == 0, result.stderr
    rows = {r["optimizer"]: r for r in (json.loads(line) for line in result.stdout.splitlines() if line.startswith("{"))}
    assert set(rows) == {"adam", "sgd"}
    for row in rows.values():
        assert len(row["per_step"]) == len(row["free_running"]) == 2
        assert all(0 <= d <= 1e-4 for d in row["per_step"]), row
        assert row["free_running"][0] == row["per_step"][0], "the first step starts from the same state"


def test_data_forms_benchmark_runs_every_form_on_tiny_data(tmp_path):
    """benchmarks.data_forms trains from every form of the same data and from fit, each
    evaluated on every test example."""
    data = make_idx_dir(tmp_path / "data", n_train=400, n_test=60)
    out = tmp_path / "forms.jsonl"
    result = run_cli("benchmarks.data_forms", "--data-dir", str(data), "--seeds", "1", "--epochs", "1",
                     "--model", "mlp_small", "--json", str(out))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    from benchmarks.data_forms import FORMS

    assert [r["form"] for r in records] == list(FORMS)
    assert all(r["test_examples"] == 60 and 0 <= r["test_accuracy"] <= 1 for r in records), records
    # The in-memory forms read the same examples in the same order: the same run.
    same = {r["test_accuracy"] for r in records if r["form"] in ("arrays", "load_data", "tf.data", "csv")}
    assert len(same) == 1, records
    assert "| fit class_weight balanced |" in result.stdout
