"""Layer 3: the eager controller — a plain epoch loop that hands its events to actions.

Everything here is ordinary Python between compiled loop calls. :func:`make_program`
builds the model, optimizer and compiled loops once (the benchmarks time exactly that
program); :class:`Trainer` runs it: it asks the actions (:mod:`mnist_core.actions`) how
many steps may run before one needs a boundary, runs that many in one
:func:`mnist_core.loop.make_train_loop` call, evaluates at epoch ends, and hands every
event to every action in order. The run directory::

    OUTPUT_DIR/
      history.json      one entry per epoch (rewritten atomically after each epoch)
      summary.json      final metrics and the full resolved config
      model.keras       the trained model
      saved_model/      with --export-savedmodel: SavedModel serving uint8 [N, 28, 28] images
      checkpoints/      tf.train.CheckpointManager checkpoints (for --resume)
      tensorboard/      train/ and test/ (and val/) event files: scalars, the model graph,
                        --histograms; plugins/profile/ with --profile-steps
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from mnist_core import actions as actions_lib
from mnist_core import augment as augment_lib
from mnist_core import autojit
from mnist_core import data as data_lib
from mnist_core import keras_protocol
from mnist_core import loop as loop_lib
from mnist_core import models as model_lib
from mnist_core import inference, optim, precision, step as step_lib, strategy as strategy_lib
from mnist_core.actions import CallbackError, InterruptedRun, NonFiniteLossError  # noqa: F401  (public here)
from mnist_core import rundir
from mnist_core.checkpoint import CheckpointState
from mnist_core.config import TrainConfig
from mnist_core.errors import ConfigError, one_line
from mnist_core.reporting import Reporter
from mnist_core.rundir import CHECKPOINT_DIR, check_output_dir, write_json  # noqa: F401  (public here)


def weights_digest(model) -> str:
    """SHA-256 (first 16 hex digits) of all weights: equal digests mean identical models."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]


def _dataset_options(multi_worker: bool) -> tf.data.Options:
    """Explicit auto-shard policy: no silent FILE→DATA fallback warnings.

    In-memory data has no files to shard. One worker (any number of local replicas)
    needs no sharding: ``experimental_distribute_dataset`` splits each global batch over
    the replicas. Several workers each keep a disjoint part of every global batch (DATA).
    """
    options = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = policy.DATA if multi_worker else policy.OFF
    return options


def auto_steps_per_loop(steps_per_epoch: int) -> int:
    """About a tenth of an epoch, at most 100 steps: cheap dispatch, live progress."""
    return max(1, min(100, steps_per_epoch // 10))


def _to_python(value):
    array = np.asarray(value)
    return float(array) if array.ndim == 0 else array.tolist()


def _python_logs(logs) -> Dict:
    return {key: _to_python(value) for key, value in logs.items()}


@contextlib.contextmanager
def detached_optimizer(model):
    """Saves ``model.keras`` as architecture and weights only, compiled or not.

    The optimizer is set on the model during training (Keras callbacks such as
    ReduceLROnPlateau reach it as ``model.optimizer``); saved with it, ``model.keras``
    would carry the optimizer's slots (twice the weights for Adam) and a compile config
    naming mnist_core's optimizer wrappers. The checkpoints keep the training state.
    """
    saved = {name: model.__dict__.get(name) for name in ("optimizer", "compiled")}
    model.optimizer = None
    model.compiled = False
    try:
        yield model
    finally:
        model.optimizer = saved["optimizer"]
        model.compiled = bool(saved["compiled"])


@contextlib.contextmanager
def averaged_weights(program: "Program"):
    """With ``--ema``: the weights' moving average in place for the block (evaluation), the
    trained weights back afterwards, so training and its checkpoints continue unchanged."""
    optimizer = optim.inner(program.optimizer)
    averages = getattr(optimizer, "_model_variables_moving_average", None) if getattr(optimizer, "use_ema", False) \
        else None
    if not averages:
        yield
        return
    variables = program.model.trainable_variables
    saved = [v.numpy() for v in variables]
    for variable, average in zip(variables, averages):
        variable.assign(average)
    try:
        yield
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)


class EpochMeter:
    """The running training metrics of one epoch, as the progress bar and callbacks see them.

    For the explicit step: the mean loss over the epoch's finite steps and the accuracy
    over its examples. For a Keras-protocol model: the last loop call's logs (its
    running metrics), and at the epoch's end the model's metrics read across replicas,
    as ``fit`` reports them.
    """

    def __init__(self, program: "Program"):
        self.program = program
        self.loss = self.correct = self.count = 0.0
        self.finite_steps = 0
        self.keras_logs: Dict = {}
        self.images = self.seconds = 0.0

    def add(self, result: Dict, steps: int, seconds: Optional[float]) -> None:
        """Adds a loop call's result; ``seconds`` is None for a call that included tracing."""
        if self.program.keras_protocol:
            self.keras_logs = _python_logs(result["logs"])
        else:
            self.loss += float(result["loss"])
            self.finite_steps += steps - int(result["nonfinite"])
            self.correct += float(result["correct"])
        self.count += float(result["count"])
        if seconds is not None:
            self.images += float(result["count"])
            self.seconds += seconds

    @property
    def images_per_second(self) -> Optional[float]:
        return self.images / self.seconds if self.seconds else None

    def logs(self) -> Dict:
        if self.program.keras_protocol:
            return dict(self.keras_logs)
        return {"loss": self.loss / max(self.finite_steps, 1), "accuracy": self.correct / max(self.count, 1.0)}

    def final_logs(self) -> Dict:
        if self.program.keras_protocol and self.keras_logs:
            return _python_logs(keras_protocol.metrics_or_logs(self.program.model, self.keras_logs))
        return self.logs()


@dataclasses.dataclass
class Program:
    """The compiled training program of a config: model, optimizer, loops and inputs.

    Built by :func:`make_program`; the controller drives it, and the benchmarks time it
    exactly as the controller runs it.

    Attributes:
        protocol: The Keras protocol methods the model overrides (``train_step``,
            ``test_step``, ``compute_loss``, ``compute_metrics``); empty for mnist_core's
            explicit step.
    """

    config: TrainConfig
    strategy: tf.distribute.Strategy
    spec: model_lib.ModelSpec
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    train_loops: Dict[bool, Callable]
    eval_loops: Dict[bool, Callable]
    steps_per_epoch: int
    steps_per_loop: int
    protocol: Tuple[str, ...] = ()
    jit: Optional[bool] = None
    jit_decision: Optional[autojit.JitDecision] = None
    jit_key: Optional[str] = None
    batch_per_step: int = 0  # examples per step: the batch, times --grad-accum-steps in the explicit step

    @property
    def keras_protocol(self) -> bool:
        return bool(self.protocol)

    @property
    def train_loop(self) -> Callable:
        """The compiled training loop (with or without XLA, as decided)."""
        return self._decided(self.train_loops)

    @property
    def eval_loop(self) -> Callable:
        return self._decided(self.eval_loops)

    def _decided(self, loops: Dict[bool, Callable]) -> Callable:
        if self.jit is None:
            raise RuntimeError("--jit-compile auto is not decided yet: call resolve_jit() first")
        return loops[self.jit]

    def resolve_jit(self) -> autojit.JitDecision:
        """Decides ``--jit-compile auto`` by timing both loops (or from the cache); returns the decision."""
        if self.jit is None:
            def make_iterator():
                # Random batches of the run's shape: the timing depends on shapes, not pixels.
                return self.train_iterator(data_lib.synthetic(self.batch_per_step, test_size=1, seed=0))

            variables = [*self.model.variables, *self.optimizer.variables]
            self.jit_decision = autojit.decide(self.train_loops, make_iterator, variables,
                                               min(self.steps_per_loop, 10), self.jit_key,
                                               after=self.model.reset_metrics)
            self.jit = self.jit_decision.choice
        return self.jit_decision

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return self.spec.input_shape

    def _options(self) -> tf.data.Options:
        return _dataset_options(self.config.strategy == "multi_worker")

    def train_iterator(self, data: data_lib.MnistData, start_step: int = 0):
        """The distributed iterator over the (endless) training batches from ``start_step``."""
        dataset = data_lib.train_dataset(
            data.train_images, data.train_labels, global_batch_size=self.batch_per_step or self.config.batch_size,
            seed=self.config.seed, input_shape=self.input_shape, skip_batches=start_step,
            augment=augment_lib.resolve(self.config.augment, data.name),
        )
        return iter(self.strategy.experimental_distribute_dataset(dataset.with_options(self._options())))

    def eval_input(self, images: np.ndarray, labels: np.ndarray):
        """A distributed, finite evaluation dataset (every example exactly once).

        Batched by ``--eval-batch-size`` (evaluation keeps no activations for a backward
        pass, so its batches can be much larger than training's, and fewer calls cost less).
        """
        batch = max(self.config.eval_batch_size, self.strategy.num_replicas_in_sync)
        dataset = data_lib.eval_dataset(images, labels, batch_size=batch, input_shape=self.input_shape)
        return self.strategy.experimental_distribute_dataset(dataset.with_options(self._options()))

    def trace(self, iterator, eval_inputs: Sequence) -> None:
        """Traces the loops before training, so that user code that cannot become a graph
        stops the run with one line naming the method, before any step or file.

        The traces are the ones the first calls use (same argument types): nothing is
        traced twice.
        """
        where = f"--model {self.spec.name!r}"
        train_methods = [m for m in self.protocol if m != "test_step"]
        for train_loop in self.train_loops.values():  # both variants while --jit-compile auto is open
            with keras_protocol.traced_user_code(self.model, where, train_methods):
                train_loop.get_concrete_function(iterator, tf.TensorSpec([], tf.int32))
        eval_methods = [m for m in self.protocol if m != "train_step"]
        for eval_loop in self.eval_loops.values():
            for dataset in eval_inputs[:1]:  # every evaluation set has the same element type
                with keras_protocol.traced_user_code(self.model, where, eval_methods):
                    eval_loop.get_concrete_function(dataset)

    def run_steps(self, iterator, steps: int) -> Dict:
        """One compiled loop call of ``steps`` steps; the result as Python numbers."""
        result = self.train_loop(iterator, tf.constant(steps, tf.int32))
        out = {key: float(value) for key, value in result.items() if key != "logs"}
        if "logs" in result:
            out["logs"] = result["logs"]
            loss = result["logs"].get("loss") if isinstance(result["logs"], dict) else None
            # A Keras step's loss is a running mean: it says whether a non-finite loss
            # entered it, which is what stop mode needs (skipping counts come from the
            # optimizer).
            out["nonfinite"] = float(loss is not None and not np.all(np.isfinite(np.asarray(loss))))
        return out

    def evaluate(self, dataset) -> Tuple[Dict, int]:
        """Evaluates one distributed dataset: ``(metrics, examples)``.

        The explicit step reports the mean cross-entropy plus the regulariser (as
        Keras' ``evaluate``) and the accuracy; a Keras-protocol model reports whatever its
        ``test_step`` returns, its metrics reset first, as ``evaluate`` resets them.
        """
        if self.keras_protocol:
            self.model.reset_metrics()
            out = self.eval_loop(dataset)
            logs = _python_logs(keras_protocol.metrics_or_logs(self.model, out["logs"]))
            return logs, int(float(out["count"]))
        totals = {key: float(value) for key, value in self.eval_loop(dataset).items()}
        count = totals["count"]
        return {"loss": totals["loss"] / count, "accuracy": totals["correct"] / count}, int(count)


def _eval_fields(name: str, logs: Dict, count: int) -> Dict:
    """An evaluation of the ``name`` set as history.json's fields: ``test_loss``, ..., ``test_examples``."""
    return {**{f"{name}_{key}": value for key, value in logs.items()}, f"{name}_examples": count}


def _has_synchronized_batchnorm(model) -> bool:
    return any(isinstance(layer, keras.layers.BatchNormalization) and getattr(layer, "synchronized", False)
               for layer in model._flatten_layers())


def make_program(config: TrainConfig, strategy: tf.distribute.Strategy, num_train: int,
                 on_trace: Optional[Callable[[], None]] = None,
                 spec: Optional[model_lib.ModelSpec] = None, *, decide_jit: bool = True,
                 recorded_jit: Optional[bool] = None) -> Program:
    """Builds model, optimizer and compiled loops under ``strategy`` (call inside the precision policy).

    Args:
        config: The run's configuration.
        strategy: Its distribution strategy.
        num_train: Training examples (for the steps per epoch).
        on_trace: Called whenever the training loop is traced (tests count traces).
        spec: The model to build; default ``config.model`` from the registry.
        decide_jit: Decide ``--jit-compile auto`` now (by timing); the trainer decides
            later, after tracing the user's code, with ``program.resolve_jit()``.
        recorded_jit: The choice a resumed run recorded when it started.

    Raises:
        ConfigError: the batch size does not divide over the replicas or exceeds the
            data, or an option can't be honoured for this model.
        ModelError: the model can't be built, compiled or used.
    """
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ConfigError(f"--batch-size {config.batch_size} is not divisible by the {replicas} replicas")
    spec = spec or model_lib.get(config.model)
    where = f"--model {spec.name!r}"
    if spec.instance is not None and config.strategy != "default":
        raise ConfigError(f"model=: a keras.Model object can only be trained with strategy 'default' (its "
                          f"variables already exist outside the {config.strategy} strategy's scope); pass its "
                          "class or a factory function instead")
    with strategy.scope():
        model = model_lib.build(spec, sync_batchnorm=config.sync_batchnorm)
    protocol = keras_protocol.overridden_methods(model)
    # With --grad-accum-steps N the explicit step takes N micro-batches per step (one
    # update); a Keras-protocol model's optimizer accumulates itself, a batch per step.
    accumulate_in_step = config.grad_accum_steps > 1 and not protocol
    batch_per_step = config.batch_size * (config.grad_accum_steps if accumulate_in_step else 1)
    steps_per_epoch = num_train // batch_per_step
    if steps_per_epoch == 0:
        what = (f"--batch-size {config.batch_size} x --grad-accum-steps {config.grad_accum_steps}"
                if accumulate_in_step else f"--batch-size {config.batch_size}")
        raise ConfigError(f"{what} is larger than the {num_train} training examples")
    if config.profile_range and config.profile_range[1] > steps_per_epoch * config.epochs:
        raise ConfigError(f"--profile-steps {config.profile_steps}: the run has only "
                          f"{steps_per_epoch * config.epochs} steps ({config.epochs} epochs of {steps_per_epoch})")
    if config.grad_accum_steps > 1 and protocol and replicas > 1:
        raise ConfigError(
            f"--grad-accum-steps: {where} brings its own step, so Keras' optimizer accumulates the gradients, "
            f"and Keras' accumulation puts the cross-replica all-reduce inside a condition that {replicas} "
            "replicas cannot run; use one replica, or a model without a train_step/compute_loss override")
    with strategy.scope():
        optimizer = optim.make_optimizer(config, steps_per_epoch, keras_accumulation=bool(protocol))
        # Keras 3 creates slot variables lazily; a tf.function would then try to create
        # them while tracing (fails: "You must feed a value for placeholder"). Build now,
        # in scope, so slots are distributed like the weights and restorable.
        optimizer.build(model.trainable_variables)
        # Compiled as the tutorial recipe compiles it, whichever step trains it: a Keras-
        # protocol model needs compile's loss and metrics, and callbacks find what they
        # look for after fit (model.optimizer for ReduceLROnPlateau, the compiled metrics
        # from which EarlyStopping infers whether "val_accuracy" should rise or fall).
        keras_protocol.compile_model(model, optimizer, spec.input_shape, where,
                                     label_smoothing=config.label_smoothing)
    steps_per_loop = config.steps_per_loop or auto_steps_per_loop(steps_per_epoch)
    plan = _jit_plan(config, replicas, model, protocol, steps_per_epoch, recorded_jit)
    jit_key = None
    if plan is None:
        # A decision cached by an earlier run: build (and trace) only the variant it chose.
        jit_key = autojit.cache_key(config, model, spec.factory, replicas, steps_per_loop)
        plan = autojit.cached(jit_key)
    if config.jit_compile == "on" and replicas > 1 and _has_synchronized_batchnorm(model):
        raise ConfigError(
            f"--jit-compile: the model has synchronized BatchNormalization, whose statistics are all-reduced "
            f"across the {replicas} replicas inside the forward pass, and a cross-replica all-reduce cannot run "
            "inside an XLA cluster; drop --jit-compile or --sync-batchnorm"
        )
    health = dict(variables=model.trainable_variables, skip_counter=optim.skipped_updates(optimizer))
    train_loops, eval_loops = {}, {}
    for jit in ([plan.choice] if plan is not None else [False, True]):
        if protocol:
            train_step = keras_protocol.make_train_step(model, optimizer, jit_compile=jit, num_replicas=replicas,
                                                        where=where)
            train_loops[jit] = loop_lib.make_keras_train_loop(
                strategy, loop_lib.make_keras_step(strategy, train_step), on_trace=on_trace, **health)
            eval_loops[jit] = loop_lib.make_keras_eval_loop(
                strategy, loop_lib.make_keras_step(strategy, keras_protocol.make_test_step(model, jit_compile=jit)))
        else:
            train_step = step_lib.make_train_step(
                model, optimizer, config.batch_size, jit_compile=jit, num_replicas=replicas,
                label_smoothing=config.label_smoothing, accum_steps=config.grad_accum_steps if accumulate_in_step else 1)
            train_loops[jit] = loop_lib.make_train_loop(strategy, train_step, on_trace=on_trace, **health)
            eval_loops[jit] = loop_lib.make_eval_loop(strategy, step_lib.make_eval_step(model, jit_compile=jit))
    program = Program(
        config=config, strategy=strategy, spec=spec, model=model, optimizer=optimizer,
        train_loops=train_loops, eval_loops=eval_loops, steps_per_epoch=steps_per_epoch,
        batch_per_step=batch_per_step,
        steps_per_loop=steps_per_loop, protocol=protocol,
        jit=None if plan is None else plan.choice, jit_decision=plan, jit_key=jit_key,
    )
    if decide_jit:
        program.resolve_jit()
    return program


# Deciding --jit-compile auto times both loops for a few calls each (about 80 steps and two
# compilations): a run shorter than this keeps XLA off rather than spend more than it saves.
AUTO_JIT_MIN_STEPS = 400


def _jit_plan(config: TrainConfig, replicas: int, model, protocol, steps_per_epoch: int,
              recorded: Optional[bool]) -> Optional[autojit.JitDecision]:
    """``--jit-compile`` resolved without timing where it can be; None: time both."""
    if config.jit_compile in ("on", "off"):
        return autojit.JitDecision(config.jit_compile == "on", "forced")
    if recorded is not None:
        return autojit.JitDecision(recorded, "recorded")
    reason = None
    if config.deterministic:
        reason = "--deterministic: a choice must not depend on timing, and XLA is not deterministic for every op"
    elif config.strategy == "multi_worker":
        reason = "multi_worker: every worker must compile the same program, and their timings differ"
    elif replicas > 1 and "train_step" in protocol:
        reason = "the model's own train_step cannot run under XLA on several replicas"
    elif replicas > 1 and _has_synchronized_batchnorm(model):
        reason = "synchronized BatchNormalization cannot run under XLA on several replicas"
    elif config.epochs * steps_per_epoch < AUTO_JIT_MIN_STEPS:
        reason = (f"a run of {config.epochs * steps_per_epoch} steps: timing both would cost more than it saves "
                  f"(under {AUTO_JIT_MIN_STEPS})")
    return autojit.JitDecision(False, reason) if reason else None


# Flags whose change on --resume would silently change what the saved steps and weights
# mean; the others (epochs, output, checkpoint cadence, XLA, callbacks...) may change.
RESUME_GUARDED = ("model", "dataset", "batch_size", "seed", "optimizer", "lr", "lr_schedule", "lr_decay_rate",
                  "momentum", "precision", "val_split", "synthetic_train_size", "sync_batchnorm", "warmup_epochs",
                  "weight_decay", "clipnorm", "global_clipnorm", "ema", "grad_accum_steps", "label_smoothing",
                  "augment")


def run_record(program: "Program", data: data_lib.MnistData) -> Dict:
    """What ``config.json`` records when a run starts, for ``--resume`` to check against."""
    return {
        "config": program.config.to_dict(),
        "model": program.spec.name,
        "keras_protocol": list(program.protocol),
        "num_replicas": program.strategy.num_replicas_in_sync,
        "num_train": data.num_train,
        "steps_per_epoch": program.steps_per_epoch,
        "jit_compile_resolved": program.jit,
        "jit_decision": program.jit_decision.to_dict() if program.jit_decision else None,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "mnist_core": _version()},
    }


def _version() -> str:
    from mnist_core import __version__

    return __version__


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def check_resume(config: TrainConfig, program: "Program", data: data_lib.MnistData, out: Path,
                 record: Optional[Dict], reporter: Reporter) -> None:
    """Refuses a ``--resume`` whose flags would change the meaning of the saved run.

    Args:
        record: The run's ``config.json`` (:func:`mnist_core.rundir.read_run_record`), or
            None if it has none.

    Raises:
        ConfigError: naming the flag and both values.
    """
    if record is None:
        reporter.warn(f"{out} has no config.json (a run of an older mnist_core?): resuming without checking "
                      "that the flags match the run's")
        return
    saved = record["config"]
    hint = "resume with the run's value, or start a new run in another --output-dir"
    for field in RESUME_GUARDED:
        if field not in saved:
            continue
        new, old = getattr(config, field), saved[field]
        if field == "lr":  # compare the rates actually used (None means the optimizer's default)
            from mnist_core.config import DEFAULT_LEARNING_RATES

            new = config.learning_rate
            old = old if old is not None else DEFAULT_LEARNING_RATES.get(saved.get("optimizer"), old)
        if new != old:
            raise ConfigError(f"--resume: {_flag(field)} {new} differs from the run's {old}, which would change "
                              f"what its saved steps mean; {hint}")
    expected = record.get("steps_per_epoch")
    if expected is not None and expected != program.steps_per_epoch:
        raise ConfigError(f"--resume: the data gives {program.steps_per_epoch} steps per epoch "
                          f"({data.num_train} training examples), the run had {expected}; {hint}")
    replicas, before = program.strategy.num_replicas_in_sync, record.get("num_replicas")
    if before is not None and before != replicas:
        batchnorm = [layer.name for layer in program.model._flatten_layers()
                     if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized]
        if batchnorm:
            raise ConfigError(
                f"--resume: the run trained on {before} replica(s), this one has {replicas}, and the model's "
                f"BatchNormalization ({batchnorm[0]}) normalises over each replica's share of the batch, so "
                f"the steps would change meaning; {hint} (or use --sync-batchnorm in a new run)")
        reporter.info(f"resuming on {replicas} replica(s) (the run had {before}): the same mean gradient per step")
    if config.epochs != saved.get("epochs") and config.lr_schedule in optim.RUN_LENGTH_SCHEDULES:
        reporter.warn(f"--epochs {config.epochs} (the run had {saved.get('epochs')}) with --lr-schedule "
                      f"{config.lr_schedule}: the schedule now spans the new length, so the learning rate jumps "
                      "at the resume point")


class Run:
    """What the actions see of a run in progress: program, state, position, history.

    Attributes:
        config, program, state, out, reporter: The run's parts.
        step: Global step (optimizer steps taken, counted across resumes).
        epoch: The current epoch (0-based).
        epoch_step: Steps done in the current epoch.
        start_step: The step the run started (or resumed) at.
        history: The history.json entries so far.
        meter: The current epoch's training metrics.
        chief: Whether this worker writes the run directory.
    """

    def __init__(self, config: TrainConfig, program: Program, state: CheckpointState, out: Path,
                 reporter: Reporter, start_step: int, history: List[Dict], chief: bool, started: float):
        self.config, self.program, self.state, self.out, self.reporter = config, program, state, out, reporter
        self.step = self.start_step = start_step
        self.epoch = start_step // program.steps_per_epoch
        self.epoch_step = start_step - self.epoch * program.steps_per_epoch
        self.history = history
        self.chief = chief
        self.started = started
        self.meter = EpochMeter(program)
        self.stop_reason: Optional[str] = None
        self.last_eval_digest: Optional[str] = None

    def request_stop(self, reason: str) -> None:
        """Ends the run after the current loop call: its epoch is evaluated and saved."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def interrupt(self, signum: int) -> None:
        """Checkpoints now and stops with exit status 128 + ``signum``."""
        self.reporter.end_epoch_progress()
        path = self.state.save_once(self.step)
        name = signal.Signals(signum).name
        if not self.chief:
            # A non-chief worker's checkpoint is scratch; the run resumes from the chief's.
            saved, out = "its worker checkpoint", self.config.output_dir
        else:
            saved, out = path, self.out
        raise InterruptedRun(
            f"{name} received; stopped after step {self.step} and saved {saved}; "
            f"resume with the same flags plus --resume --output-dir {out}",
            signum,
        )


class Trainer:
    """Runs one training job described by a :class:`TrainConfig`.

    Args:
        config: The validated configuration.
        reporter: Console output; a plain :class:`Reporter` if ``None``.
        on_trace: Called whenever the training loop is (re)traced; tests count calls.
        callbacks: ``keras.callbacks.Callback`` objects, called as ``model.fit`` calls them
            (added to those of ``config.callbacks``).
        model: A ``keras.Model`` object, subclass or factory to train instead of
            ``config.model``.
        data: ``(x_train, y_train, x_test, y_test)`` arrays or a
            :class:`mnist_core.data.MnistData`, instead of loading ``config.dataset``.
    """

    def __init__(self, config: TrainConfig, reporter: Optional[Reporter] = None,
                 on_trace: Optional[Callable[[], None]] = None, *, callbacks: Optional[Sequence] = None,
                 model=None, data=None):
        self.config = config
        self.reporter = reporter or Reporter(quiet=config.quiet)
        self.on_trace = on_trace
        self.callbacks = list(callbacks or ())
        self.model_source = model
        self.data_source = data
        self.model = None
        self.history: List[Dict] = []

    # ------------------------------------------------------------------ set-up

    def _load_data(self) -> data_lib.MnistData:
        config = self.config
        if self.data_source is not None:
            data = data_lib.from_arrays(self.data_source, name=config.dataset)
        else:
            data = data_lib.load(config.dataset, config.data_dir, synthetic_train_size=config.synthetic_train_size,
                                 seed=config.seed)
        data = data_lib.split_validation(data, config.val_split, config.seed)
        self.reporter.info(f"data: {data.describe()}")
        return data

    def _callbacks(self) -> List:
        from mnist_core import callbacks as callbacks_lib

        loaded = callbacks_lib.load_callbacks(self.config.callbacks)
        return callbacks_lib.check_callbacks([*loaded, *self.callbacks], self.config.lr_schedule)

    def run(self) -> Dict:
        """Trains, evaluates and writes the run directory; returns the summary dict.

        Raises:
            MnistCoreError: bad configuration, data or model (before training starts),
                a non-finite loss (``NonFiniteLossError``), a signal (``InterruptedRun``),
                a failing user callback (``CallbackError``) or write (``WriteError``).
        """
        started = time.perf_counter()
        config = self.config
        spec = None
        if self.model_source is not None:
            spec = model_lib.spec_for(self.model_source)
            # summary.json names what was trained (module:Class), not the default --model.
            config = self.config = config.replace(model=spec.name)
        callbacks = self._callbacks()
        strategy_lib.configure_devices(config)
        strategy = strategy_lib.make_strategy(config)
        chief = strategy_lib.is_chief(strategy)
        # Only the chief's directory is checked and locked; every worker reads its
        # checkpoints on resume (the others write theirs to scratch).
        out = check_output_dir(config) if chief else Path(config.output_dir or ".")
        keras.utils.set_random_seed(config.seed)
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        data = self._load_data()
        record = rundir.read_run_record(out) if config.resume else None
        recorded_jit = (record or {}).get("jit_compile_resolved") if config.jit_compile == "auto" else None
        with precision.policy(config.precision):
            program = make_program(config, strategy, data.num_train, on_trace=self.on_trace, spec=spec,
                                   decide_jit=False, recorded_jit=recorded_jit)
            self.model = program.model
            if config.resume:
                check_resume(config, program, data, out, record, self.reporter)
            # Everything that can refuse the run does so before the run directory is touched.
            iterator = program.train_iterator(data, 0)
            eval_data = self._eval_inputs(program, data)
            program.trace(iterator, list(eval_data.values()))
            self._check_target_metric(program, eval_data)
            decision = program.resolve_jit()
            if config.jit_compile == "auto":
                self.reporter.info(decision.describe())
            updates = config.epochs * program.steps_per_epoch
            if config.ema and updates < 2 / (1 - config.ema):
                self.reporter.warn(f"--ema {config.ema} averages over about {1 / (1 - config.ema):,.0f} updates and "
                                   f"this run has {updates}: the average will still be close to the initial weights")
            scratch = None if chief else Path(tempfile.mkdtemp(prefix="mnist_core_worker_"))
            try:
                with rundir.locked(out if chief else None):
                    if chief:
                        rundir.prepare_output_dir(config, out)
                    return self._train(program, data, out if chief else scratch, started, chief, callbacks,
                                       iterator, eval_data)
            finally:
                if scratch is not None:
                    shutil.rmtree(scratch, ignore_errors=True)

    @staticmethod
    def _eval_inputs(program: "Program", data: data_lib.MnistData) -> Dict:
        eval_sets = {"test": (data.test_images, data.test_labels)}
        if data.val_images is not None:
            eval_sets["val"] = (data.val_images, data.val_labels)
        return {name: program.eval_input(x, y) for name, (x, y) in eval_sets.items()}

    def _train(self, program: Program, data: data_lib.MnistData, out: Path, started: float, chief: bool,
               callbacks: List, iterator, eval_data: Dict) -> Dict:
        config = self.config
        model = program.model
        state = CheckpointState(model, program.optimizer, str(out / CHECKPOINT_DIR), keep=config.keep_checkpoints)
        start_step = 0
        if config.resume:
            # Every worker restores the chief's checkpoint (the others' scratch dirs are new).
            start_step, restored = state.restore_latest(str(Path(config.output_dir) / CHECKPOINT_DIR),
                                                        warn=self.reporter.warn)
            self.history = self._previous_history(out, start_step // program.steps_per_epoch)
            self.reporter.info(f"resumed from {restored} (step {start_step}, "
                               f"epoch {start_step // program.steps_per_epoch + 1})")
            if start_step:
                iterator = program.train_iterator(data, start_step)  # the traced loop takes it as it is
        elif chief:
            rundir.write_json(out / rundir.CONFIG_FILE, run_record(program, data))
        if program.protocol:
            self.reporter.info(f"model overrides {keras_protocol.describe(program.protocol)}: "
                               "training through the Keras model protocol")

        run = Run(config, program, state, out, self.reporter, start_step, self.history, chief, started)
        writers = {name: tf.summary.create_file_writer(str(out / "tensorboard" / name)) for name in ("train", *eval_data)}
        actions = self._actions(run, program, writers, callbacks)
        try:
            for action in actions:
                action.on_train_begin(run)
            self._epochs(run, actions, iterator, eval_data)
            # As fit does before on_train_end: with --ema the model takes the average for good
            # (model.keras, the SavedModel); the checkpoints keep the trained weights and the
            # average, so a resumed run continues exactly.
            program.optimizer.finalize_variable_values(model.trainable_variables)
            for action in actions:
                action.on_train_end(run)
        finally:
            for action in reversed(actions):
                action.close(run)
        return self._finish(run, eval_data, data)

    def _check_target_metric(self, program: Program, eval_data: Dict) -> None:
        if self.config.target_accuracy and program.keras_protocol:
            eval_loop = next(iter(program.eval_loops.values()))  # the variants return the same logs
            structure = eval_loop.get_concrete_function(eval_data["test"]).structured_outputs["logs"]
            if "accuracy" not in structure:
                raise ConfigError(f"--target-accuracy: the model's test_step reports no 'accuracy' "
                                  f"(it returns {', '.join(sorted(structure)) or 'nothing'})")

    def _actions(self, run: Run, program: Program, writers: Dict, callbacks: List) -> List[actions_lib.Action]:
        """The run's behaviours, in the order each event reaches them.

        At a loop end the non-finite check comes first (nothing spoiled may be saved after
        it) and signals last; at an epoch end user callbacks see the epoch before its
        checkpoint is written, so a learning rate they change is in that checkpoint.
        """
        config = self.config
        multi_worker = config.strategy == "multi_worker"
        signals = actions_lib.Signals(forward_sigint_as_sigterm=multi_worker)
        actions: List[actions_lib.Action] = [actions_lib.NonFiniteGuard(), actions_lib.Progress()]
        if callbacks:
            params = {"verbose": 0, "epochs": config.epochs, "steps": program.steps_per_epoch}
            actions.append(actions_lib.KerasCallbacks(callbacks, program.model, params))
        actions += [actions_lib.HistoryFile(), actions_lib.Checkpoints(config.checkpoint_every),
                    actions_lib.TensorBoardSummaries(writers, histograms=config.histograms)]
        if config.profile_range:
            actions.append(actions_lib.StepProfiler(*config.profile_range, logdir=str(run.out / "tensorboard")))
        if config.target_accuracy:
            actions.append(actions_lib.TargetAccuracy(config.target_accuracy))
        if multi_worker:
            actions.append(actions_lib.Preemption(program.strategy, run.state, signals))
        actions.append(signals)
        return actions

    # ------------------------------------------------------------------ the loop

    def _epochs(self, run: Run, actions: List[actions_lib.Action], iterator, eval_data: Dict) -> None:
        """The epoch loop: run steps to the next boundary, evaluate at epoch ends, tell the actions."""
        program = run.program
        first_call = True
        self._timed_images = self._timed_seconds = 0.0
        for epoch in range(run.epoch, self.config.epochs):
            run.epoch = epoch
            run.epoch_step = run.step - epoch * program.steps_per_epoch
            run.meter = EpochMeter(program)
            if program.keras_protocol:
                program.model.reset_metrics()  # as fit does at every epoch's start
            epoch_started = time.perf_counter()
            for action in actions:
                action.on_epoch_begin(run, epoch)
            while run.epoch_step < program.steps_per_epoch and run.stop_reason is None:
                limits = [program.steps_per_loop, program.steps_per_epoch - run.epoch_step]
                limits += [n for n in (a.steps_until_boundary(run) for a in actions) if n]
                steps = min(limits)
                for action in actions:
                    action.on_loop_begin(run, steps)
                t0 = time.perf_counter()
                result = program.run_steps(iterator, steps)
                seconds = time.perf_counter() - t0
                # The first call of the run includes tracing/compilation: not timed.
                run.meter.add(result, steps, None if first_call else seconds)
                first_call = False
                run.step += steps
                run.epoch_step += steps
                for action in actions:
                    action.on_loop_end(run, steps, result)
            self._timed_images += run.meter.images
            self._timed_seconds += run.meter.seconds
            entry = self._evaluate_epoch(run, actions, eval_data, epoch, epoch_started)
            run.history.append(entry)
            for action in actions:
                action.on_epoch_end(run, epoch, entry)
            if run.stop_reason is not None:
                self.reporter.info(run.stop_reason)
                break

    def _evaluate_epoch(self, run: Run, actions, eval_data: Dict, epoch: int, epoch_started: float) -> Dict:
        """The epoch's history entry; evaluated on every ``--eval-every``-th epoch, the run's
        last, and one that ends the run early."""
        program, config = run.program, self.config
        train_seconds = time.perf_counter() - epoch_started
        entry: Dict = {"epoch": epoch + 1}
        for key, value in run.meter.final_logs().items():
            entry[f"train_{key}"] = value
        evaluate = ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs
                    or run.stop_reason is not None)
        eval_started = time.perf_counter()
        with averaged_weights(program):
            for name, dataset in (eval_data.items() if evaluate else ()):
                for action in actions:
                    action.on_evaluate_begin(run, name)
                logs, count = program.evaluate(dataset)
                entry.update(_eval_fields(name, logs, count))
                for action in actions:
                    action.on_evaluate_end(run, name, logs)
            # The weights evaluated: with --ema the average, which model.keras will hold.
            run.last_eval_digest = weights_digest(program.model)
        entry["learning_rate"] = optim.current_learning_rate(program.optimizer)
        entry["images_per_second"] = run.meter.images_per_second
        entry["seconds"] = time.perf_counter() - epoch_started
        entry["train_seconds"] = train_seconds
        entry["eval_seconds"] = time.perf_counter() - eval_started
        entry["step"] = run.step
        entry["elapsed_seconds"] = time.perf_counter() - run.started
        return entry

    # ------------------------------------------------------------------ the end

    def _finish(self, run: Run, eval_data: Dict, data: data_lib.MnistData) -> Dict:
        config, program, out = self.config, run.program, run.out
        model = program.model

        final = dict(run.history[-1]) if run.history else {}
        restored_by_callback = run.last_eval_digest is not None and weights_digest(model) != run.last_eval_digest
        if restored_by_callback:
            # A callback (EarlyStopping(restore_best_weights=True)) replaced the weights
            # after the last evaluation: report what model.keras holds.
            self.reporter.info("the weights were changed by a callback after the last epoch; evaluating them")
        if restored_by_callback or "test_examples" not in final:
            for name, dataset in eval_data.items():
                final.update(_eval_fields(name, *program.evaluate(dataset)))
        model_path = out / "model.keras"

        def save(path):
            with detached_optimizer(model):
                model.save(path)

        rundir.write_atomically(model_path, save)
        savedmodel_path = None
        if config.export_savedmodel and run.chief:
            savedmodel_path = str(inference.export_savedmodel(model, program.input_shape,
                                                              out / inference.SAVEDMODEL_DIR))
        summary = {
            "test_accuracy": final.get("test_accuracy"),
            "test_loss": final.get("test_loss"),
            "test_examples": final.get("test_examples"),
            "metrics": {k: v for k, v in final.items()
                        if k.startswith(("train_", "test_", "val_")) and k not in ("train_seconds",)},
            "images_per_second": self._timed_images / self._timed_seconds if self._timed_seconds else None,
            "seconds": time.perf_counter() - run.started,
            "epochs": len(run.history),
            "steps": run.step,
            "steps_per_epoch": program.steps_per_epoch,
            "steps_per_loop": program.steps_per_loop,
            "jit_compile": program.jit,
            "jit_decision": program.jit_decision.to_dict() if program.jit_decision else None,
            "num_replicas": program.strategy.num_replicas_in_sync,
            "dataset": data.describe(),
            "input_shape": list(program.input_shape),
            "model": program.spec.name,
            "keras_protocol": list(program.protocol),
            "stopped_early": run.stop_reason,
            "weights_restored_by_callback": restored_by_callback,
            "model_path": str(model_path),
            "savedmodel_path": savedmodel_path,
            "output_dir": str(out),
            "parameters": int(model.count_params()),
            "weights_sha256": weights_digest(model),
            "worker": "chief" if run.chief else "worker",
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                         "python": platform.python_version()},
            "config": config.to_dict(),
        }
        write_json(out / "summary.json", summary)
        if config.strategy == "multi_worker":
            self.reporter.info(f"weights sha256 {summary['weights_sha256']} ({summary['worker']})")
        self.reporter.final(run.history, summary)
        return summary

    def _previous_history(self, out: Path, completed_epochs: int) -> List[Dict]:
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
            self.reporter.warn(f"{path} is unreadable ({one_line(e)[:80]}); kept it as {damaged.name}, "
                               "and the new history starts at the resumed epoch")
            return []
        return [e for e in history if e.get("epoch", 0) <= completed_epochs]


def train(config: TrainConfig, reporter: Optional[Reporter] = None, *, callbacks: Optional[Sequence] = None,
          model=None, data=None) -> Dict:
    """Trains the model ``config`` describes; returns the summary (also in summary.json).

    Args:
        config: A :class:`TrainConfig`, or a mapping of its fields.
        reporter: Console output; default prints per the config's ``quiet``.
        callbacks: ``keras.callbacks.Callback`` objects, called as ``model.fit`` calls them.
        model: A ``keras.Model`` object, a ``keras.Model`` subclass or a factory function
            to train instead of ``config.model``.
        data: ``(x_train, y_train, x_test, y_test)`` numpy arrays (uint8 pixels, or floats
            in [0, 1]; images ``[N, 28, 28]``, ``[N, 28, 28, 1]`` or ``[N, 784]``; integer
            labels 0..9), or a :class:`mnist_core.data.MnistData`.
    """
    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_dict(dict(config))
    return Trainer(config, reporter, callbacks=callbacks, model=model, data=data).run()
