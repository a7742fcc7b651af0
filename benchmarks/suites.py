"""The benchmark suites: pipeline, train, fit, scaling, tta.

``train`` and ``fit`` time the same thing: steady-state training images/s of one model,
optimizer (Adam 1e-3), batch size and data, after warm-up. mnist_core runs its compiled
loop exactly as the controller does (``program.make_program``); ``fit`` is the tutorial
recipe users run today — ``model.compile(...)`` + ``model.fit`` on float32 numpy arrays —
with Keras' defaults (``steps_per_execution=1``, ``jit_compile="auto"``, which Keras
resolves to XLA off on CPU-only machines and on for these models on GPUs), and again with ``steps_per_execution``/``jit_compile`` matched to
mnist_core's. Both report the accuracy metric, so both do the same work per step. Their
timed windows are interleaved round by round (see :func:`train_and_fit`).
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from mnist_core.errors import MnistCoreError

from benchmarks.common import Measurement, Output, peak_rss_mib, read_records, repeat_timed, rss_mib

MODELS = ("mlp", "deep_mlp", "cnn", "lenet")


class BenchmarkError(MnistCoreError):
    """A benchmark's child process failed; its last stderr line says why."""


def _last_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"


@dataclass
class Settings:
    """What to run; ``--quick`` shrinks every grid."""

    models: List[str]
    batch_sizes: List[int]
    steps_per_loop: List[int]
    jit: List[bool]
    precisions: List[str]
    repeats: int
    # Seconds per timed window: the step count is calibrated per model and batch size
    # (a cnn step costs ~30 mlp steps), and model.fit is timed over the same steps.
    window_seconds: float
    replicas: List[int]
    dataset_sizes: List[int]
    tta: List[Dict]
    seed: int = 42


def calibrated_steps(seconds_per_step: float, window_seconds: float, max_steps: int = 100000) -> int:
    """Steps filling a window of ``window_seconds``.

    At least 5, so that a window of fast steps is never one call; but only 2 when a single
    step outlasts the window (XLA ``cnn`` at batch 2048 on 2 CPU cores takes ~14 s a step,
    and five of them per window, times repeats and steps-per-loop settings, made the full
    grid take hours without making the figure any better).
    """
    floor = 2 if seconds_per_step > window_seconds else 5
    return int(min(max_steps, max(floor, round(window_seconds / max(seconds_per_step, 1e-6)))))


# --------------------------------------------------------------------------- pipeline


def pipeline(out: Output, settings: Settings, data, data_dir: Optional[str]) -> None:
    """images/s of the training input pipeline alone, per source and batch size."""
    from mnist_core import data as data_lib

    def timed_load(load):
        started = time.perf_counter()
        return load(), time.perf_counter() - started

    sources = {"in-memory arrays": (data, 0.0)}
    if data_dir and Path(data_dir).is_dir() and data_lib.has_idx_files(Path(data_dir)):
        sources["IDX files"] = timed_load(lambda: data_lib.load_idx_dir(Path(data_dir), data.name))
    if data_lib.tfds_prepared("mnist"):
        sources["TFDS mnist"] = timed_load(lambda: data_lib.load_tfds("mnist"))
    rows = []
    for source, (source_data, load_seconds) in sources.items():
        for batch_size in settings.batch_sizes:
            dataset = data_lib.train_dataset(source_data.train_images, source_data.train_labels,
                                             global_batch_size=batch_size, seed=settings.seed,
                                             input_shape=(28, 28, 1))
            iterator = iter(dataset)
            steps = max(20, int(settings.window_seconds * 400000) // batch_size)
            started = time.perf_counter()
            for _ in range(min(steps, source_data.num_train // batch_size)):
                next(iterator)  # the first epoch (thread pools, autotuning): warm-up, reported apart
            warmup = time.perf_counter() - started

            def consume():
                for _ in range(steps):
                    next(iterator)
                return steps * batch_size

            rates = repeat_timed(consume, settings.repeats)
            m = out.add(Measurement("pipeline", source, {"source": source, "batch_size": batch_size,
                                                         "examples": source_data.num_train},
                                    "images/s", rates, {"warmup_seconds": warmup, "load_seconds": load_seconds}))
            rows.append([source, batch_size, m.median, min(rates), max(rates), load_seconds])
    out.table("pipeline: tf.data training input alone (no model)",
              ["source", "batch", "images/s", "min", "max", "load s"], rows)


# --------------------------------------------------------------------------- train / fit


def core_config(model: str, batch_size: int, steps_per_loop: int, jit, precision: str, seed: int,
                num_train: int = 60000):
    """The TrainConfig every mnist_core measurement uses (Adam, as the fit baseline).

    ``steps_per_loop=0`` and ``jit="auto"`` are mnist_core's defaults; the epochs are those
    of a default run, which is what ``--jit-compile auto`` weighs its decision against.
    """
    from mnist_core.config import TrainConfig

    return TrainConfig(model=model, batch_size=batch_size, steps_per_loop=steps_per_loop, jit_compile=jit,
                       precision=precision, optimizer="adam", seed=seed, quiet=True)


def run_steps(program, iterator, steps_per_loop: int, total: int) -> int:
    """Runs ``total`` steps in calls of ``steps_per_loop``, as the controller does; returns images."""
    import tensorflow as tf

    done = 0
    while done < total:
        n = min(steps_per_loop, total - done)
        result = program.train_loop(iterator, tf.constant(n, tf.int32))
        float(result["count"])  # wait for the result, as the controller does
        done += n
    return total * program.config.batch_size


class CoreRunner:
    """mnist_core's loop for one configuration, built once and timed in windows.

    Construction builds the program exactly as the controller does
    (``program.make_program``) and runs one step: tracing and compilation, reported as
    ``warmup_seconds``. ``calibrate`` then times a probe and fixes the window length in
    steps; each ``window()`` is one timed window. Keeping runners alive lets the grid
    interleave the windows of mnist_core and ``model.fit`` (see :func:`train_and_fit`).
    """

    def __init__(self, config, data, strategy=None):
        import keras
        import tensorflow as tf

        from mnist_core import precision
        from mnist_core.program import make_program

        gc.collect()  # free the previous measurement's pipeline threads and variables first
        self.config = config
        keras.utils.set_random_seed(config.seed)
        with precision.policy(config.precision):
            self.program = make_program(config, strategy or tf.distribute.get_strategy(), data.num_train)
            self.iterator = self.program.train_iterator(data)
        started = time.perf_counter()
        self.run(1)  # trace + compile (once: num_steps is a tensor, every length shares it)
        if config.steps_per_loop == 0:
            # Automatic steps per loop, decided as the controller decides them: one timed
            # call of the first length sets the calls' length by time.
            from mnist_core.program import timed_steps_per_loop

            call = time.perf_counter()
            spl = self.program.steps_per_loop
            self.run(spl)
            self.program.steps_per_loop = timed_steps_per_loop((time.perf_counter() - call) / spl,
                                                               self.program.steps_per_epoch)
        self.warmup_seconds = time.perf_counter() - started
        self.steps: Optional[int] = None

    def run(self, total: int) -> int:
        from mnist_core import precision

        with precision.policy(self.config.precision):
            return run_steps(self.program, self.iterator, self.program.steps_per_loop, total)

    def calibrate(self, window_seconds: float, steps: Optional[int] = None) -> int:
        """Fixes the window length: ``steps``, or the steps that fill ``window_seconds``."""
        # Probe the step time. One step that already outlasts the window is calibration enough.
        started = time.perf_counter()
        self.run(1)
        seconds_per_step = time.perf_counter() - started
        if seconds_per_step < window_seconds:
            spl = self.program.steps_per_loop
            probe = min(spl, 5) if spl > 1 else 5
            started = time.perf_counter()
            self.run(probe)
            seconds_per_step = (time.perf_counter() - started) / probe
        self.steps = steps or calibrated_steps(seconds_per_step, window_seconds)
        return self.steps

    def window(self) -> float:
        """One timed window of ``self.steps`` steps: images/s."""
        started = time.perf_counter()
        images = self.run(self.steps)
        return images / (time.perf_counter() - started)


def measure_core(config, data, window_seconds: float, repeats: int, strategy=None,
                 steps: Optional[int] = None) -> Dict:
    """One configuration alone: warm-up seconds, steps per window, images/s per repeat.

    ``steps`` per window, or calibrated to fill ``window_seconds``.
    """
    runner = CoreRunner(config, data, strategy)
    runner.calibrate(window_seconds, steps)
    rates = [runner.window() for _ in range(repeats)]
    rss = rss_mib()  # while this measurement's pipeline (and its copy of the data) is alive
    return {"rates": rates, "warmup_seconds": runner.warmup_seconds, "steps": runner.steps, "rss_mib": rss}


class FitRunner:
    """Keras ``model.fit`` on float32 numpy arrays, the tutorial recipe, timed in windows.

    Construction builds and compiles the model and runs one execution (tracing and
    compilation: ``warmup_seconds``). Each ``window()`` is one ``model.fit`` call over
    the whole training set (shuffled, epochs as users run them), stopped by a callback
    after ``steps`` batches rounded up to whole executions. The window runs from the
    first execution's start to the last one's end: the per-call set-up of ``fit`` (data
    adapter, iterator) is paid once per training run by users, so it is not in a window.
    """

    def __init__(self, model_name: str, batch_size: int, data, steps: int, seed: int,
                 steps_per_execution: int = 1, jit_compile="auto"):
        import math

        import keras

        from mnist_core import models

        gc.collect()
        keras.utils.set_random_seed(seed)
        spec = models.get(model_name)
        self.model = models.build(spec)
        steps_per_epoch = data.num_train // batch_size
        self.spe = max(1, min(steps_per_execution, steps, steps_per_epoch))
        self.model.compile(optimizer=keras.optimizers.Adam(1e-3),
                           loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                           metrics=["accuracy"], steps_per_execution=self.spe, jit_compile=jit_compile)
        # Whole executions per epoch: Keras ends an epoch with a shorter execution otherwise
        # (468 batches at spe 100: 4 x 100 + 68), and a window counted as whole executions
        # would then claim batches that never ran.
        n = steps_per_epoch // self.spe * self.spe * batch_size
        self.x = (data.train_images[:n].astype("float32") / 255.0).reshape((n, *spec.input_shape))
        self.y = data.train_labels[:n].astype("int64")
        self.batch_size = batch_size
        self.executions = math.ceil(steps / self.spe)  # executions per timed window
        started = time.perf_counter()
        self._fit(1)
        self.warmup_seconds = time.perf_counter() - started
        self.jit_compile_resolved = bool(self.model.jit_compile)
        self.timed_steps = self.executions * self.spe

    def _fit(self, executions: int) -> float:
        """Runs ``executions`` executions in one ``fit`` call; seconds from first start to last end."""
        import math

        import keras

        marks: List[float] = []

        class Clock(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                if not marks:
                    marks.append(time.perf_counter())

            def on_train_batch_end(self, batch, logs=None):
                marks.append(time.perf_counter())
                if len(marks) > executions:
                    self.model.stop_training = True

        epochs = math.ceil(executions * self.spe * self.batch_size / len(self.y)) + 1
        self.model.fit(self.x, self.y, batch_size=self.batch_size, epochs=epochs, verbose=0, shuffle=True,
                       callbacks=[Clock()])
        return marks[executions] - marks[0]

    def window(self) -> float:
        """One timed window: images/s."""
        return self.executions * self.spe * self.batch_size / self._fit(self.executions)


def train_and_fit(out: Output, settings: Settings, data, suites: List[str], strategy=None,
                  replicas: int = 1) -> None:
    """The ``train`` grid and, with ``fit``, the model.fit baselines side by side.

    Per model and batch size, every mnist_core configuration and every ``model.fit``
    variant is built and warmed up first; then the timed windows run in rounds, one window
    of each per round. On a shared or throttled machine the speed drifts by 10-30% over
    minutes; measured in blocks minutes apart, a ratio picked that up. Interleaved, each
    round's windows see the same machine, and the ratio is the median of the per-round
    ratios.
    """
    rows = []
    max_spl = max(settings.steps_per_loop)  # mnist_core's setting that the ratios use
    for model in settings.models:
        for batch_size in settings.batch_sizes:
            core = {}  # (precision, jit, spl) -> CoreRunner
            for precision in settings.precisions:
                for jit in settings.jit:
                    for spl in settings.steps_per_loop:
                        runner = CoreRunner(core_config(model, batch_size, spl, jit, precision, settings.seed),
                                            data, strategy)
                        runner.calibrate(settings.window_seconds)
                        core[(precision, jit, spl)] = runner
            # mnist_core with default flags: --jit-compile auto (decided by timing, or from
            # the cache of an earlier run on this machine) and automatic steps per loop.
            defaults = CoreRunner(core_config(model, batch_size, 0, "auto", "float32", settings.seed), data, strategy)
            defaults.calibrate(settings.window_seconds)
            fits = {}  # label -> (jit setting, FitRunner)
            if "fit" in suites:
                reference = core.get(("float32", False, max_spl)) or next(iter(core.values()))
                variants = [("defaults", 1, "auto")]
                variants += [(f"matched spe={max_spl} jit={'on' if jit else 'off'}", max_spl, jit)
                             for jit in settings.jit]
                for label, spe, jit in variants:
                    fits[label] = (jit, FitRunner(model, batch_size, data, reference.steps, settings.seed, spe, jit))
            DEFAULTS = ("mnist_core", "defaults")  # a key no fit label can be
            rates = {key: [] for key in [*core, *fits, DEFAULTS]}
            for _ in range(settings.repeats):
                for key, runner in core.items():
                    rates[key].append(runner.window())
                rates[DEFAULTS].append(defaults.window())
                for label, (_, runner) in fits.items():
                    rates[label].append(runner.window())

            medians = {}
            for (precision, jit, spl), runner in core.items():
                m = out.add(Measurement(
                    "train", f"mnist_core {model}",
                    {"trainer": "mnist_core", "model": model, "batch_size": batch_size, "precision": precision,
                     "jit_compile": jit, "steps_per_loop": spl, "timed_steps": runner.steps,
                     "replicas": replicas, "examples": data.num_train},
                    "images/s", rates[(precision, jit, spl)], {"warmup_seconds": runner.warmup_seconds}))
                medians[(precision, jit, spl)] = m.median
                rows.append([f"mnist_core {model}", batch_size, precision, "on" if jit else "off", spl, m.median,
                             min(m.samples), max(m.samples), runner.warmup_seconds, None])
            decision = defaults.program.jit_decision
            resolved = "auto→" + ("on" if defaults.program.jit else "off")
            m = out.add(Measurement(
                "train", f"mnist_core {model} (defaults)",
                {"trainer": "mnist_core", "model": model, "batch_size": batch_size, "precision": "float32",
                 "defaults": True, "jit_compile": "auto", "jit_compile_resolved": defaults.program.jit,
                 "jit_decision": decision.to_dict(), "steps_per_loop": defaults.program.steps_per_loop,
                 "timed_steps": defaults.steps, "replicas": replicas, "examples": data.num_train},
                "images/s", rates[DEFAULTS], {"warmup_seconds": defaults.warmup_seconds}))
            rows.append([f"mnist_core {model} (defaults)", batch_size, "float32", resolved,
                         f"auto→{defaults.program.steps_per_loop}", m.median, min(m.samples), max(m.samples),
                         defaults.warmup_seconds, None])
            fixed = [key for key in medians if key[0] == "float32"]
            if fixed:
                best = max(fixed, key=medians.get)
                out.add(Measurement("train", f"ratio defaults/best fixed {model}",
                                    {"model": model, "batch_size": batch_size, "best_jit_compile": best[1],
                                     "best_steps_per_loop": best[2], "defaults_jit_compile": defaults.program.jit},
                                    "x", [d / b for d, b in zip(rates[DEFAULTS], rates[best])]))
            for label, (jit, runner) in fits.items():
                m = out.add(Measurement(
                    "fit", f"model.fit {model} ({label})",
                    {"trainer": "model.fit", "model": model, "batch_size": batch_size, "precision": "float32",
                     "steps_per_execution": runner.spe, "jit_compile": jit,
                     "jit_compile_resolved": runner.jit_compile_resolved, "timed_steps": runner.timed_steps,
                     "examples": data.num_train},
                    "images/s", rates[label], {"warmup_seconds": runner.warmup_seconds}))
                # vs fit's defaults: mnist_core's defaults; vs matched: the same XLA setting.
                ratio = None
                if jit == "auto":
                    paired = [c / f for c, f in zip(rates[DEFAULTS], rates[label])]
                    r = out.add(Measurement("fit", f"ratio mnist_core/fit {model} ({label})",
                                            {"model": model, "batch_size": batch_size, "fit": label,
                                             "mnist_core_jit_compile": resolved,
                                             "mnist_core_images_per_second": statistics.median(rates[DEFAULTS])},
                                            "x", paired))
                    ratio = r.median
                candidates = [key for key in medians if key[0] == "float32" and key[2] == max_spl and key[1] == jit]
                if candidates:
                    best = max(candidates, key=medians.get)
                    paired = [c / f for c, f in zip(rates[best], rates[label])]
                    r = out.add(Measurement("fit", f"ratio mnist_core/fit {model} ({label})",
                                            {"model": model, "batch_size": batch_size, "fit": label,
                                             "mnist_core_jit_compile": best[1],
                                             "mnist_core_images_per_second": medians[best]}, "x", paired))
                    ratio = r.median
                rows.append([f"model.fit {model} ({label})", batch_size, "float32",
                             "auto→" + ("on" if runner.jit_compile_resolved else "off") if jit == "auto"
                             else ("on" if jit else "off"), runner.spe, m.median, min(m.samples),
                             max(m.samples), runner.warmup_seconds, ratio])
            del core, fits, defaults
    title = "train (mnist_core loop)" + (" vs model.fit" if "fit" in suites else "")
    out.table(f"{title}; ratio = mnist_core / fit (median of per-round ratios)",
              ["trainer", "batch", "precision", "jit", "spl/spe", "images/s", "min", "max", "warm-up s", "ratio"],
              rows)


# --------------------------------------------------------------------------- scaling


def _subprocess_suite(args: List[str], timeout: int = 1800) -> List[Dict]:
    """Runs ``python -m benchmarks.run ARGS --json TMP`` (a fresh process: TensorFlow's
    logical devices are fixed at start-up, and peak memory is per process)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.jsonl")
        result = subprocess.run([sys.executable, "-m", "benchmarks.run", *args, "--json", path, "--no-tables"],
                                capture_output=True, text=True, timeout=timeout,
                                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if result.returncode != 0:
            raise BenchmarkError(f"benchmark subprocess {' '.join(args)} failed: {_last_error(result.stderr)}")
        return read_records(path)


def scaling(out: Output, settings: Settings, data, common_args: List[str]) -> None:
    """images/s against replicas (logical CPUs or GPUs), memory and epoch time against data size.

    Replica counts above 1 and the dataset sizes run in fresh processes: logical devices
    are fixed when TensorFlow starts, and peak memory is a per-process figure.
    """
    rows = []
    model, batch_size, spl = "mlp", max(settings.batch_sizes), max(settings.steps_per_loop)
    base = None
    for n in settings.replicas:
        if n == 1:
            r = measure_core(core_config(model, batch_size, spl, False, "float32", settings.seed), data,
                             settings.window_seconds, settings.repeats)
            records = [{"config": {"model": model, "batch_size": batch_size, "steps_per_loop": spl,
                                   "timed_steps": r["steps"]}, "samples": r["rates"],
                        "warmup_seconds": r["warmup_seconds"]}]
        else:
            records = _subprocess_suite([*common_args, "--suite", "train", "--models", model, "--batch-sizes",
                                         str(batch_size), "--steps-per-loop", str(spl), "--jit", "off",
                                         "--precisions", "float32", "--replicas", str(n)])
            records = [r for r in records if not r["config"].get("defaults") and not r["name"].startswith("ratio")]
        for record in records:
            m = out.add(Measurement("scaling", f"replicas {n}", {**record["config"], "replicas": n},
                                    "images/s", record["samples"], {"warmup_seconds": record["warmup_seconds"]}))
            base = base or m.median
            rows.append([f"{model} batch {batch_size}, {n} replica(s)", m.median, m.median / base, None, None, None])
    sizes = ",".join(str(size) for size in sorted(settings.dataset_sizes))
    for record in _subprocess_suite([*common_args, "--suite", "epoch", "--dataset-sizes", sizes,
                                     "--models", "deep_mlp", "--batch-sizes", "128"]):
        m = out.add(Measurement("scaling", record["name"], record["config"], "seconds", record["samples"],
                                {"peak_rss_mib": record["peak_rss_mib"], "rss_growth_mib": record["rss_growth_mib"]}))
        rows.append([f"deep_mlp epoch of {record['config']['examples']:,} examples", None, None, m.median,
                     record["peak_rss_mib"], record["rss_growth_mib"]])
    out.table("scaling: replicas (mirrored, logical CPU devices without GPUs) and dataset size",
              ["run", "images/s", "vs 1", "epoch s", "peak RSS MiB", "RSS growth MiB"], rows)


def epoch(out: Output, settings: Settings, data) -> None:
    """One full training epoch per dataset size (ascending, tiled from ``data``), and the
    process's peak memory after it (peak RSS only grows, so sizes go smallest first)."""
    import dataclasses

    from mnist_core.program import auto_steps_per_loop

    model, batch_size = settings.models[0], settings.batch_sizes[0]
    for size in sorted(settings.dataset_sizes):
        reps = -(-size // data.num_train)
        pick = lambda a: np.concatenate([a] * reps)[:size]  # noqa: E731
        sized = dataclasses.replace(data, train_images=pick(data.train_images), train_labels=pick(data.train_labels))
        steps = size // batch_size
        config = core_config(model, batch_size, auto_steps_per_loop(steps), False, "float32", settings.seed)
        before = rss_mib()
        r = measure_core(config, sized, 0.0, 1, steps=steps)
        out.add(Measurement("epoch", f"epoch {size}", {"model": model, "batch_size": batch_size, "examples": size},
                            "seconds", [steps * batch_size / r["rates"][0]],
                            {"peak_rss_mib": peak_rss_mib(), "rss_growth_mib": r["rss_mib"] - before}))


# --------------------------------------------------------------------------- time to accuracy


def _tta_run(job: Dict, seed: int, data_dir: str) -> Dict:
    """One training run of a tta job: its history, final accuracy and start-up seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = os.path.join(tmp, "run")
        args = [sys.executable, "-m", "mnist_core.train", *job["args"], "--data-dir", data_dir,
                "--seed", str(seed), "--output-dir", run_dir, "--quiet"]
        if job.get("stop_at_target"):
            args += ["--target-accuracy", str(min(job["targets"]))]
        started = time.perf_counter()
        result = subprocess.run(args, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise BenchmarkError(f"tta run of {job['name']} failed: {_last_error(result.stderr)}")
        with open(os.path.join(run_dir, "history.json")) as f:
            history = json.load(f)
        with open(os.path.join(run_dir, "summary.json")) as f:
            summary = json.load(f)
    # wall - summary["seconds"]: interpreter start and imports (plus a negligible exit);
    # elapsed_seconds: trainer start to the end of an epoch, leaving out saving model.keras
    # and summary.json afterwards.
    return {"history": history, "startup": wall - summary["seconds"], "final": summary["test_accuracy"]}


def time_to(run: Dict, target: float) -> Optional[Dict]:
    """Seconds from process start and from the first step to the end of the first evaluated
    epoch at or above ``target`` (None if no epoch reached it).

    From the first step: the epochs' own seconds (training and evaluation) up to that one,
    so start-up, data loading and compilation before the first step are left out.
    """
    history = run["history"]
    for i, epoch in enumerate(history):
        accuracy = epoch.get("test_accuracy")
        if accuracy is not None and accuracy >= target:
            return {"from_start": run["startup"] + epoch["elapsed_seconds"],
                    "from_first_step": sum(e["seconds"] for e in history[:i + 1]), "epoch": epoch["epoch"]}
    return None


def tta(out: Output, settings: Settings, shared: str) -> None:
    """Wall time to target test accuracies, from process start and from the first step,
    median over seeds; each job's final test accuracy beside it.

    A job is a recipe (or flags) run to its last epoch once per seed; every target's time is
    read off the same run's history, so one run gives the time to several targets and the
    final accuracy (the epochs before the target are the same as in a run stopped there).
    """
    rows = []
    for job in settings.tta:
        data_dir = os.path.join(shared, job["data"])
        if not os.path.isdir(data_dir):
            out.console.print(f"tta: skipped {job['name']} ({data_dir} not found)")
            continue
        seeds = job.get("seeds", [settings.seed])
        runs = [_tta_run(job, seed, data_dir) for seed in seeds]
        finals = [run["final"] for run in runs]
        config = {k: v for k, v in job.items() if k != "targets"}
        out.add(Measurement("tta", f"{job['name']} final accuracy", config, "accuracy", finals,
                            {"epochs": [len(run["history"]) for run in runs]}))
        for target in job["targets"]:
            times = [time_to(run, target) for run in runs]
            reached = [t for t in times if t is not None]
            m = out.add(Measurement(
                "tta", f"{job['name']} to {target}", {**config, "target": target}, "seconds",
                [t["from_start"] for t in reached],
                {"reached": len(reached) == len(runs), "reached_runs": len(reached), "runs": len(runs),
                 "from_first_step_seconds": (statistics.median(t["from_first_step"] for t in reached)
                                             if reached else None),
                 "epochs_to_target": [t["epoch"] for t in reached],
                 "final_test_accuracy": statistics.median(finals), "final_test_accuracies": finals}))
            rows.append([job["name"], job["data"], target, f"{len(reached)}/{len(runs)}",
                         m.median if reached else None,
                         m.extra["from_first_step_seconds"], f"{statistics.median(finals):.4f}"])
    out.table("tta: time to test accuracy (median over seeds; one full run per seed)",
              ["job", "data", "target", "reached", "s from process start", "s from first step", "final acc"],
              rows)


def tutorials(out: Output, shared: str, seeds: List[int], scripts: Optional[List[str]] = None) -> None:
    """Each tutorial script three ways: its recipe in mnist_core, the script's own code under
    ``model.fit``, and the script's own model and arrays through ``mnist_core.train(model=...)``.

    All train on ``mnist-5k`` (5,000 real training digits, the official 10,000-digit test
    set) with the same seed, once per seed; the final test accuracy and loss of each are
    recorded. The recipe runs through ``mnist_core.train`` in this process (the Python API
    the command line uses), the script through :func:`benchmarks.tutorial_scripts.run_script`
    and :func:`benchmarks.tutorial_scripts.run_script_in_mnist_core`.
    """
    import keras

    from benchmarks.tutorial_scripts import SCRIPTS, run_script, run_script_in_mnist_core
    from mnist_core import data as data_lib
    from mnist_core import recipes
    from mnist_core.config import TrainConfig
    from mnist_core.reporting import Reporter
    from mnist_core.trainer import Trainer

    data_dir = os.path.join(shared, "mnist-5k")
    if not os.path.isdir(data_dir):
        out.console.print(f"tutorials: skipped ({data_dir} not found)")
        return
    data = data_lib.load("mnist", data_dir)
    rows = []
    for script in SCRIPTS.values():
        if scripts and script.script not in scripts:
            continue
        options = recipes.get(script.recipe).options
        runs: Dict[str, List[Dict]] = {"recipe": [], "fit": [], "model=": []}
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                config = TrainConfig.from_dict({**options, "data_dir": data_dir, "seed": seed,
                                                "output_dir": os.path.join(tmp, "run"), "quiet": True})
                summary = Trainer(config, Reporter(quiet=True)).run()
                runs["recipe"].append({"test_accuracy": summary["test_accuracy"], "test_loss": summary["test_loss"]})
                keras.backend.clear_session()
                runs["model="].append(run_script_in_mnist_core(script, data, seed, os.path.join(tmp, "model")))
            keras.backend.clear_session()
            runs["fit"].append(run_script(script, data, seed))
            keras.backend.clear_session()
        config = {"script": script.script, "recipe": script.recipe, "data": "mnist-5k", "seeds": seeds}
        for trainer, name in (("recipe", f"{script.recipe} (mnist_core recipe)"),
                              ("fit", f"script {script.script} (model.fit)"),
                              ("model=", f"script {script.script} (mnist_core.train(model=...))")):
            out.add(Measurement("tutorials", name, {**config, "trainer": trainer}, "accuracy",
                                [r["test_accuracy"] for r in runs[trainer]],
                                {"test_loss": [r["test_loss"] for r in runs[trainer]]}))
        cells = {k: " / ".join(f"{r['test_accuracy']:.4f}" for r in v) for k, v in runs.items()}
        rows.append([script.script, cells["recipe"], cells["fit"], cells["model="]])
    out.table(f"tutorials: test accuracy on mnist-5k, seeds {'/'.join(map(str, seeds))}",
              ["script", "recipe (mnist_core)", "script's own code (model.fit)",
               "script's own code (mnist_core.train)"], rows)
