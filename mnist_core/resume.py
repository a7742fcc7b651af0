"""Checking a ``--resume`` against what the run recorded when it started.

A run writes ``config.json`` (:func:`run_record`) before its first step; ``--resume``
refuses, naming the flag and both values, a change that would silently change what the
saved steps and weights mean (:data:`RESUME_GUARDED`), and reads back the finished epochs
of ``history.json`` (:func:`previous_history`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional

import keras
import tensorflow as tf

from mnist_core import data as data_lib
from mnist_core import models as model_lib
from mnist_core import optim
from mnist_core.config import DEFAULT_LEARNING_RATES, TrainConfig
from mnist_core.errors import ConfigError, one_line
from mnist_core.program import Program
from mnist_core.reporting import Reporter


# Flags whose change on --resume would silently change what the saved steps and weights
# mean; the others (epochs, output, checkpoint cadence, XLA, callbacks...) may change.
RESUME_GUARDED = ("model", "dataset", "batch_size", "seed", "optimizer", "lr", "lr_schedule", "lr_decay_rate",
                  "momentum", "precision", "val_split", "synthetic_train_size", "sync_batchnorm", "warmup_epochs",
                  "weight_decay", "clipnorm", "global_clipnorm", "ema", "grad_accum_steps", "label_smoothing",
                  "augment", "rho", "epsilon", "loss", "pixels", "update")


def run_record(program: Program, data: data_lib.MnistData) -> Dict:
    """What ``config.json`` records when a run starts, for ``--resume`` to check against."""
    return {
        "config": program.config.to_dict(),
        "model": program.spec.name,
        "keras_protocol": list(program.protocol),
        "num_replicas": program.strategy.num_replicas_in_sync,
        "num_train": data.num_train,
        "num_classes": data.num_classes,
        "image_shape": list(data.image_shape),
        "data_sha256": data_digest(data),
        "steps_per_epoch": program.steps_per_epoch,
        "jit_compile_resolved": program.jit,
        "jit_decision": program.jit_decision.to_dict() if program.jit_decision else None,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "mnist_core": _version()},
    }


def data_digest(data: data_lib.MnistData) -> str:
    """SHA-256 (first 16 hex digits) of the training examples, labels and weights, in order:
    a resumed run is exact only on the same data in the same order."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for array in (data.train_images, data.train_labels, data.train_weights):
        if array is not None:
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def _version() -> str:
    from mnist_core import __version__

    return __version__


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


_HINT = "resume with the run's value, or start a new run in another --output-dir"


def check_flags(config: TrainConfig, out: Path, record: Optional[Dict], warn: Callable[[str], None]) -> None:
    """Refuses a ``--resume`` whose flags would change the meaning of the saved run.

    Runs before the model is built, so a changed flag is named even where the new value
    would also be refused for other reasons.

    Args:
        record: The run's ``config.json`` (:func:`mnist_core.rundir.read_run_record`), or
            None if it has none.
        warn: Receives what the resume should know but need not stop for.

    Raises:
        ConfigError: naming the flag and both values.
    """
    if record is None:
        warn(f"{out} has no config.json (a run of an older mnist_core?): resuming without checking "
                      "that the flags match the run's")
        return
    saved = record["config"]
    for field in RESUME_GUARDED:
        if field not in saved:
            continue
        new, old = getattr(config, field), saved[field]
        if field == "lr":  # compare the rates actually used (None means the optimizer's default)
            new = config.learning_rate
            old = old if old is not None else DEFAULT_LEARNING_RATES.get(saved.get("optimizer"), old)
        if field == "model":  # the same class, given as the object the run trained or as the class
            new, old = (str(name).split(f"{model_lib.UNREPRODUCIBLE}:", 1)[-1] for name in (new, old))
        if new != old:
            raise ConfigError(f"--resume: {_flag(field)} {new} differs from the run's {old}, which would change "
                              f"what its saved steps mean; {_HINT}")
    if config.epochs != saved.get("epochs") and config.lr_schedule in optim.RUN_LENGTH_SCHEDULES:
        warn(f"--epochs {config.epochs} (the run had {saved.get('epochs')}) with --lr-schedule "
                      f"{config.lr_schedule}: the schedule now spans the new length, so the learning rate jumps "
                      "at the resume point")


def check_program(program: Program, data: data_lib.MnistData, record: Optional[Dict], reporter: Reporter) -> None:
    """Refuses a ``--resume`` whose data or replicas would change what the saved steps mean.

    Raises:
        ConfigError: another number of steps per epoch, or another replica count for a model
            with per-replica BatchNormalization.
    """
    if record is None:
        return
    before_classes, before_shape = record.get("num_classes"), record.get("image_shape")
    if before_classes is not None and (before_classes != data.num_classes or
                                       tuple(before_shape) != tuple(data.image_shape)):
        h, w, c = before_shape
        raise ConfigError(f"--resume: the data has {data.num_classes} classes of {'x'.join(map(str, data.image_shape))} "
                          f"images, the run trained on {before_classes} classes of {h}x{w}x{c}; {_HINT}")
    digest = record.get("data_sha256")
    if digest is not None and digest != data_digest(data):
        reporter.warn("--resume: the training data differs from the data the run started with (other files, or a "
                      "tf.data.Dataset that shuffles or changes between reads): training continues from the "
                      "checkpoint, but not exactly as the uninterrupted run would have")
    expected = record.get("steps_per_epoch")
    if expected is not None and expected != program.steps_per_epoch:
        raise ConfigError(f"--resume: the data gives {program.steps_per_epoch} steps per epoch "
                          f"({data.num_train} training examples), the run had {expected}; {_HINT}")
    replicas, before = program.strategy.num_replicas_in_sync, record.get("num_replicas")
    if before is not None and before != replicas:
        batchnorm = [layer.name for layer in program.model._flatten_layers()
                     if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized]
        if batchnorm:
            raise ConfigError(
                f"--resume: the run trained on {before} replica(s), this one has {replicas}, and the model's "
                f"BatchNormalization ({batchnorm[0]}) normalises over each replica's share of the batch, so "
                f"the steps would change meaning; {_HINT} (or use --sync-batchnorm in a new run)")
        reporter.info(f"resuming on {replicas} replica(s) (the run had {before}): the same mean gradient per step")


def previous_history(out: Path, completed_epochs: int, warn: Callable[[str], None]) -> List[Dict]:
    """The finished epochs' entries of the run's history.json (an unreadable one is kept
    aside as history.json.damaged and the history restarts, with a warning)."""
    path = out / "history.json"
    if not path.exists():
        return []
    try:
        history = json.loads(path.read_text())
        if not isinstance(history, list) or not all(isinstance(e, dict) for e in history):
            raise ValueError("not a list of epoch entries")
    except (OSError, ValueError) as e:
        damaged = path.with_name("history.json.damaged")
        os.replace(path, damaged)
        warn(f"{path} is unreadable ({one_line(e)[:80]}); kept it as {damaged.name}, "
             "and the new history starts at the resumed epoch")
        return []
    return [e for e in history if e.get("epoch", 0) <= completed_epochs]
