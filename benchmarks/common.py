"""Shared benchmark plumbing: timing statistics, machine description, output.

Every measurement is one JSON object (a line of ``--json PATH``) holding the suite, the
full configuration, the machine/device description, the TensorFlow version, and the
median, min and max over the repeats, so two result files can be compared line by line.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np


@dataclass
class Measurement:
    """One benchmark figure: ``value`` (median of ``samples``) in ``unit``."""

    suite: str
    name: str
    config: Dict
    unit: str
    samples: List[float]
    extra: Dict = field(default_factory=dict)

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples)) if self.samples else float("nan")

    def to_json(self, machine: Dict) -> Dict:
        return {
            "suite": self.suite,
            "name": self.name,
            "config": self.config,
            "unit": self.unit,
            "median": self.median,
            "min": float(min(self.samples)) if self.samples else None,
            "max": float(max(self.samples)) if self.samples else None,
            "repeats": len(self.samples),
            "samples": self.samples,
            **self.extra,
            "machine": machine,
        }


def source_commit() -> Optional[str]:
    """The git commit measured (with ``+changes`` when the tree differs from it), or None."""
    import subprocess

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("+changes" if dirty else "")) or None


def machine_description() -> Dict:
    """CPU model, SIMD flags and cores, memory, GPUs (name), Python/TF/Keras versions, the commit."""
    import keras
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    simd = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    # What decides which kernels TensorFlow, XLA and oneDNN pick (AVX2 or AVX-512).
                    simd = sorted(flag for flag in line.split(":", 1)[1].split() if flag.startswith(("avx", "amx")))
                    break
    except OSError:
        pass
    memory_gib = None
    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    gpus = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        gpus.append(details.get("device_name", gpu.name))
    return {
        "cpu": cpu,
        "cpu_simd": simd,
        "cpu_cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "gpus": gpus,
        "device": ", ".join(gpus) if gpus else f"CPU ({os.cpu_count()} cores)",
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "platform": platform.platform(),
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        "commit": source_commit(),
    }


def repeat_timed(fn: Callable[[], int], repeats: int) -> List[float]:
    """Runs ``fn`` (returns the number of items it processed) ``repeats`` times; items/s each."""
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        items = fn()
        rates.append(items / (time.perf_counter() - started))
    return rates


def read_records(path: str) -> List[Dict]:
    """The measurements of a ``--json`` file (as :class:`Output` writes them), in order."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB.

    Linux's ``VmHWM`` (the high-water mark of this program's own memory), not
    ``getrusage``'s ``ru_maxrss``: Linux carries ``ru_maxrss`` over from the parent
    through fork and exec, so a benchmark child started by a large parent reported the
    parent's size (7.5 GB for a 750 MB child at the end of the full grid).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError):
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def rss_mib() -> float:
    """Current resident memory of this process, MiB (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


class Output:
    """Collects measurements, appends JSON lines, prints one rich table per suite."""

    def __init__(self, json_path: Optional[str], console=None):
        from mnist_core.reporting import make_console

        # Wide enough for the tables when stdout is a file or pipe (rich assumes 80 then).
        self.console = console or make_console()
        self.json_path = json_path
        self.machine = machine_description()
        self.measurements: List[Measurement] = []
        if json_path:
            os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
            open(json_path, "w").close()

    def add(self, measurement: Measurement) -> Measurement:
        self.measurements.append(measurement)
        if self.json_path:
            with open(self.json_path, "a") as f:
                f.write(json.dumps(measurement.to_json(self.machine)) + "\n")
        return measurement

    def table(self, title: str, columns: List[str], rows: List[List]) -> None:
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for i, column in enumerate(columns):
            table.add_column(column, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*[_cell(v) for v in row])
        self.console.print(table)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if np.isnan(value):
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)
