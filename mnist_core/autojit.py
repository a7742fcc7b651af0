"""``--jit-compile auto``: compile the step with XLA only where it is faster, decided by timing.

On CPU, XLA makes the dense models 1.1-1.5x faster (it fuses Adam's element-wise update
into native code) and the tutorial CNN about 3x slower (its convolutions); on GPUs it
usually helps. No rule of thumb covers a user's model, so ``auto`` measures: both variants
of the compiled loop are built over the same model and optimizer, each is warmed up
(tracing, XLA compilation) and then timed in alternating calls on synthetic batches of the
run's shape, and the faster is kept. The model's and optimizer's variables are restored
afterwards, so the run starts exactly as if nothing had been timed.

The decision is cached on disk (``$MNIST_CORE_CACHE_DIR``, default
``~/.cache/mnist_core/jit.json``) under a key made of everything it depends on — the
model's architecture and code, optimizer, batch, precision, strategy and replicas, steps
per loop, the device and the TensorFlow/Keras versions — so a repeated run pays nothing
and a change of any of them decides again.

Without timing: ``--deterministic`` makes ``auto`` mean off (a choice must not depend on
timing noise, and XLA has no deterministic implementation of every op, which is why
Keras' own ``auto`` is off then too); ``multi_worker`` means off (every worker must
compile the same program, and timings differ between workers); so do the cases where XLA
cannot be used at all (a ``train_step`` override or synchronised BatchNorm on several
replicas). A resumed run reuses the choice recorded when it started.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, Optional

MARGIN = 0.02  # XLA must win by 2%: compiling costs time and memory, a tie keeps it off
TIMED_CALLS = 3
# After one probe call of each, a ratio beyond this is decided at once: XLA's cnn on CPU is
# 5x slower, and timing it more would only make the first run wait.
CLEAR = 1.5
CALL_SECONDS = 0.25  # a timed call this long keeps dispatch and timer noise small
MAX_CALL_STEPS = 200
CLOSE = 0.10  # within 10%, the 2% margin needs more rounds to be told apart from noise
CLOSE_CALLS = 7


class XlaCannotCompile(Exception):
    """XLA failed to compile the step (an op without an XLA kernel, a dynamic shape...)."""


def xla_reason(error: BaseException) -> str:
    """Why XLA could not compile, in a few words: the unsupported ops if XLA named them."""
    import re

    text = " ".join(str(error).split())
    match = re.search(r"unsupported operations? when trying to compile graph .*? on XLA_\w+: ([\w, ]+?)(?: \(|$)", text)
    if match:
        ops = sorted({op.strip() for op in match.group(1).split(",") if op.strip()})
        return f"no XLA kernel for {', '.join(ops)}"
    text = re.sub(r"\{\{.*?\}\}\s*", "", text)
    return text[:160]


def run_once(loop: Callable, make_input: Callable[[], object], variables, after: Callable[[], None], *args) -> None:
    """Calls ``loop`` once on ``make_input()`` and restores ``variables`` afterwards.

    Raises:
        XlaCannotCompile: the call failed in TensorFlow (the loop is an XLA variant that
            XLA cannot compile); the variables are restored either way.
    """
    import tensorflow as tf

    saved = [v.numpy() for v in variables]
    try:
        result = loop(make_input(), *args)
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, result)  # wait for it
    except (tf.errors.OpError, ValueError, TypeError) as e:
        raise XlaCannotCompile(xla_reason(e)) from None
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)
        after()


@dataclasses.dataclass
class JitDecision:
    """What ``--jit-compile`` resolved to, and why.

    Attributes:
        choice: Compile with XLA.
        reason: ``forced`` (on/off given), ``timed``, ``cached``, ``recorded`` (resume),
            or why no timing was possible (``deterministic``, ``multi_worker``, XLA
            cannot compile the step...).
        seconds: What deciding cost (0 when cached or not timed).
        ms_per_step: The timed milliseconds per step, ``{"on": x, "off": y}``.
    """

    choice: bool
    reason: str
    seconds: float = 0.0
    ms_per_step: Dict[str, float] = dataclasses.field(default_factory=dict)
    why: str = ""  # for a cached decision that was not timed: why (XLA cannot compile the step)

    def describe(self) -> str:
        """One line for the console."""
        choice = "on" if self.choice else "off"
        if self.reason == "timed":
            return (f"--jit-compile auto: {choice} (XLA {self.ms_per_step['on']:.2f} ms/step, without "
                    f"{self.ms_per_step['off']:.2f}; deciding took {self.seconds:.1f} s, cached for next time)")
        if self.reason == "cached":
            timing = ""
            if self.ms_per_step:
                timing = f" (XLA {self.ms_per_step['on']:.2f} ms/step, without {self.ms_per_step['off']:.2f})"
            elif self.why:
                timing = f" ({self.why})"
            return f"--jit-compile auto: {choice}, decided earlier on this machine{timing}"
        if self.reason == "recorded":
            return f"--jit-compile auto: {choice}, as the run recorded when it started"
        return f"--jit-compile auto: {choice} ({self.reason})"

    def to_dict(self) -> Dict:
        return dataclasses.asdict(self)


def cache_path() -> Path:
    base = os.environ.get("MNIST_CORE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mnist_core")
    return Path(base) / "jit.json"


def _device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        names = []
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                names.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
            except Exception:
                names.append(gpu.name)
        return "GPU: " + ", ".join(names)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                     cpu)
        flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
        simd = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4")))
        return f"CPU: {model} x{os.cpu_count()} [{' '.join(simd)}]"
    except OSError:
        return f"CPU: {cpu} x{os.cpu_count()}"


def _model_code(model, factory) -> str:
    """The model's architecture and code: what decides how fast its step is."""
    parts = [f"{type(model).__module__}.{type(model).__qualname__}"]
    try:
        parts.append(json.dumps(_without_names(model.get_config()), sort_keys=True, default=str))
    except Exception:  # a subclassed model without get_config
        pass
    parts.append(str([(tuple(v.shape), str(v.dtype)) for v in model.weights]))
    for obj in (type(model), factory):
        try:
            parts.append(inspect.getsource(obj))
        except (OSError, TypeError):
            pass
    return "\n".join(parts)


def _without_names(value):
    """A config without its names: Keras numbers them per process (dense_3, dense_7)."""
    if isinstance(value, dict):
        return {k: _without_names(v) for k, v in value.items() if k != "name"}
    if isinstance(value, list):
        return [_without_names(v) for v in value]
    return value


def cache_key(config, model, factory, replicas: int, steps_per_loop: int, loop: str = "pipeline") -> str:
    """The cache's key of a decision: everything the timing depended on (``loop``: whether
    the loop gathers its own batches, when XLA compiles whole calls, or takes tf.data's)."""
    import keras
    import tensorflow as tf

    fields = {
        "loop": loop,
        "model": hashlib.sha256(_model_code(model, factory).encode()).hexdigest(),
        "optimizer": config.optimizer, "update": config.update, "on_nonfinite": config.on_nonfinite,
        "batch_size": config.batch_size,
        "precision": config.precision, "strategy": config.strategy, "replicas": replicas,
        "steps_per_loop": steps_per_loop, "sync_batchnorm": config.sync_batchnorm, "device": _device(),
        "tensorflow": tf.__version__, "keras": keras.__version__,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def cached(key: str) -> Optional[JitDecision]:
    try:
        entry = json.loads(cache_path().read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("choice"), bool):
        return None
    return JitDecision(entry["choice"], "cached", 0.0, dict(entry.get("ms_per_step") or {}), str(entry.get("why") or ""))


def remember(key: str, decision: JitDecision) -> None:
    """Adds a decision to the cache file (best effort: a read-only home only re-decides)."""
    from mnist_core.errors import WriteError
    from mnist_core.files import write_json

    path = cache_path()
    try:
        entries = json.loads(path.read_text())
        if not isinstance(entries, dict):
            entries = {}
    except (OSError, ValueError):
        entries = {}
    entries[key] = {"choice": decision.choice, "ms_per_step": decision.ms_per_step, "decided": time.time()}
    if decision.reason != "timed":
        entries[key]["why"] = decision.reason
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, entries)
    except (OSError, WriteError):
        pass


def time_variants(loops: Dict[bool, Callable], make_iterator: Callable[[], object], variables, steps: int,
                  after: Callable[[], None] = lambda: None) -> Dict[str, float]:
    """Milliseconds per step of each loop variant, timed in alternating calls.

    Each variant is warmed up by one step (tracing, XLA compilation) and probed with one
    call of ``steps`` steps; a variant more than ``CLEAR`` times slower is decided at once.
    Otherwise calls long enough to time well (about ``CALL_SECONDS``) alternate, which goes
    first swapping each round, for ``TIMED_CALLS`` rounds, or ``CLOSE_CALLS`` when the two
    are within ``CLOSE`` of each other; the median counts. ``variables`` are saved first
    and restored after: the run continues from exactly the state it had before any timed
    step.
    """
    import tensorflow as tf

    saved = [v.numpy() for v in variables]
    times: Dict[bool, list] = {choice: [] for choice in loops}
    try:
        iterators = {choice: make_iterator() for choice in loops}

        def timed(choice, n) -> float:
            started = time.perf_counter()
            float(loops[choice](iterators[choice], tf.constant(n, tf.int32))["count"])  # waits for it
            return (time.perf_counter() - started) / n

        for choice in loops:  # tracing and XLA compilation: one step is enough
            try:
                timed(choice, 1)
            except tf.errors.OpError as e:
                if choice:
                    raise XlaCannotCompile(xla_reason(e)) from None
                raise
        probe = {choice: timed(choice, steps) for choice in loops}
        if max(probe.values()) > CLEAR * min(probe.values()):
            times = {choice: [value] for choice, value in probe.items()}
        else:
            n = int(min(MAX_CALL_STEPS, max(steps, round(CALL_SECONDS / min(probe.values())))))
            order = sorted(loops)
            rounds = TIMED_CALLS
            round_index = 0
            while round_index < rounds:
                for choice in (order if round_index % 2 == 0 else order[::-1]):
                    times[choice].append(timed(choice, n))
                round_index += 1
                if round_index == TIMED_CALLS:
                    medians = [statistics.median(values) for values in times.values()]
                    if max(medians) < (1 + CLOSE) * min(medians):
                        rounds = CLOSE_CALLS
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)
        after()
    return {"on" if choice else "off": 1000 * statistics.median(values) for choice, values in times.items()}


def decide(loops: Dict[bool, Callable], make_iterator: Callable[[], object], variables, steps: int, key: str,
           after: Callable[[], None] = lambda: None) -> JitDecision:
    """Times both variants (or takes the cached decision) and caches the result."""
    hit = cached(key)
    if hit is not None:
        return hit
    started = time.perf_counter()
    try:
        ms = time_variants(loops, make_iterator, variables, steps, after)
    except XlaCannotCompile as e:
        decision = JitDecision(False, f"XLA cannot compile the step: {e}", time.perf_counter() - started)
    else:
        choice = ms["on"] < (1 - MARGIN) * ms["off"]
        decision = JitDecision(choice, "timed", time.perf_counter() - started, ms)
    remember(key, decision)
    return decision
