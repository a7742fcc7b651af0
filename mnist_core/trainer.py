"""One training run from a config: set up, train through the controller, write what it leaves.

:class:`Trainer` assembles a run — data, strategy, the compiled program
(:mod:`mnist_core.program`), the checks that can refuse it (all before the run directory
is touched), the run directory and its lock, the actions — hands it to the
:class:`~mnist_core.controller.Controller`, and at the end writes ``model.keras``, the
optional SavedModel and ``summary.json``. :func:`train` is the function the command line
and the Python API call. The run directory::

    OUTPUT_DIR/
      history.json      one entry per epoch (rewritten atomically after each epoch)
      summary.json      final metrics and the full resolved config
      config.json       what the run recorded when it started (--resume checks it)
      model.keras       the trained model
      saved_model/      with --export-savedmodel: SavedModel serving uint8 [N, 28, 28] images
      checkpoints/      tf.train.CheckpointManager checkpoints (for --resume)
      tensorboard/      train/ and test/ (and val/) event files: scalars, the model graph,
                        --histograms; plugins/profile/ with --profile-steps
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from mnist_core import actions as actions_lib
from mnist_core import cluster as cluster_lib
from mnist_core import data as data_lib
from mnist_core import inference, keras_step, precision, resume, rundir
from mnist_core import models as model_lib
from mnist_core import strategy as strategy_lib
from mnist_core.checkpoint import CHECKPOINT_DIR, CheckpointState
from mnist_core.config import TrainConfig
from mnist_core.controller import Controller, eval_fields
from mnist_core.errors import ConfigError, LostWorkerError, ModelError, in_python_words
from mnist_core.files import write_json
from mnist_core.program import Program, make_program, python_logs, weights_digest
from mnist_core.reporting import Reporter
from mnist_core.run import Run, accuracy_name, accuracy_of


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


class Trainer:
    """Runs one training job described by a :class:`TrainConfig`.

    Args:
        config: The validated configuration.
        reporter: Console output; a plain :class:`Reporter` if ``None``.
        on_trace: Called whenever the training loop is (re)traced; tests count calls.
        callbacks: ``keras.callbacks.Callback`` objects, called as ``model.fit`` calls them
            (added to those of ``config.callbacks``).
        model: A ``keras.Model`` object, subclass or factory to train instead of
            ``config.model`` (or a name as ``--model`` takes it).
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
        # What a resume should hear but not stop for, said once nothing can refuse the run.
        self._pending_warnings: List[str] = []
        self._unsaveable: Optional[str] = None  # why model.keras cannot be written (found before training)
        self._steps_per_epoch = 0

    # ------------------------------------------------------------------ set-up

    def _load_data(self) -> data_lib.MnistData:
        config = self.config
        if self.data_source is not None:
            data = data_lib.from_arrays(self.data_source, name=config.dataset)
        else:
            data = data_lib.load(config.dataset, config.data_dir, synthetic_train_size=config.synthetic_train_size,
                                 seed=config.seed, log=self.reporter.info)
        # Data without a labelled test split: --val-split holds its test split out (or,
        # once the model is known to need one, the run is refused in one line); with one,
        # --val-split holds out validation.
        if data.test_labels is None:
            # A registered model is a classifier, evaluated on a test split: refused now.
            if config.val_split > 0 or (data.labelled and config.model in model_lib.names()
                                        and self.model_source is None):
                data = data_lib.hold_out_test(data, config.val_split, config.seed)
        else:
            data = data_lib.split_validation(data, config.val_split, config.seed)
        data = data_lib.with_class_weight(data, config.class_weights)
        self.reporter.info(f"data: {data.describe()}")
        if data.train_images.dtype != np.uint8:
            # Float arrays are fed as given, as fit feeds them; the run records their scale
            # so that evaluation, prediction and the SavedModel feed new images alike.
            scale = data_lib.pixel_scale(data.train_images)
            if scale != config.pixels:
                if config.pixels == "raw":
                    raise ConfigError("--pixels raw: data= x_train holds floats in [0, 1], not 0-255 pixel values")
                self.config = config.replace(pixels=scale)
                self.reporter.info("data= x_train holds pixel values 0-255 as floats: fed as they are (--pixels raw)")
        return data

    def _callbacks(self) -> List:
        from mnist_core import callbacks as callbacks_lib

        loaded = callbacks_lib.load_callbacks(self.config.callbacks)
        return callbacks_lib.check_callbacks([*loaded, *self.callbacks], self.config.lr_schedule)

    @in_python_words  # called from Python, a refusal names the arguments (batch_size=64), not the flags
    def run(self) -> Dict:
        """Trains, evaluates and writes the run directory; returns the summary dict.

        Raises:
            MnistCoreError: bad configuration, data or model (before training starts),
                a non-finite loss (``NonFiniteLossError``), a signal (``InterruptedRun``),
                a failing user callback (``CallbackError``) or write (``WriteError``), a
                lost ``multi_worker`` peer (``LostWorkerError``).
        """
        from mnist_core.errors import from_python

        if from_python():  # the command line filters its whole process already
            from mnist_core.cli import quiet_python_api

            with quiet_python_api():
                return self._run_all()
        return self._run_all()

    def _run_all(self) -> Dict:
        started = time.perf_counter()
        config = self.config
        spec = None
        if isinstance(self.model_source, str):  # a registered name or package.module:Name
            config = self.config = config.replace(model=self.model_source)
        elif self.model_source is not None:
            spec = model_lib.spec_for(self.model_source)
            # summary.json names what was trained (module:Class), not the default --model.
            config = self.config = config.replace(model=spec.name)
        callbacks = self._callbacks()
        strategy_lib.configure_devices(config)
        strategy = strategy_lib.make_strategy(config, self.reporter.info)
        try:
            return self._run(strategy, spec, callbacks, started)
        except Exception as e:
            if config.strategy == "multi_worker" and cluster_lib.peer_failure(e) is not None:
                raise self._lost_worker(e, strategy) from None
            raise

    def _lost_worker(self, error: Exception, strategy) -> LostWorkerError:
        """The one line a lost peer ends the run with: who, why, and where it can resume from."""
        message = cluster_lib.report_lost(error, strategy.cluster_resolver)
        # The chief's output_dir is absolute by now; a worker's is as given (or none).
        if self.config.output_dir is None:
            return LostWorkerError(f"{message}; the chief's run directory holds the checkpoints")
        checkpoints = Path(os.path.abspath(self.config.output_dir)) / CHECKPOINT_DIR
        # The index names a checkpoint only once it is completely written (and is replaced
        # atomically), so the one it names is the last complete one.
        latest = tf.train.latest_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
        if latest:
            step = int(latest.rsplit("-", 1)[1])
            epochs = f", {step // self._steps_per_epoch} epoch(s) done" if self._steps_per_epoch else ""
            return LostWorkerError(f"{message}; the last complete checkpoint is {latest} (step {step}{epochs})")
        if not checkpoints.is_dir() and not strategy_lib.is_chief(strategy):
            return LostWorkerError(f"{message}; the chief keeps the checkpoints, in {checkpoints}")
        return LostWorkerError(f"{message}; no checkpoint was complete yet", restart_flag="--overwrite")

    def _run(self, strategy, spec, callbacks: List, started: float) -> Dict:
        config = self.config
        chief = strategy_lib.is_chief(strategy)
        if config.precision == "mixed_float16" and not tf.config.list_logical_devices("GPU"):
            # TensorFlow says so in a C++ log line per kernel; this is the one line that matters.
            self.reporter.info("--precision mixed_float16 on a CPU: float16 math is emulated here and much slower "
                               "than float32; it is meant for GPUs")
        # Only the chief's directory is checked and locked; every worker reads its
        # checkpoints on resume (the others write theirs to scratch).
        out = rundir.check_output_dir(config) if chief else Path(config.output_dir or ".")
        keras.utils.set_random_seed(config.seed)
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        data = self._load_data()
        # Paths are recorded absolute (config.json, summary.json, the checkpoint index), so
        # the run can be evaluated, plotted, resumed and reproduced from any directory;
        # messages before this point name them as typed.
        out = Path(os.path.abspath(out))
        self.config = self.config.replace(
            output_dir=str(out) if chief else self.config.output_dir,
            data_dir=os.path.abspath(os.path.expanduser(self.config.data_dir)) if self.config.data_dir else None)
        config = self.config  # float arrays may have set --pixels
        record = rundir.read_run_record(out) if config.resume else None
        # Warnings wait until nothing can refuse the run: a refused run says one line.
        if config.resume:
            resume.check_flags(config, out, record, self._pending_warnings.append)
        recorded_jit = (record or {}).get("jit_compile_resolved") if config.jit_compile == "auto" else None
        with precision.policy(config.precision):
            program = make_program(config, strategy, data.num_train, on_trace=self.on_trace, spec=spec,
                                   decide_jit=False, recorded_jit=recorded_jit, image_shape=data.image_shape,
                                   num_classes=data.num_classes, weighted=data.train_weights is not None,
                                   streamed=data.train_stream is not None)
            # A model compiled by the user may set steps per loop and XLA (compile's own).
            config = self.config = program.config
            self.model = program.model
            self._check_data_for(program, data)
            self._steps_per_epoch = program.steps_per_epoch
            if config.resume:
                resume.check_program(program, data, record, self.reporter)
            # Everything that can refuse the run does so before the run directory is touched.
            iterator = program.train_iterator(data, 0)
            eval_sets = self._eval_sets(program, data)
            iterator, eval_sets = self._trace(program, data, iterator, eval_sets)
            self._check_target_metric(program, eval_sets)
            with detached_optimizer(program.model):
                self._unsaveable = inference.unsaveable(program.model)
            if self._unsaveable and config.export_h5:
                raise ConfigError(f"--export-h5: {program.spec.label} cannot be written as a model file "
                                  f"({self._unsaveable}); give the class a get_config(), or drop --export-h5")
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
                                       iterator, eval_sets)
            finally:
                if scratch is not None:
                    shutil.rmtree(scratch, ignore_errors=True)

    @staticmethod
    def _eval_sets(program: Program, data: data_lib.MnistData) -> Dict:
        if not program.eval_loops:  # a model that is not a classifier, without a test_step
            return {}
        eval_sets = {"test": (data.test_images, data.test_labels, data.test_stream)} \
            if data.test_labels is not None else {}
        if data.val_images is not None:
            eval_sets["val"] = (data.val_images, data.val_labels, None)
        return {name: program.eval_input(*arrays) for name, arrays in eval_sets.items()}

    def _check_data_for(self, program: Program, data: data_lib.MnistData) -> None:
        """What the model needs of the data, refused in one line before anything is written:
        a classifier trains on labels and is evaluated on a test split; a model that trains
        itself without labels (fit(x)) is fed images alone."""
        if not data.labelled:
            if program.classifier or program.keras_eval:
                what = "is a classifier" if program.classifier else "has a test_step"
                raise ConfigError(f"data: {data.describe()} has no labels, and {program.spec.label} {what}, which "
                                  "needs them; give labels, or train a model whose train_step takes images alone")
            if data.train_weights is not None:
                raise ConfigError("data: sample weights without labels; a train_step that takes images alone "
                                  "cannot take weights")
            program.feed_labels = False
        if data.test_labels is None and program.eval_loops:
            data_lib.hold_out_test(data, self.config.val_split, self.config.seed)  # refuses: nothing to evaluate

    def _trace(self, program: Program, data: data_lib.MnistData, iterator, eval_sets: Dict):
        """Traces the loops; a model that is not a classifier and cannot take labelled batches
        is tried once more on images alone (as fit(x) feeds Keras' VAE), and said so."""
        try:
            program.trace(iterator, list(eval_sets.values()))
            return iterator, eval_sets
        except ModelError as labelled_error:
            if program.classifier or not program.feed_labels or data.train_weights is not None:
                raise
            first = labelled_error
        program.feed_labels = False
        iterator, eval_sets = program.train_iterator(data, 0), self._eval_sets(program, data)
        try:
            program.trace(iterator, list(eval_sets.values()))
        except ModelError:
            raise first from None
        self.reporter.info(f"{program.spec.label}: fed images without labels, as fit(x) feeds them: its train_step "
                           f"cannot take (images, labels) batches ({str(first).split(': ', 1)[-1][:160]})")
        return iterator, eval_sets

    def _check_target_metric(self, program: Program, eval_sets: Dict) -> None:
        if self.config.target_accuracy and program.keras_eval:
            eval_loop = next(iter(program.eval_loops.values()))  # the variants return the same logs
            structure = eval_loop.get_concrete_function(eval_sets["test"]).structured_outputs["logs"]
            structure = python_logs(tf.nest.map_structure(lambda _: 0.0, structure))  # names as fit flattens them
            if accuracy_name(structure) is None:
                raise ConfigError(f"--target-accuracy: the model's test_step reports no 'accuracy' "
                                  f"(it returns {', '.join(sorted(structure)) or 'nothing'})")

    def _train(self, program: Program, data: data_lib.MnistData, out: Path, started: float, chief: bool,
               callbacks: List, iterator, eval_sets: Dict) -> Dict:
        config = self.config
        state = CheckpointState(program.model, program.optimizer, str(out / CHECKPOINT_DIR),
                                keep=config.keep_checkpoints, other_optimizers=program.other_optimizers)
        start_step = 0
        if config.resume:
            # Every worker restores the chief's checkpoint (the others' scratch dirs are new).
            start_step, restored = state.restore_latest(str(Path(config.output_dir) / CHECKPOINT_DIR),
                                                        warn=self.reporter.warn)
            for message in self._pending_warnings:
                self.reporter.warn(message)
            self.history = resume.previous_history(out, start_step // program.steps_per_epoch, self.reporter.warn)
            self.reporter.info(f"resumed from {restored} (step {start_step}, "
                               f"epoch {start_step // program.steps_per_epoch + 1})")
            if start_step:
                iterator = program.train_iterator(data, start_step)  # the traced loop takes it as it is
        elif chief:
            write_json(out / rundir.CONFIG_FILE, resume.run_record(program, data))
        if program.trained_before:
            self.reporter.info(f"model=: trained by an earlier run in this process; continuing from its weights, "
                               f"with a new {config.optimizer} optimizer (this run's --optimizer and --lr)")
        if program.compiled_by_user:
            self.reporter.info(f"model comes compiled ({keras_step.describe_compile(program.model)}): trained with "
                               "its own optimizer, loss and metrics, as fit would")
        if program.update_note:
            self.reporter.info(f"--update fused: {program.update_note}; the optimizer keeps Keras' own update")
        if program.outputs not in ("logits", "none"):
            self.reporter.info(f"model ends in {program.outputs}: its outputs are probabilities, and the loss, "
                               "evaluation and predictions treat them so")
        if program.keras_protocol and not program.keras_eval and program.classifier:
            self.reporter.info("model compiled without a loss: Keras' test_step cannot evaluate it, so it is "
                               "evaluated with mnist_core's cross-entropy and accuracy")
        if program.protocol:
            self.reporter.info(f"model overrides {keras_step.describe(program.protocol)}: "
                               "training through the Keras model protocol")
        if not program.classifier:
            evaluated = "its test_step on the test split" if program.eval_loops else "no evaluation (no test_step)"
            self.reporter.info(f"model is not a classifier ({program.not_classifier}): its train_step's logs are "
                               f"reported, {evaluated}; accuracy, predictions and the serving export are skipped")
        if self._unsaveable:
            self.reporter.warn(f"model.keras cannot be written ({self._unsaveable}): the trained weights will be saved "
                               "to model.weights.h5 (rebuild the model with the same code, then model.load_weights); "
                               "give the class a get_config() to save the whole model")

        run = Run(config, program, state, out, self.reporter, start_step, self.history, chief, started)
        writers = {name: tf.summary.create_file_writer(str(out / "tensorboard" / name)) for name in ("train", *eval_sets)}
        Controller(run, self._actions(run, program, writers, callbacks), eval_sets).train(iterator)
        return self._finish(run, eval_sets, data)

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
        # Always, as fit always does: model.history holds the epochs' logs after a run.
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

    # ------------------------------------------------------------------ the end

    def _export_tflite(self, program: Program, data: data_lib.MnistData, out: Path) -> Dict:
        """``--export-tflite``: converted, run by the TFLite interpreter on test images beside
        the Keras model, written; what was measured goes to summary.json and one line."""
        from mnist_core import tflite

        test_images = data.test_images if data.test_images is not None else data.train_images
        test_labels = data.test_labels if data.test_labels is not None else data.train_labels
        result = tflite.export(program.model, program.input_shape, self.config.export_tflite, out / "model.tflite",
                               calibration=_model_inputs(program, data.train_images[:tflite.CALIBRATION_IMAGES]),
                               check_inputs=_model_inputs(program, test_images[:tflite.CHECK_IMAGES]),
                               check_labels=test_labels[:tflite.CHECK_IMAGES])
        self.reporter.info(f"model.tflite ({result['mode']}, {result['bytes'] / 1024:,.0f} KiB): accuracy "
                           f"{result['accuracy']:.4f} vs the Keras model's {result['keras_accuracy']:.4f} on "
                           f"{result['examples']} test images, same class for {result['agreement']:.2%}")
        return result

    def _finish(self, run: Run, eval_sets: Dict, data: data_lib.MnistData) -> Dict:
        config, program, out = self.config, run.program, run.out
        model = program.model

        final = dict(run.history[-1]) if run.history else {}
        restored_by_callback = run.last_eval_digest is not None and weights_digest(model) != run.last_eval_digest
        if restored_by_callback:
            # A callback (EarlyStopping(restore_best_weights=True)) replaced the weights
            # after the last evaluation: report what model.keras holds.
            self.reporter.info("the weights were changed by a callback after the last epoch; evaluating them")
        if restored_by_callback or "test_examples" not in final:
            for name, dataset in eval_sets.items():
                final.update(eval_fields(name, *program.evaluate(dataset)))
        model_path = None if self._unsaveable else out / "model.keras"
        # What using the model needs travels inside every file it is saved to, and with the
        # model object itself (predict_proba, evaluate_model on a model trained in memory).
        info = inference.ModelInfo(dataset=data.name, class_names=tuple(data.classes),
                                   input_shape=tuple(program.input_shape), outputs=program.outputs,
                                   pixels=config.pixels, source="model", image_shape=data.stored_shape)
        # Also into the user's own model.save() of this object after the run.
        inference.carry_info(model, info)
        weights_path = h5_path = None
        with detached_optimizer(model):
            if model_path is not None:
                inference.save_keras_model(model, model_path, info)
                h5_path = inference.save_keras_model(model, out / "model.h5", info) if config.export_h5 else None
            else:
                weights_path = inference.save_weights(model, out / inference.WEIGHTS_ONLY)
        savedmodel_path = None
        if config.export_savedmodel and run.chief:
            savedmodel_path = str(inference.export_savedmodel(model, program.input_shape,
                                                              out / inference.SAVEDMODEL_DIR, info, overwrite=True))
        tflite = None
        if config.export_tflite and run.chief:
            tflite = self._export_tflite(program, data, out)
        summary = {
            "test_accuracy": accuracy_of(final, "test"),
            "test_loss": final.get("test_loss"),
            "test_examples": final.get("test_examples"),
            "metrics": {k: v for k, v in final.items()
                        if k.startswith(("train_", "test_", "val_")) and k not in ("train_seconds",)},
            "images_per_second": run.timed_images / run.timed_seconds if run.timed_seconds else None,
            "seconds": time.perf_counter() - run.started,
            "epochs": len(run.history),
            "steps": run.step,
            "steps_per_epoch": program.steps_per_epoch,
            "steps_per_loop": program.steps_per_loop,
            "jit_compile": program.jit,
            "jit_decision": program.jit_decision.to_dict() if program.jit_decision else None,
            "num_replicas": program.strategy.num_replicas_in_sync,
            "dataset": data.describe(),
            # Data given from Python cannot be loaded again by evaluate from its name.
            "data_from_python": self.data_source is not None,
            "input_shape": list(program.input_shape),
            "image_shape": list(data.image_shape),
            "class_names": list(data.classes),
            "model": program.spec.name,
            "model_reproducible": program.spec.reproducible,
            "keras_protocol": list(program.protocol),
            # A model compiled by the user trained with its own optimizer and loss, not the
            # config's --optimizer/--lr: what it was compiled with.
            "compiled_by_user": keras_step.describe_compile(model) if program.compiled_by_user else None,
            "stopped_early": run.stop_reason,
            "weights_restored_by_callback": restored_by_callback,
            "model_path": str(model_path) if model_path else None,
            "weights_path": str(weights_path) if weights_path else None,
            "classifier": program.classifier,
            "savedmodel_path": savedmodel_path,
            "h5_path": str(h5_path) if h5_path else None,
            "tflite": tflite,
            "outputs": program.outputs,
            # A worker's own files are scratch: the run directory is the chief's.
            "output_dir": str(out) if run.chief else os.path.abspath(config.output_dir or "."),
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


def _model_inputs(program: Program, images: np.ndarray) -> np.ndarray:
    """Images as the model takes them in training (scaled, shaped): what a TFLite model is fed."""
    return data_lib.normalize_images(images, program.input_shape, program.config.pixels).numpy()


def train(config: TrainConfig, reporter: Optional[Reporter] = None, *, callbacks: Optional[Sequence] = None,
          model=None, data=None) -> Dict:
    """Trains the model ``config`` describes; returns the summary (also in summary.json).

    Args:
        config: A :class:`TrainConfig`, or a mapping of its fields.
        reporter: Console output; default prints per the config's ``quiet``.
        callbacks: ``keras.callbacks.Callback`` objects, called as ``model.fit`` calls them.
        model: A ``keras.Model`` object (trained in place; a second call continues from its
            weights), a ``keras.Model`` subclass or a factory function to train instead of
            ``config.model``, or a name as ``--model`` takes it.
        data: The data as the user holds it (:mod:`mnist_core.data.arrays`):
            ``(x_train, y_train, x_test, y_test)`` numpy arrays, ``load_data()``'s
            ``((x_train, y_train), (x_test, y_test))``, ``(x, y)`` or
            ``(x, y, sample_weight)`` without a test split (``val_split`` holds one out),
            a ``tf.data.Dataset`` of ``(image, label[, sample_weight])`` or a
            ``(train, test)`` pair of them, or a :class:`mnist_core.data.MnistData`.
            Images uint8 pixels or floats, ``[N, H, W]``, ``[N, H, W, C]`` or flat
            square; labels class indices or one-hot rows, any number of classes.
    """
    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_dict(dict(config))
    return Trainer(config, reporter, callbacks=callbacks, model=model, data=data).run()
