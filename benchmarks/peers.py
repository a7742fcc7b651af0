"""The ``peers`` suite: the same models trained with PyTorch and JAX, beside mnist_core.

A user who owns a training loop could as well write it in PyTorch or JAX. This suite
trains the same architectures (the registry's ``mlp``, ``deep_mlp``, ``cnn``, ``lenet``:
same layers, parameter counts, dropout, BatchNorm and L2 terms), on the same data, with
Adam (1e-3) and the same batch size, and times them like the ``fit`` suite: every runner is
built and warmed up first, then their windows run in rounds, one of each per round, and a
ratio is the median of the per-round ratios.

* ``torch eager``: an ``nn.Module`` and the usual ``zero_grad``/``backward``/``step``;
* ``torch.compile``: the same step compiled by TorchInductor (where it compiles);
* ``jax.jit``: plain JAX (``jax.numpy`` and ``jax.lax``), Adam written out, one jitted step;
* ``mnist_core``: the default flags (``--jit-compile auto``, automatic steps per loop).

Batches are drawn from the in-memory arrays by one gather per step in every framework.
On a machine with a GPU every framework trains on it (the arrays live on the device).
``--precisions`` adds mixed precision: PyTorch's ``autocast`` (float16 with its
``GradScaler``), JAX with parameters and inputs cast to 16 bits inside the step (float32
master weights; no loss scaling, which plain JAX does not have), mnist_core's
``--precision``.
Each peer runs in a process of its own (spawned; the parent asks it for a window at its
turn in the round): TensorFlow, PyTorch's Linux wheel (with Triton's LLVM) and JAX crash
or compete for threads when loaded into one process.
PyTorch and JAX come with the optional extra ``pip install -e ".[peers]"``; a framework
that cannot be imported is reported in one line and the rest runs.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Dict, List, Optional

import numpy as np

from benchmarks.common import Measurement, Output

PEERS = ("torch eager", "torch.compile", "jax.jit")
LEARNING_RATE = 1e-3
L2 = 1e-3  # deep_mlp's kernel regulariser on its second Dense


def missing() -> Dict[str, str]:
    """Why each unavailable framework is unavailable (empty when both import)."""
    reasons = {}
    for name in ("torch", "jax"):
        try:
            __import__(name)
        except Exception as e:  # ImportError, or a broken install's own error
            reasons[name] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return reasons


def _epoch_indices(n: int, batch_size: int, rng: np.random.Generator):
    """Endless index batches: a fresh permutation per epoch, the remainder dropped (as mnist_core)."""
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start:start + batch_size]


class _Runner:
    """Times ``self.step(indices)`` in windows of calibrated length."""

    batch_size: int
    steps: Optional[int] = None
    warmup_seconds: float = 0.0

    def _sync(self) -> None:
        """Waits for the device (the last step's loss)."""

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step(next(self.indices))
        self._sync()

    def calibrate(self, window_seconds: float) -> int:
        started = time.perf_counter()
        self.run(5)
        per_step = (time.perf_counter() - started) / 5
        self.steps = max(5, round(window_seconds / max(per_step, 1e-6)))
        return self.steps

    def window(self) -> float:
        started = time.perf_counter()
        self.run(self.steps)
        return self.steps * self.batch_size / (time.perf_counter() - started)


# --------------------------------------------------------------------------- PyTorch


def _torch_model(name: str):
    import torch.nn as nn

    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 512), nn.ReLU(),
                             nn.Linear(512, 128), nn.ReLU(), nn.Linear(128, 10))
    if name == "deep_mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 512),
                             nn.BatchNorm1d(512, eps=1e-3, momentum=0.01), nn.ReLU(), nn.Dropout(0.2),
                             nn.Linear(512, 10))
    if name == "cnn":
        return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(), nn.Linear(32 * 13 * 13, 128),
                             nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))
    if name == "lenet":
        return nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 3), nn.ReLU(),
                             nn.AvgPool2d(2), nn.Conv2d(16, 120, 3), nn.ReLU(), nn.Flatten(),
                             nn.Linear(120 * 3 * 3, 84), nn.ReLU(), nn.Linear(84, 10))
    raise ValueError(f"no PyTorch version of {name!r}")


HALF = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


class TorchRunner(_Runner):
    def __init__(self, model_name: str, batch_size: int, data, seed: int, compile_step: bool = False,
                 precision: str = "float32"):
        import contextlib

        import torch
        import torch.nn.functional as F

        gc.collect()
        try:  # its own loggers reset levels when it loads; "No CUDA runtime" is not our output
            import logging

            torch._logging.set_logs(all=logging.ERROR)
        except Exception:
            pass
        torch.manual_seed(seed)
        torch.set_num_threads(os.cpu_count() or 1)
        self.batch_size = batch_size
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = _torch_model(model_name).train().to(self.device)
        self.parameters = sum(p.numel() for p in self.model.parameters())
        optimizer = torch.optim.Adam(self.model.parameters(), lr=LEARNING_RATE)
        images = data.train_images.astype(np.float32) / 255.0
        shape = (-1, 784) if model_name in ("mlp", "deep_mlp") else (-1, 1, 28, 28)
        self.x = torch.from_numpy(images.reshape(shape)).to(self.device)
        self.y = torch.from_numpy(data.train_labels.astype(np.int64)).to(self.device)
        penalised = [self.model[4].weight] if model_name == "deep_mlp" else []
        model = self.model
        half = HALF.get(precision)
        autocast = (lambda: torch.autocast(self.device, dtype=getattr(torch, half))) if half else contextlib.nullcontext
        scaler = torch.amp.GradScaler(self.device) if half == "float16" else None

        def train_step(x, y):
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y)
            for weight in penalised:
                loss = loss + L2 * (weight ** 2).sum()
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            return loss

        self.train_step = torch.compile(train_step) if compile_step else train_step
        self.indices = _epoch_indices(len(self.y), batch_size, np.random.default_rng(seed))
        self.loss = None
        started = time.perf_counter()
        self.run(3)  # torch.compile compiles here
        self.warmup_seconds = time.perf_counter() - started

    def step(self, indices) -> None:
        import torch

        index = torch.from_numpy(indices).to(self.device, non_blocking=True)
        self.loss = self.train_step(self.x.index_select(0, index), self.y.index_select(0, index))

    def _sync(self) -> None:
        float(self.loss.detach())


# --------------------------------------------------------------------------- JAX


def _glorot(key, shape, fan_in, fan_out):
    import jax

    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, minval=-limit, maxval=limit)


def _jax_model(name: str, key):
    """``(params, state, apply)`` with ``apply(params, state, x, key, training) -> (logits, state, penalty)``."""
    import jax
    import jax.numpy as jnp

    keys = iter(jax.random.split(key, 16))

    def dense(n_in, n_out):
        return {"w": _glorot(next(keys), (n_in, n_out), n_in, n_out), "b": jnp.zeros((n_out,))}

    def conv(k, c_in, c_out):
        return {"w": _glorot(next(keys), (k, k, c_in, c_out), k * k * c_in, k * k * c_out), "b": jnp.zeros((c_out,))}

    def conv_apply(p, x, padding):
        y = jax.lax.conv_general_dilated(x, p["w"], (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + p["b"]

    def pool(x, kind):
        window, strides = (1, 2, 2, 1), (1, 2, 2, 1)
        if kind == "max":
            return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, "VALID")
        return jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, "VALID") / 4.0

    def dropout(x, rate, key, training):
        if not training:
            return x
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
        return jnp.where(keep, x / (1.0 - rate), 0.0)

    relu = jax.nn.relu
    if name == "mlp":
        params = {"d1": dense(784, 1024), "d2": dense(1024, 512), "d3": dense(512, 128), "out": dense(128, 10)}

        def apply(p, s, x, key, training):
            for layer in ("d1", "d2", "d3"):
                x = relu(x @ p[layer]["w"] + p[layer]["b"])
            return x @ p["out"]["w"] + p["out"]["b"], s, 0.0

        return params, {}, apply
    if name == "deep_mlp":
        params = {"d1": dense(784, 512), "d2": dense(512, 512), "gamma": jnp.ones((512,)), "beta": jnp.zeros((512,)),
                  "out": dense(512, 10)}
        state = {"mean": jnp.zeros((512,)), "var": jnp.ones((512,))}

        def apply(p, s, x, key, training):
            k1, k2 = jax.random.split(key)
            x = dropout(relu(x @ p["d1"]["w"] + p["d1"]["b"]), 0.2, k1, training)
            h = x @ p["d2"]["w"] + p["d2"]["b"]
            if training:
                mean, var = h.mean(axis=0), h.var(axis=0)
                s = {"mean": 0.99 * s["mean"] + 0.01 * mean, "var": 0.99 * s["var"] + 0.01 * var}
            else:
                mean, var = s["mean"], s["var"]
            h = (h - mean) / jnp.sqrt(var + 1e-3) * p["gamma"] + p["beta"]
            x = dropout(relu(h), 0.2, k2, training)
            return x @ p["out"]["w"] + p["out"]["b"], s, L2 * jnp.sum(p["d2"]["w"] ** 2)

        return params, state, apply
    if name == "cnn":
        params = {"c1": conv(3, 1, 32), "c2": conv(3, 32, 32), "d": dense(32 * 13 * 13, 128), "out": dense(128, 10)}

        def apply(p, s, x, key, training):
            k1, k2 = jax.random.split(key)
            x = relu(conv_apply(p["c1"], x, "SAME"))
            x = pool(relu(conv_apply(p["c2"], x, "VALID")), "max")
            x = dropout(x, 0.25, k1, training).reshape((x.shape[0], -1))
            x = dropout(relu(x @ p["d"]["w"] + p["d"]["b"]), 0.5, k2, training)
            return x @ p["out"]["w"] + p["out"]["b"], s, 0.0

        return params, {}, apply
    if name == "lenet":
        params = {"c1": conv(3, 1, 6), "c2": conv(3, 6, 16), "c3": conv(3, 16, 120), "d": dense(120 * 3 * 3, 84),
                  "out": dense(84, 10)}

        def apply(p, s, x, key, training):
            x = pool(relu(conv_apply(p["c1"], x, "VALID")), "avg")
            x = pool(relu(conv_apply(p["c2"], x, "VALID")), "avg")
            x = relu(conv_apply(p["c3"], x, "VALID")).reshape((x.shape[0], -1))
            x = relu(x @ p["d"]["w"] + p["d"]["b"])
            return x @ p["out"]["w"] + p["out"]["b"], s, 0.0

        return params, {}, apply
    raise ValueError(f"no JAX version of {name!r}")


class JaxRunner(_Runner):
    def __init__(self, model_name: str, batch_size: int, data, seed: int, precision: str = "float32"):
        import jax
        import jax.numpy as jnp

        gc.collect()
        self.batch_size = batch_size
        self.device = jax.devices()[0].platform
        params, state, apply32 = _jax_model(model_name, jax.random.PRNGKey(seed))
        half = HALF.get(precision)
        if half:
            def apply(p, s, x, key, training):  # 16-bit compute on float32 master weights
                p16 = jax.tree_util.tree_map(lambda a: a.astype(half), p)
                logits, s, penalty = apply32(p16, s, x.astype(half), key, training)
                return logits.astype(jnp.float32), s, penalty
        else:
            apply = apply32
        self.parameters = sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(params))
        shape = (-1, 784) if model_name in ("mlp", "deep_mlp") else (-1, 28, 28, 1)
        x = jnp.asarray(data.train_images.reshape(shape), dtype=jnp.uint8)
        y = jnp.asarray(data.train_labels.astype(np.int32))
        b1, b2, eps = 0.9, 0.999, 1e-7  # Keras' Adam defaults

        def loss_fn(p, s, xb, yb, key):
            logits, s, penalty = apply(p, s, xb, key, True)
            log_probs = jax.nn.log_softmax(logits)
            loss = -jnp.mean(jnp.take_along_axis(log_probs, yb[:, None], axis=1)) + penalty
            return loss, s

        @jax.jit
        def step(p, s, m, v, t, key, index):
            xb = jnp.take(x, index, axis=0).astype(jnp.float32) / 255.0
            yb = jnp.take(y, index, axis=0)
            key, sub = jax.random.split(key)
            (loss, s), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, s, xb, yb, sub)
            t = t + 1
            m = jax.tree_util.tree_map(lambda m_, g: b1 * m_ + (1 - b1) * g, m, grads)
            v = jax.tree_util.tree_map(lambda v_, g: b2 * v_ + (1 - b2) * g * g, v, grads)
            lr = LEARNING_RATE * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            p = jax.tree_util.tree_map(lambda p_, m_, v_: p_ - lr * m_ / (jnp.sqrt(v_) + eps), p, m, v)
            return p, s, m, v, t, key, loss

        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        self.carry = (params, state, zeros, zeros, jnp.zeros((), jnp.float32), jax.random.PRNGKey(seed + 1))
        self._step = step
        self.indices = _epoch_indices(len(data.train_labels), batch_size, np.random.default_rng(seed))
        self.loss = None
        started = time.perf_counter()
        self.run(3)  # jit compiles here
        self.warmup_seconds = time.perf_counter() - started

    def step(self, indices) -> None:
        *carry, self.loss = self._step(*self.carry, indices.astype(np.int32))
        self.carry = tuple(carry)

    def _sync(self) -> None:
        float(self.loss)


# --------------------------------------------------------------------------- the suite


def _make_runner(kind: str, model: str, batch_size: int, data, seed: int, precision: str) -> _Runner:
    if kind == "torch eager":
        return TorchRunner(model, batch_size, data, seed, precision=precision)
    if kind == "torch.compile":
        return TorchRunner(model, batch_size, data, seed, compile_step=True, precision=precision)
    return JaxRunner(model, batch_size, data, seed, precision=precision)


def _serve(conn, kind: str, model: str, batch_size: int, data, seed: int, window_seconds: float,
           precision: str = "float32") -> None:
    """A peer's runner in a process of its own, timing a window whenever the parent asks.

    Each framework gets its own process: TensorFlow, PyTorch (whose Linux wheel loads
    Triton's LLVM) and JAX (XLA's) crash or fight over threads when loaded together.
    """
    import logging
    import warnings

    # Their start-up notices ("No CUDA runtime is found") are not this benchmark's output.
    warnings.filterwarnings("ignore")
    for name in ("torch", "jax", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    try:
        runner = _make_runner(kind, model, batch_size, data, seed, precision)
        runner.calibrate(window_seconds)
    except Exception as e:  # e.g. torch.compile without a working C++ compiler
        conn.send(("error", f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"))
        return
    conn.send(("ready", runner.warmup_seconds, runner.parameters, runner.steps, runner.device))
    while conn.recv() == "window":
        conn.send(runner.window())


class _RemoteRunner:
    """The parent's handle on a peer runner living in its own process."""

    def __init__(self, kind, model, batch_size, data, seed, window_seconds, precision="float32"):
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, kind, model, batch_size, data, seed,
                                                             window_seconds, precision), daemon=True)
        self._process.start()
        reply = self._conn.recv()
        if reply[0] == "error":
            self.close()
            raise RuntimeError(reply[1])
        _, self.warmup_seconds, self.parameters, self.steps, self.device = reply

    def window(self) -> float:
        self._conn.send("window")
        return self._conn.recv()

    def close(self) -> None:
        try:
            self._conn.send("stop")
        except (OSError, EOFError):
            pass
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()


def peers(out: Output, settings, data) -> None:
    """images/s of every peer beside mnist_core's defaults, windows interleaved in rounds."""
    absent = missing()
    for name, reason in absent.items():
        out.console.print(f"peers: {name} is not available here ({reason}); "
                          f"pip install -e \".[peers]\" to compare with it", highlight=False, markup=False)
    kinds = [kind for kind in PEERS if kind.split(" ")[0].split(".")[0] not in absent]
    rows: List[List] = []
    for model in settings.models:
        for batch_size in settings.batch_sizes:
            for precision in getattr(settings, "precisions", None) or ["float32"]:
                rows += _compare(out, settings, data, kinds, model, batch_size, precision)
    out.table("peers: the same models in PyTorch and JAX; ratio = mnist_core (default flags) / peer",
              ["trainer", "batch", "images/s", "min", "max", "warm-up s", "ratio"], rows)


def _compare(out: Output, settings, data, kinds: List[str], model: str, batch_size: int, precision: str) -> List[List]:
    """One model, batch and precision: mnist_core's defaults and every peer, in rounds."""
    from benchmarks.suites import CoreRunner, core_config

    rows: List[List] = []
    runners: Dict[str, object] = {}
    core = CoreRunner(core_config(model, batch_size, 0, "auto", precision, settings.seed), data)
    core.calibrate(settings.window_seconds)
    runners["mnist_core"] = core
    for kind in kinds:
        try:
            runners[kind] = _RemoteRunner(kind, model, batch_size, data, settings.seed, settings.window_seconds,
                                          precision)
        except Exception as e:
            out.console.print(f"peers: {kind} {model} could not run ({e})", highlight=False, markup=False)
    rates = {name: [] for name in runners}
    try:
        for round_index in range(settings.repeats):
            order = list(runners) if round_index % 2 == 0 else list(runners)[::-1]
            for name in order:
                rates[name].append(runners[name].window())
    finally:
        for name, runner in runners.items():
            if name != "mnist_core":
                runner.close()
    label = "" if precision == "float32" else f" {precision}"
    for name, runner in runners.items():
        config = {"trainer": name, "model": model, "batch_size": batch_size, "examples": data.num_train,
                  "timed_steps": runner.steps, "precision": precision}
        if name == "mnist_core":
            config.update(jit_compile_resolved=core.program.jit, steps_per_loop=core.program.steps_per_loop,
                          update=core.program.config.update)
        else:
            config.update(parameters=runner.parameters, device=runner.device)
        m = out.add(Measurement("peers", f"{name} {model}{label}", config, "images/s", rates[name],
                                {"warmup_seconds": runner.warmup_seconds}))
        ratio = None
        if name != "mnist_core":
            paired = [c / p for c, p in zip(rates["mnist_core"], rates[name])]
            ratio = out.add(Measurement("peers", f"ratio mnist_core/{name} {model}{label}",
                                        {"model": model, "batch_size": batch_size, "peer": name,
                                         "precision": precision}, "x", paired)).median
        rows.append([f"{name} {model}{label}", batch_size, m.median, min(m.samples), max(m.samples),
                     runner.warmup_seconds, ratio])
    return rows
