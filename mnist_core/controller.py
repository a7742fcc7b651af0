"""Layer 3: the eager controller — epochs, evaluation, checkpoints, summaries, output.

Everything here is ordinary Python between compiled loop calls: it decides how many
steps the next :func:`mnist_core.loop.make_train_loop` call runs (to the end of the
epoch, or to the next checkpoint), times it, evaluates, and writes the run directory::

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

import dataclasses
import datetime
import hashlib
import json
import os
import platform
import shutil
import signal
import threading
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import keras
import numpy as np
import tensorflow as tf

from mnist_core import data as data_lib
from mnist_core import loop as loop_lib
from mnist_core import models as model_lib
from mnist_core import inference, optim, precision, step as step_lib, strategy as strategy_lib
from mnist_core.checkpoint import CHECKPOINT_DIR, CheckpointState, has_checkpoint
from mnist_core.config import TrainConfig
from mnist_core.errors import ConfigError, MnistCoreError
from mnist_core.reporting import Reporter

RUN_FILES = ("history.json", "summary.json", "model.keras", inference.SAVEDMODEL_DIR, CHECKPOINT_DIR, "tensorboard")


class NonFiniteLossError(MnistCoreError):
    """Training produced a NaN/Inf loss (``--on-nonfinite stop``)."""

    exit_code = 3


class InterruptedRun(MnistCoreError):
    """SIGINT/SIGTERM: a checkpoint was written; exit status 128 + signal (130/143)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class _SignalGuard:
    """Turns SIGINT/SIGTERM into a flag checked between loop calls.

    The running loop call finishes (a signal can't stop a compiled loop midway anyway),
    then the controller checkpoints and stops. The first signal restores SIGINT's default
    action, so a second Ctrl-C kills the process at once, even inside a long TF call.

    Args:
        forward_sigint_as_sigterm: under multi_worker, SIGTERM belongs to TensorFlow's
            PreemptionCheckpointHandler (a checkpoint is a collective: every worker must
            save at the same step, which only it coordinates). Ctrl-C is then re-sent to
            this process as SIGTERM so that it takes the same coordinated path.
    """

    def __init__(self, forward_sigint_as_sigterm: bool = False):
        self.signum: Optional[int] = None
        self.received: Optional[int] = None
        self._forward = forward_sigint_as_sigterm
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            signals = (signal.SIGINT,) if self._forward else (signal.SIGINT, signal.SIGTERM)
            for signum in signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signum
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if self._forward:
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            self.signum = signum

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def write_json(path: Path, value) -> None:
    """Writes JSON atomically: a crash mid-write never leaves a truncated file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def default_output_dir() -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = candidate = Path("runs") / stamp
    n = 1
    while candidate.exists():
        candidate = Path(f"{base}-{n}")
        n += 1
    return candidate


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


def prepare_output_dir(config: TrainConfig) -> Path:
    """Checks and creates the run directory before any training starts.

    Refuses a non-empty directory unless ``--resume`` (which needs a checkpoint there)
    or ``--overwrite`` (which removes the earlier run's files) is given, and checks the
    directory is writable, so a run can't fail after an hour on a permissions problem.
    """
    out = Path(config.output_dir) if config.output_dir else default_output_dir()
    flag = f"--output-dir {out}"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag}: exists and is not a directory")
    if config.resume:
        if not has_checkpoint(str(out)):
            raise ConfigError(f"--resume: no checkpoint in {out / CHECKPOINT_DIR}")
    elif out.exists() and any(out.iterdir()):
        if not config.overwrite:
            raise ConfigError(
                f"{flag}: not empty (an earlier run?); use --resume to continue it, "
                "--overwrite to replace it, or another directory"
            )
        for name in RUN_FILES:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise ConfigError(f"{flag}: not writable ({e.strerror or e})") from None
    return out


def auto_steps_per_loop(steps_per_epoch: int) -> int:
    """About a tenth of an epoch, at most 100 steps: cheap dispatch, live progress."""
    return max(1, min(100, steps_per_epoch // 10))


@dataclasses.dataclass
class Program:
    """The compiled training program of a config: model, optimizer, loops and inputs.

    Built by :func:`make_program`; the controller drives it, and the benchmarks time it
    exactly as the controller runs it.
    """

    config: TrainConfig
    strategy: tf.distribute.Strategy
    spec: model_lib.ModelSpec
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    train_loop: Callable
    eval_loop: Callable
    steps_per_epoch: int
    steps_per_loop: int

    def _options(self) -> tf.data.Options:
        return _dataset_options(self.config.strategy == "multi_worker")

    def train_iterator(self, data: data_lib.MnistData, start_step: int = 0):
        """The distributed iterator over the (endless) training batches from ``start_step``."""
        dataset = data_lib.train_dataset(
            data.train_images, data.train_labels, global_batch_size=self.config.batch_size,
            seed=self.config.seed, input_shape=self.spec.input_shape, skip_batches=start_step,
        )
        return iter(self.strategy.experimental_distribute_dataset(dataset.with_options(self._options())))

    def eval_input(self, images: np.ndarray, labels: np.ndarray):
        """A distributed, finite evaluation dataset (every example exactly once)."""
        dataset = data_lib.eval_dataset(images, labels, batch_size=self.config.batch_size,
                                        input_shape=self.spec.input_shape)
        return self.strategy.experimental_distribute_dataset(dataset.with_options(self._options()))


def make_program(config: TrainConfig, strategy: tf.distribute.Strategy, num_train: int,
                 on_trace: Optional[Callable[[], None]] = None) -> Program:
    """Builds model, optimizer and compiled loops under ``strategy`` (call inside the precision policy).

    Raises:
        ConfigError: the batch size does not divide over the replicas or exceeds the data.
    """
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ConfigError(f"--batch-size {config.batch_size} is not divisible by the {replicas} replicas")
    steps_per_epoch = num_train // config.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"--batch-size {config.batch_size} is larger than the {num_train} training examples")
    if config.profile_range and config.profile_range[1] > steps_per_epoch * config.epochs:
        raise ConfigError(f"--profile-steps {config.profile_steps}: the run has only "
                          f"{steps_per_epoch * config.epochs} steps ({config.epochs} epochs of {steps_per_epoch})")
    spec = model_lib.get(config.model)
    with strategy.scope():
        model = model_lib.build(spec, sync_batchnorm=config.sync_batchnorm)
        optimizer = optim.make_optimizer(config, steps_per_epoch)
        # Keras 3 creates slot variables lazily; a tf.function would then try to create
        # them while tracing (fails: "You must feed a value for placeholder"). Build now,
        # in scope, so slots are distributed like the weights and restorable.
        optimizer.build(model.trainable_variables)
    if config.jit_compile and replicas > 1 and _has_synchronized_batchnorm(model):
        raise ConfigError(
            f"--jit-compile: the model has synchronized BatchNormalization, whose statistics are all-reduced "
            f"across the {replicas} replicas inside the forward pass, and a cross-replica all-reduce cannot run "
            "inside an XLA cluster; drop --jit-compile or --sync-batchnorm"
        )
    train_step = step_lib.make_train_step(
        model, optimizer, config.batch_size, jit_compile=config.jit_compile, num_replicas=replicas
    )
    return Program(
        config=config, strategy=strategy, spec=spec, model=model, optimizer=optimizer,
        train_loop=loop_lib.make_train_loop(strategy, train_step, on_trace=on_trace,
                                            variables=model.trainable_variables,
                                            skip_counter=optim.skipped_updates(optimizer)),
        eval_loop=loop_lib.make_eval_loop(strategy, step_lib.make_eval_step(model)),
        steps_per_epoch=steps_per_epoch,
        steps_per_loop=config.steps_per_loop or auto_steps_per_loop(steps_per_epoch),
    )


def _has_synchronized_batchnorm(model) -> bool:
    return any(isinstance(layer, keras.layers.BatchNormalization) and getattr(layer, "synchronized", False)
               for layer in model._flatten_layers())


class Trainer:
    """Runs one training job described by a :class:`TrainConfig`.

    Args:
        config: The validated configuration.
        reporter: Console output; a plain :class:`Reporter` if ``None``.
        on_trace: Called whenever the training loop is (re)traced; tests count calls.
    """

    def __init__(self, config: TrainConfig, reporter: Optional[Reporter] = None,
                 on_trace: Optional[Callable[[], None]] = None):
        self.config = config
        self.reporter = reporter or Reporter(quiet=config.quiet)
        self.on_trace = on_trace
        self.model = None
        self.history: List[Dict] = []
        self._chief = True

    # ------------------------------------------------------------------ set-up

    def _load_data(self) -> data_lib.MnistData:
        config = self.config
        data = data_lib.load(
            config.dataset,
            config.data_dir,
            synthetic_train_size=config.synthetic_train_size,
            seed=config.seed,
        )
        data = data_lib.split_validation(data, config.val_split, config.seed)
        self.reporter.info(f"data: {data.describe()}")
        return data

    def run(self) -> Dict:
        """Trains, evaluates and writes the run directory; returns the summary dict.

        Raises:
            MnistCoreError: bad configuration, data or model (before training starts),
                or a non-finite loss (``NonFiniteLossError``).
        """
        started = time.perf_counter()
        config = self.config
        strategy_lib.configure_devices(config)
        strategy = strategy_lib.make_strategy(config)
        chief = self._chief = strategy_lib.is_chief(strategy)
        if chief:
            out = prepare_output_dir(config)
        else:
            # TensorFlow's multi-worker rule: every worker saves (saving runs collectives),
            # only the chief's files are kept; the others write to a scratch directory.
            out = Path(tempfile.mkdtemp(prefix="mnist_core_worker_"))
        keras.utils.set_random_seed(config.seed)
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        try:
            data = self._load_data()
            with precision.policy(config.precision):
                summary = self._train(strategy, data, out, started, chief)
        finally:
            if not chief:
                shutil.rmtree(out, ignore_errors=True)
        return summary

    def _train(self, strategy, data: data_lib.MnistData, out: Path, started: float, chief: bool = True) -> Dict:
        config = self.config
        replicas = strategy.num_replicas_in_sync
        multi_worker = config.strategy == "multi_worker"
        program = make_program(config, strategy, data.num_train, on_trace=self.on_trace)
        model, optimizer, spec = program.model, program.optimizer, program.spec
        steps_per_epoch, steps_per_loop = program.steps_per_epoch, program.steps_per_loop
        self.model = model
        state = CheckpointState(model, optimizer, str(out / CHECKPOINT_DIR), keep=config.keep_checkpoints)
        start_step = 0
        if config.resume:
            # Every worker restores the chief's checkpoint (the others' scratch dirs are new).
            start_step, restored = state.restore_latest(str(Path(config.output_dir) / CHECKPOINT_DIR))
            self.history = self._previous_history(out, start_step // steps_per_epoch)
            self.reporter.info(
                f"resumed from {restored} (step {start_step}, epoch {start_step // steps_per_epoch + 1})"
            )
        iterator = program.train_iterator(data, start_step)
        eval_sets = {"test": (data.test_images, data.test_labels)}
        if data.val_images is not None:
            eval_sets["val"] = (data.val_images, data.val_labels)
        eval_data = {name: program.eval_input(x, y) for name, (x, y) in eval_sets.items()}
        writers = {
            name: tf.summary.create_file_writer(str(out / "tensorboard" / name)) for name in ("train", *eval_sets)
        }

        if start_step == 0:
            self._write_graph(writers["train"], model, spec.input_shape)

        run = _Run(program=program, out=out, state=state, iterator=iterator, eval_data=eval_data,
                   writers=writers, start_step=start_step, started=started)
        if config.profile_range:
            run.profiler = _StepProfiler(*config.profile_range, logdir=str(out / "tensorboard"))
        with _SignalGuard(forward_sigint_as_sigterm=multi_worker) as signals:
            run.signals = signals
            if multi_worker:
                run.preemption = _PreemptionSaver(strategy, state)
            try:
                global_step = self._epochs(run)
            finally:
                if run.preemption is not None:
                    run.preemption.close()
                if run.profiler is not None:
                    run.profiler.stop()
        model_path = out / "model.keras"
        model.save(model_path)
        savedmodel_path = None
        if config.export_savedmodel and chief:
            savedmodel_path = str(inference.export_savedmodel(model, spec.input_shape, out / inference.SAVEDMODEL_DIR))
        final = self.history[-1]
        summary = {
            "test_accuracy": final["test_accuracy"],
            "test_loss": final["test_loss"],
            "test_examples": final["test_examples"],
            "images_per_second": self._timed_images / self._timed_seconds if self._timed_seconds else None,
            "seconds": time.perf_counter() - started,
            "epochs": len(self.history),
            "steps": global_step,
            "steps_per_epoch": steps_per_epoch,
            "steps_per_loop": steps_per_loop,
            "num_replicas": replicas,
            "dataset": data.describe(),
            "input_shape": list(spec.input_shape),
            "model_path": str(model_path),
            "savedmodel_path": savedmodel_path,
            "output_dir": str(out),
            "parameters": int(model.count_params()),
            "weights_sha256": weights_digest(model),
            "worker": "chief" if chief else "worker",
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version()},
            "config": config.to_dict(),
        }
        write_json(out / "summary.json", summary)
        for writer in writers.values():
            writer.close()
        if multi_worker:
            self.reporter.info(f"weights sha256 {summary['weights_sha256']} ({summary['worker']})")
        self.reporter.final(self.history, summary)
        return summary

    def _epochs(self, run: "_Run") -> int:
        """Runs the epochs from ``run.start_step`` on; returns the final global step."""
        config = self.config
        program, out, state, signals = run.program, run.out, run.state, run.signals
        steps_per_epoch, steps_per_loop, start_step = program.steps_per_epoch, program.steps_per_loop, run.start_step
        global_step = start_step
        first_loop = True
        self._timed_images = self._timed_seconds = 0.0
        for epoch in range(start_step // steps_per_epoch, config.epochs):
            epoch_started = time.perf_counter()
            done = global_step - epoch * steps_per_epoch
            self.reporter.start_epoch(epoch + 1, config.epochs, steps_per_epoch, completed=done)
            sums = {"loss": 0.0, "correct": 0.0, "count": 0.0, "steps": 0}
            epoch_images = epoch_seconds = 0.0
            while done < steps_per_epoch:
                n = min(steps_per_loop, steps_per_epoch - done)
                if config.checkpoint_every:
                    n = min(n, config.checkpoint_every - global_step % config.checkpoint_every)
                if run.profiler is not None:
                    n = run.profiler.clip(global_step, n)
                    run.profiler.before(global_step)
                t0 = time.perf_counter()
                result = {k: float(v) for k, v in program.train_loop(run.iterator, tf.constant(n, tf.int32)).items()}
                seconds = time.perf_counter() - t0
                if run.profiler is not None:
                    run.profiler.after(global_step + n)
                if not first_loop:  # the first call includes tracing/compilation
                    epoch_images += result["count"]
                    epoch_seconds += seconds
                first_loop = False
                global_step += n
                done += n
                if result["nonfinite"] or result["skipped"] or not result["weights_finite"]:
                    self._handle_nonfinite(result, global_step, n, state)
                sums["loss"] += result["loss"]
                sums["steps"] += n - int(result["nonfinite"])
                sums["correct"] += result["correct"]
                sums["count"] += result["count"]
                ips = epoch_images / epoch_seconds if epoch_seconds else None
                self.reporter.update(done, sums["loss"] / max(sums["steps"], 1), sums["correct"] / sums["count"], ips)
                if config.checkpoint_every and global_step % config.checkpoint_every == 0 and done < steps_per_epoch:
                    state.save(global_step)
                if run.preemption is not None and run.preemption.after_loop(global_step):
                    self._interrupted(signals.received or signal.SIGTERM, state, global_step, out)
                if signals.signum is not None and done < steps_per_epoch:
                    self._interrupted(signals.signum, state, global_step, out)
            self._timed_images += epoch_images
            self._timed_seconds += epoch_seconds
            entry = {
                "epoch": epoch + 1,
                "train_loss": sums["loss"] / max(sums["steps"], 1),
                "train_accuracy": sums["correct"] / sums["count"],
            }
            for name, dataset in run.eval_data.items():
                totals = {k: float(v) for k, v in program.eval_loop(dataset).items()}
                entry[f"{name}_loss"] = totals["loss"] / totals["count"]
                entry[f"{name}_accuracy"] = totals["correct"] / totals["count"]
                entry[f"{name}_examples"] = int(totals["count"])
            entry["learning_rate"] = optim.current_learning_rate(program.optimizer)
            entry["images_per_second"] = epoch_images / epoch_seconds if epoch_seconds else None
            entry["seconds"] = time.perf_counter() - epoch_started
            entry["step"] = global_step
            entry["elapsed_seconds"] = time.perf_counter() - run.started
            state.save(global_step)
            self.history.append(entry)
            write_json(out / "history.json", self.history)
            self._write_summaries(run.writers, entry, program.optimizer, global_step,
                                  program.model if config.histograms else None)
            self.reporter.end_epoch(entry)
            if config.target_accuracy and entry["test_accuracy"] >= config.target_accuracy:
                self.reporter.info(
                    f"test accuracy {entry['test_accuracy']:.4f} reached --target-accuracy "
                    f"{config.target_accuracy} after epoch {epoch + 1}; stopping"
                )
                break
            if signals.signum is not None and epoch + 1 < config.epochs:
                self._interrupted(signals.signum, state, global_step, out)
        return global_step

    def _interrupted(self, signum: int, state: CheckpointState, global_step: int, out: Path) -> None:
        self.reporter.end_epoch_progress()
        path = state.save_once(global_step)
        name = signal.Signals(signum).name
        if not self._chief:
            # A non-chief worker's checkpoint is scratch; the run resumes from the chief's.
            saved, out = "its worker checkpoint", self.config.output_dir
        else:
            saved = path
        raise InterruptedRun(
            f"{name} received; stopped after step {global_step} and saved {saved}; "
            f"resume with the same flags plus --resume --output-dir {out}",
            signum,
        )

    # ------------------------------------------------------------------ helpers

    def _handle_nonfinite(self, result: Dict, global_step: int, n: int, state: CheckpointState) -> None:
        """Warns about skipped updates, or stops the run before anything non-finite is saved.

        Skipping (``--on-nonfinite skip``, and mixed_float16's loss scaling by design)
        leaves weights and slots untouched, so training goes on. Anything else that is not
        finite — a NaN/Inf loss in ``stop`` mode, or weights that a non-finite update (or an
        overflowing finite one) has already spoiled — stops the run without saving.
        """
        config = self.config
        steps = f"steps {global_step - n + 1}..{global_step}"
        skipping = config.precision == "mixed_float16" or config.on_nonfinite == "skip"
        if skipping and result["weights_finite"]:
            if result["skipped"]:
                self.reporter.warn(f"{int(result['skipped'])} update(s) with non-finite gradients skipped in {steps}")
            if result["nonfinite"] > result["skipped"]:
                self.reporter.warn(f"{int(result['nonfinite'])} step(s) with a non-finite loss in {steps} "
                                   "(left out of the reported loss)")
            return
        if result["nonfinite"]:
            what = "loss (NaN/Inf)"
        else:
            what = "weights (NaN/Inf) after an update"
        last = state.latest or "none (no checkpoint written yet)"
        raise NonFiniteLossError(
            f"non-finite {what} within {steps}; stopped without saving; last good checkpoint: {last} "
            "(resume with --resume, perhaps with a lower --lr, or use --on-nonfinite skip)"
        )

    @staticmethod
    def _previous_history(out: Path, completed_epochs: int) -> List[Dict]:
        path = out / "history.json"
        if not path.exists():
            return []
        try:
            history = json.loads(path.read_text())
        except ValueError:
            return []
        return [e for e in history if e.get("epoch", 0) <= completed_epochs]

    def _write_graph(self, writer, model, input_shape) -> None:
        """The model's inference graph, once per run, for TensorBoard's Graphs tab.

        The forward pass alone (layers as name scopes), not the training loop, whose
        while-loop, distribution and optimizer ops would bury the model in plumbing.
        """
        try:
            forward = tf.function(lambda images: model(images, training=False))
            graph = forward.get_concrete_function(tf.TensorSpec([None, *input_shape], tf.float32)).graph
            with writer.as_default():
                tf.summary.graph(graph)
            writer.flush()
        except Exception as e:  # a drawing aid: never worth failing the run over
            self.reporter.warn(f"TensorBoard model graph not written ({type(e).__name__}: {e})")

    @staticmethod
    def _write_summaries(writers, entry: Dict, optimizer, step: int, histogram_model=None) -> None:
        with writers["train"].as_default(step=step):
            tf.summary.scalar("loss", entry["train_loss"])
            tf.summary.scalar("accuracy", entry["train_accuracy"])
            tf.summary.scalar("learning_rate", entry["learning_rate"])
            if entry["images_per_second"] is not None:
                tf.summary.scalar("images_per_second", entry["images_per_second"])
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                tf.summary.scalar("loss_scale", float(optimizer.dynamic_scale.numpy()))
            if histogram_model is not None:
                for weight in histogram_model.weights:
                    tf.summary.histogram(weight.path, weight.value)
        for name, writer in writers.items():
            if name == "train":
                continue
            with writer.as_default(step=step):
                tf.summary.scalar("loss", entry[f"{name}_loss"])
                tf.summary.scalar("accuracy", entry[f"{name}_accuracy"])
        for writer in writers.values():
            writer.flush()


@dataclasses.dataclass
class _Run:
    """What the epoch loop needs besides the program: its inputs and where output goes."""

    program: Program
    out: Path
    state: CheckpointState
    iterator: object
    eval_data: Dict
    writers: Dict
    start_step: int
    started: float = 0.0
    signals: Optional[_SignalGuard] = None
    preemption: Optional["_PreemptionSaver"] = None
    profiler: Optional["_StepProfiler"] = None


class _StepProfiler:
    """``--profile-steps A,B``: a TensorBoard profiler trace of exactly global steps A..B.

    The controller shortens loop calls so that one ends after step A-1 and one after
    step B; the trace then starts and stops between calls and holds only those steps.
    Viewed in TensorBoard's Profile tab (``pip install tensorboard-plugin-profile``).
    """

    def __init__(self, first: int, last: int, logdir: str):
        self.first, self.last, self.logdir = first, last, logdir
        self.active = self.finished = False

    def clip(self, global_step: int, n: int) -> int:
        """The steps of the next call, shortened to end at a trace boundary."""
        for boundary in (self.first - 1, self.last):
            if global_step < boundary < global_step + n:
                n = boundary - global_step
        return n

    def before(self, global_step: int) -> None:
        """Starts the trace if the next call runs step A (or later, after a resume)."""
        if not (self.active or self.finished) and self.first - 1 <= global_step < self.last:
            tf.profiler.experimental.start(self.logdir)
            self.active = True

    def after(self, global_step: int) -> None:
        """Stops the trace once step B has run."""
        if self.active and global_step >= self.last:
            self.stop()

    def stop(self) -> None:
        if self.active:
            tf.profiler.experimental.stop()
            self.active = False
            self.finished = True


class _PreemptionSaver:
    """multi_worker preemption: TensorFlow's ``PreemptionCheckpointHandler``.

    Under MultiWorkerMirroredStrategy a checkpoint is a collective, so one worker can't
    save alone when it is told to stop: the handler (watching SIGTERM) agrees a loop call
    with every worker through the coordination service, all of them save after it, and
    then all stop. Saving goes through :class:`CheckpointState` (chief: the run's
    ``checkpoints/``; others: their scratch directory), so ``--resume`` works as always.
    """

    def __init__(self, strategy, state: CheckpointState):
        self._state = state
        self.triggered = False
        self._scratch = tempfile.mkdtemp(prefix="mnist_core_preemption_")
        # The handler restores its manager's latest checkpoint when created and counts
        # loop calls from the count saved there; every worker must count alike, so it gets
        # an empty checkpoint of its own and resuming stays with CheckpointState.
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(), self._scratch, max_to_keep=1)
        termination = tf.distribute.experimental.TerminationConfig(exit_fn=self._exit, save_fn=self._save)
        self._handler = tf.distribute.experimental.PreemptionCheckpointHandler(
            strategy.cluster_resolver, manager, termination_config=termination
        )

    def _save(self, step: int) -> None:
        self._state.save_once(step)

    def _exit(self) -> None:
        # Return instead of sys.exit: the controller raises InterruptedRun (exit 143).
        self.triggered = True

    def after_loop(self, global_step: int) -> bool:
        """Call after every loop call on every worker; True once all have checkpointed."""
        logger = tf.get_logger()
        level = logger.level
        # Its save path calls its own deprecated total_run_calls, logging a warning that
        # would tell users to change code that is TensorFlow's, not theirs.
        logger.setLevel("ERROR")
        try:
            self._handler.save_checkpoint_if_preempted(global_step)
        finally:
            logger.setLevel(level)
        return self.triggered

    def close(self) -> None:
        shutil.rmtree(self._scratch, ignore_errors=True)


def train(config: TrainConfig, reporter: Optional[Reporter] = None) -> Dict:
    """Trains the model ``config`` describes; returns the summary (also in summary.json).

    Args:
        config: A validated :class:`TrainConfig`.
        reporter: Console output; default prints per the config's ``quiet``.
    """
    return Trainer(config, reporter).run()
