"""The compiled training program: model, optimizer and loops, built once from a config.

:func:`make_program` builds everything that runs in the graph for a config under a
strategy — the model (from the registry or the user's), the optimizer (built in scope), the
step (mnist_core's explicit one, :mod:`mnist_core.step`, or the model's own through Keras'
protocol, :mod:`mnist_core.keras_step`) and the compiled loops around it
(:mod:`mnist_core.loop`), with and without XLA until ``--jit-compile auto`` is decided
(:mod:`mnist_core.autojit`). The controller drives the :class:`Program`; the benchmarks
time exactly the same object.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import hashlib
from typing import Callable, Dict, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from mnist_core import augment as augment_lib
from mnist_core import autojit
from mnist_core import data as data_lib
from mnist_core import keras_step
from mnist_core import fused
from mnist_core import loop as loop_lib
from mnist_core import models as model_lib
from mnist_core.models import checks as model_checks
from mnist_core.models import outputs as model_outputs
from mnist_core import optim
from mnist_core import step as step_lib
from mnist_core import tracing
from mnist_core.config import TrainConfig
from mnist_core.errors import ConfigError, ModelError


def weights_digest(model) -> str:
    """SHA-256 (first 16 hex digits) of all weights: equal digests mean identical models."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]


def dataset_options(multi_worker: bool) -> tf.data.Options:
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
    """The first calls' steps under ``--steps-per-loop 0``: about a tenth of an epoch, at
    most 100 steps, until a timed call lets :func:`timed_steps_per_loop` decide."""
    return max(1, min(100, steps_per_epoch // 10))


# Automatic steps per loop make each call last about this long: the eager Python between
# calls (progress, actions, the host reading the results) then costs about 1% or less,
# while progress, Ctrl-C and preemption still answer within a second.
TARGET_CALL_SECONDS = 0.5


def timed_steps_per_loop(seconds_per_step: float, steps_per_epoch: int) -> int:
    """Steps per loop call for calls of :data:`TARGET_CALL_SECONDS`, from a timed call's
    seconds per step; at least 1, at most an epoch."""
    if seconds_per_step <= 0:
        return steps_per_epoch
    return max(1, min(steps_per_epoch, int(math.ceil(TARGET_CALL_SECONDS / seconds_per_step))))


def _to_python(value):
    array = np.asarray(value)
    return float(array) if array.ndim == 0 else array.tolist()


def python_logs(logs) -> Dict:
    """A step's logs as Python numbers, nested dicts flattened as ``fit`` flattens them
    (Keras' ``pythonify_logs``): the guide's ``{m.name: m.result() for m in self.metrics}``
    returns ``{"loss": ..., "compile_metrics": {"accuracy": ...}}``, reported as ``loss``
    and ``accuracy``."""
    flat: Dict = {}
    for key, value in sorted(logs.items()):
        if isinstance(value, dict):
            flat.update(python_logs(value))
        else:
            flat[key] = _to_python(value)
    return flat


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


def has_synchronized_batchnorm(model) -> bool:
    return any(isinstance(layer, keras.layers.BatchNormalization) and getattr(layer, "synchronized", False)
               for layer in model._flatten_layers())


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
    input_shape: Tuple[int, ...] = ()  # one example as the model takes it (models.input_shape_of)
    trained_before: bool = False  # a model object an earlier mnist_core run in this process trained
    compiled_by_user: bool = False  # arrived compiled: trained with its own optimizer, loss and metrics
    outputs: str = "logits"  # what the model returns: logits, softmax or sigmoid (models.outputs)
    labels: str = "sparse"  # how the pipeline gives targets: class indices, or one_hot rows
    keras_eval: bool = False  # evaluation runs the model's test_step (else mnist_core's eval step)
    update_note: Optional[str] = None  # why --update fused fell back to Keras' update
    # One replica and mnist_core's step: the loop gathers each batch from the training set
    # held on the device (data.ResidentBatches, loop.ResidentTrainLoop), no tf.data pipeline.
    resident: bool = False
    num_train: int = 0
    image_shape: Tuple[int, ...] = (28, 28, 1)  # one image of the data, (H, W, C)
    num_classes: int = 10
    weighted: bool = False  # the training examples carry weights (sample or class weights)
    streamed: bool = False  # the training set is streamed from a dataset too large for memory
    # Why the model is not a classifier (a GAN, a VAE: its own train_step, no class scores),
    # or None: accuracy, evaluation by cross-entropy, predictions and the serving export
    # apply to classifiers only.
    not_classifier: Optional[str] = None
    other_optimizers: Dict[str, keras.optimizers.Optimizer] = dataclasses.field(default_factory=dict)
    feed_labels: bool = True  # the batches carry labels ((x, y)); False: images only, as fit(x)
    _images_dtype: np.dtype = np.dtype(np.uint8)  # of the data the run trains on (its probes copy it)

    @property
    def classifier(self) -> bool:
        return self.not_classifier is None

    @property
    def optimizer_variables(self) -> list:
        """Every optimizer's variables (``model.optimizer`` and those the model keeps itself)."""
        return [v for opt in (self.optimizer, *self.other_optimizers.values()) for v in opt.variables]

    @property
    def keras_protocol(self) -> bool:
        """Whether Keras' ``train_step`` runs (an override, or a model compiled by the user)."""
        return bool(self.protocol) or self.compiled_by_user

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
                return self.train_iterator(self._probe_data())

            variables = [*self.model.variables, *self.optimizer_variables]
            self.jit_decision = autojit.decide(self.train_loops, make_iterator, variables,
                                               min(self.steps_per_loop, 10), self.jit_key,
                                               after=self.model.reset_metrics)
            self.jit = self.jit_decision.choice
        if self.jit:
            self._probe_xla()
        return self.jit_decision

    def _probe_xla(self) -> None:
        """Runs the XLA loops once on random batches before anything is written, state restored.

        XLA compiles when a loop first runs; an op without an XLA kernel (a Keras image
        augmentation layer's ``ImageProjectiveTransformV3`` on CPU, say) would otherwise end
        the run with a traceback after its directory was made. ``--jit-compile auto`` then
        keeps XLA off and says why; ``--jit-compile on`` is refused in one line. The compiled
        programs are cached by TensorFlow, so the run's first calls do not compile again.
        """
        variables = [*self.model.variables, *self.optimizer_variables]
        probes = [(self.eval_loops[True], lambda: self.eval_input(*self.random_images(2 * self.strategy.num_replicas_in_sync)))] \
            if self.eval_loops else []
        if self.jit_decision.reason != "timed":  # timing has already run the XLA training loop
            probes.insert(0, (self.train_loops[True], lambda: self.train_iterator(self._probe_data()),
                              tf.constant(1, tf.int32)))
        try:
            for loop, make_input, *args in probes:
                autojit.run_once(loop, make_input, variables, self.model.reset_metrics, *args)
        except autojit.XlaCannotCompile as e:
            if self.config.jit_compile == "on":
                raise ConfigError(f"--jit-compile on: XLA cannot compile the step of {self.spec.label} "
                                  f"({e}); use --jit-compile off, or auto, which keeps XLA off where it cannot "
                                  "compile") from None
            self.jit = False
            self.jit_decision = autojit.JitDecision(False, f"XLA cannot compile the step: {e}")
            if self.jit_key:
                autojit.remember(self.jit_key, self.jit_decision)

    def _probe_data(self) -> data_lib.MnistData:
        """Random data for timing and probing the loops without touching the run's data: a
        batch, or, when the loop holds the training set, a set of the run's size and type
        (XLA compiles for the shapes it is given: the run then reuses the probe's program)."""
        data = data_lib.synthetic(self.num_train if self.resident else self.batch_per_step, test_size=1, seed=0,
                                  image_shape=self.image_shape, num_classes=self.num_classes)
        if self.weighted:
            data = dataclasses.replace(data, train_weights=np.ones(data.num_train, np.float32))
        if self.resident and self._images_dtype != np.uint8:
            data = dataclasses.replace(data, train_images=(data.train_images / 255.0).astype(self._images_dtype))
        return data

    @property
    def _label_format(self) -> str:
        return self.labels if self.feed_labels else "none"

    def _options(self) -> tf.data.Options:
        return dataset_options(self.config.strategy == "multi_worker")

    def train_iterator(self, data: data_lib.MnistData, start_step: int = 0):
        """The training input from ``start_step``: the distributed iterator over the (endless)
        training batches, or, when the loop gathers its own batches, the training set on the
        device (:class:`mnist_core.data.ResidentBatches`), in the same order either way."""
        if data.train_stream is not None:
            dataset = data_lib.streamed_train_dataset(
                data.train_stream, data.image_shape, data.num_train,
                global_batch_size=self.batch_per_step or self.config.batch_size, seed=self.config.seed,
                input_shape=self.input_shape, skip_batches=start_step,
                augment=augment_lib.resolve(self.config.augment, data.name), pixels=self.config.pixels,
                label_format=self._label_format, num_classes=self.num_classes, weights=data.train_weights)
            return iter(self.strategy.experimental_distribute_dataset(dataset.with_options(self._options())))
        if self.resident:
            self._images_dtype = np.dtype(data.train_images.dtype)
            return data_lib.ResidentBatches(data.train_images, data.train_labels,
                                            global_batch_size=self.batch_per_step or self.config.batch_size,
                                            seed=self.config.seed, start_step=start_step, weights=data.train_weights)
        dataset = data_lib.train_dataset(
            data.train_images, data.train_labels, global_batch_size=self.batch_per_step or self.config.batch_size,
            seed=self.config.seed, input_shape=self.input_shape, skip_batches=start_step,
            augment=augment_lib.resolve(self.config.augment, data.name), pixels=self.config.pixels,
            label_format=self._label_format, num_classes=self.num_classes, weights=data.train_weights,
        )
        return iter(self.strategy.experimental_distribute_dataset(dataset.with_options(self._options())))

    def eval_input(self, images: np.ndarray, labels: np.ndarray, stream=None):
        """A distributed, finite evaluation dataset (every example exactly once).

        Batched by ``--eval-batch-size`` (evaluation keeps no activations for a backward
        pass, so its batches can be much larger than training's, and fewer calls cost less).
        With ``stream`` (a test set too large for memory), that dataset is read instead.
        """
        batch = max(self.config.eval_batch_size, self.strategy.num_replicas_in_sync)
        if stream is not None:
            dataset = data_lib.streamed_eval_dataset(stream, batch_size=batch, input_shape=self.input_shape,
                                                     pixels=self.config.pixels, label_format=self._label_format,
                                                     num_classes=self.num_classes)
        else:
            dataset = data_lib.eval_dataset(images, labels, batch_size=batch, input_shape=self.input_shape,
                                            pixels=self.config.pixels, label_format=self._label_format,
                                            num_classes=self.num_classes)
        return self.strategy.experimental_distribute_dataset(dataset.with_options(self._options()))

    def trace(self, iterator, eval_inputs: Sequence) -> None:
        """Traces the loops before training, so that user code that cannot become a graph
        stops the run with one line naming the method, before any step or file.

        The traces are the ones the first calls use (same argument types): nothing is
        traced twice.
        """
        where = self.spec.label
        train_methods = [m for m in self.protocol if m != "test_step"]
        for train_loop in self.train_loops.values():  # both variants while --jit-compile auto is open
            with tracing.traced_user_code(self.model, where, train_methods):
                train_loop.get_concrete_function(iterator, tf.TensorSpec([], tf.int32))
        eval_methods = [m for m in self.protocol if m != "train_step"]
        for eval_loop in self.eval_loops.values():
            for dataset in eval_inputs[:1]:  # every evaluation set has the same element type
                with tracing.traced_user_code(self.model, where, eval_methods):
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
        if self.keras_eval:
            self.model.reset_metrics()
            out = self.eval_loop(dataset)
            logs = python_logs(keras_step.metrics_or_logs(self.model, out["logs"]))
            return logs, int(float(out["count"]))
        totals = {key: float(value) for key, value in self.eval_loop(dataset).items()}
        count = totals["count"]
        return {"loss": totals["loss"] / count, "accuracy": totals["correct"] / totals["weight"]}, int(count)

    def random_images(self, n: int) -> Tuple[np.ndarray, np.ndarray]:
        """``n`` random uint8 images and labels of the run's shape and classes: what a probe
        of the compiled loops needs."""
        data = data_lib.synthetic(n, test_size=1, seed=0, image_shape=self.image_shape, num_classes=self.num_classes)
        return data.train_images, data.train_labels


def make_program(config: TrainConfig, strategy: tf.distribute.Strategy, num_train: int,
                 on_trace: Optional[Callable[[], None]] = None,
                 spec: Optional[model_lib.ModelSpec] = None, *, decide_jit: bool = True,
                 recorded_jit: Optional[bool] = None, image_shape: Sequence[int] = (28, 28, 1),
                 num_classes: int = 10, weighted: bool = False, streamed: bool = False) -> Program:
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
        image_shape: The data's images, ``(H, W, C)``: zoo models are built for them.
        num_classes: The data's classes: the model's output width.
        weighted: The training examples carry weights (the loops take them with each batch).
        streamed: The training set is streamed (too large for memory): the tf.data pipeline
            feeds the loop, never the training set held on the device.

    Raises:
        ConfigError: the batch size does not divide over the replicas or exceeds the
            data, or an option can't be honoured for this model.
        ModelError: the model can't be built, compiled or used.
    """
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ConfigError(f"--batch-size {config.batch_size} is not divisible by the {replicas} replicas")
    spec = spec or model_lib.get(config.model)
    where = spec.label
    if spec.instance is not None and config.strategy != "default" and spec.instance.variables:
        raise ConfigError(
            f"--strategy {config.strategy}: the keras.Model object passed as model= ({type(spec.instance).__name__}) "
            "already has its variables, created outside the strategy's scope, so they cannot be placed on its "
            "replicas; pass its class or a function that builds it (model=MyNet or model=make_model)")
    with strategy.scope():
        model, not_classifier = model_lib.build_any(spec, sync_batchnorm=config.sync_batchnorm,
                                                    image_shape=image_shape, num_classes=num_classes)
        if config.sync_batchnorm:
            model_checks.apply_sync_batchnorm(model, where)
    model_checks.check_precision(model, config.precision, where, built_here=spec.instance is None)
    input_shape = model_lib.input_shape_of(model, spec, image_shape)
    try:
        outputs = model_outputs.output_kind(model, input_shape) if not_classifier is None else "none"
    except ValueError as e:
        raise ModelError(f"{where}: {e}") from None
    if not_classifier is not None:
        _check_classifier_flags(config, where, not_classifier)
    protocol = keras_step.overridden_methods(model)
    user_compiled = keras_step.compiled_by_user(model)
    if user_compiled:
        # As fit: the model's own optimizer, loss and metrics, through Keras' train_step;
        # its compile's steps_per_execution stands where --steps-per-loop is unset.
        keras_step.check_user_compile(model, config, where)
        spe = keras_step.compiled_steps_per_execution(model)
        config = config.replace(steps_per_loop=config.steps_per_loop or (spe if spe > 1 else 0))
    keras_path = bool(protocol) or user_compiled
    # With --grad-accum-steps N the explicit step takes N micro-batches per step (one
    # update); a Keras-protocol model's optimizer accumulates itself, a batch per step.
    accumulate_in_step = config.grad_accum_steps > 1 and not keras_path
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
    from_logits = outputs == "logits"
    categorical = config.loss == "categorical_crossentropy"
    with strategy.scope():
        optimizer = model.optimizer if user_compiled else \
            optim.make_optimizer(config, steps_per_epoch, keras_accumulation=bool(protocol))
        # Keras 3 creates slot variables lazily; a tf.function would then try to create
        # them while tracing (fails: "You must feed a value for placeholder"). Build now,
        # in scope, so slots are distributed like the weights and restorable.
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        # Optimizers the model keeps itself (a GAN's d_optimizer and g_optimizer) are built
        # the same way, over all the trainable variables (fit builds model.optimizer so): the
        # train_step applies each to the variables it chooses, and the slots of the others
        # stay unused. Built lazily inside the compiled loop they could not be created.
        other_optimizers = keras_step.other_optimizers(model)
        for other in other_optimizers.values():
            if not other.built:
                other.build(model.trainable_variables)
        # A compiled model's own optimizer keeps its update, as fit runs it.
        update_note = fused.install(optimizer, model.trainable_variables) \
            if config.update == "fused" and not user_compiled else None
        # Compiled as the tutorial recipe compiles it, whichever step trains it: a Keras-
        # protocol model needs compile's loss and metrics, and callbacks find what they
        # look for after fit (model.optimizer for ReduceLROnPlateau, the compiled metrics
        # from which EarlyStopping infers whether "val_accuracy" should rise or fall).
        if user_compiled:
            if not_classifier is None or model._compile_metrics is not None or model._compile_loss is not None:
                keras_step.build_metrics(model, input_shape, where, num_classes)
            trained_before = False
        elif not_classifier is not None:
            trained_before = keras_step.compile_own_step_model(model, optimizer, where)
        else:
            trained_before = keras_step.compile_model(model, optimizer, input_shape, where,
                                                      label_smoothing=config.label_smoothing,
                                                      from_logits=from_logits, categorical=categorical,
                                                      num_classes=num_classes)
    # Targets as the compiled loss takes them on the Keras path; mnist_core's explicit step
    # takes class indices and makes one-hot targets itself where its loss needs them.
    labels = keras_step.label_format(model.loss) if keras_path else "sparse"
    # Keras' default test_step computes the compiled loss; a model compiled without one (the
    # guide's "going lower-level" model, whose train_step computes its own) trains under fit
    # but cannot be evaluated by it: mnist_core evaluates it with its own cross-entropy.
    # A compute_loss override (the Distiller) is Keras' test_step's loss too. A model that is
    # not a classifier is evaluated only by a test_step of its own.
    if not_classifier is not None:
        keras_eval = "test_step" in protocol
    else:
        keras_eval = keras_path and ("test_step" in protocol or "compute_loss" in protocol or model.loss is not None)
    evaluates = not_classifier is None or keras_eval
    steps_per_loop = config.steps_per_loop or auto_steps_per_loop(steps_per_epoch)
    # One replica of mnist_core's step on in-memory data without --augment (whose random
    # transformations stay in the tf.data pipeline, where XLA need not compile them): the
    # loop holds the training set and gathers its batches itself.
    resident = config.strategy == "default" and not keras_path and config.augment == "off" and not streamed
    plan = _jit_plan(config, replicas, model, protocol, steps_per_epoch, recorded_jit)
    jit_key = None
    if plan is None:
        # A decision cached by an earlier run: build (and trace) only the variant it chose.
        jit_key = autojit.cache_key(config, model, spec.factory, replicas, steps_per_loop,
                                    loop="resident" if resident else "pipeline")
        plan = autojit.cached(jit_key)
    if config.jit_compile == "on" and replicas > 1 and has_synchronized_batchnorm(model):
        raise ConfigError(
            f"--jit-compile: the model has synchronized BatchNormalization, whose statistics are all-reduced "
            f"across the {replicas} replicas inside the forward pass, and a cross-replica all-reduce cannot run "
            "inside an XLA cluster; drop --jit-compile or --sync-batchnorm"
        )
    health = dict(variables=model.trainable_variables,
                  update_counter=optimizer.iterations if optim.skips_updates(optimizer) else None)
    train_loops, eval_loops = {}, {}
    for jit in ([plan.choice] if plan is not None else [False, True]):
        if keras_path:
            train_step = keras_step.make_train_step(model, optimizer, jit_compile=jit, num_replicas=replicas,
                                                    where=where)
            train_loops[jit] = loop_lib.make_keras_train_loop(
                strategy, loop_lib.make_keras_step(strategy, train_step), on_trace=on_trace, **health)
        else:
            # A resident loop is compiled whole; the step inside it is not compiled again.
            train_step = step_lib.make_train_step(
                model, optimizer, config.batch_size, jit_compile=jit and not resident, num_replicas=replicas,
                label_smoothing=config.label_smoothing, accum_steps=config.grad_accum_steps if accumulate_in_step else 1,
                from_logits=from_logits, categorical=categorical)
            if resident:
                train_loops[jit] = loop_lib.ResidentTrainLoop(strategy, train_step, jit_compile=jit,
                                                              input_shape=input_shape, pixels=config.pixels,
                                                              on_trace=on_trace, **health)
            else:
                train_loops[jit] = loop_lib.make_train_loop(strategy, train_step, on_trace=on_trace, **health)
        if not evaluates:
            pass
        elif keras_eval:
            eval_loops[jit] = loop_lib.make_keras_eval_loop(
                strategy, loop_lib.make_keras_step(strategy, keras_step.make_test_step(model, jit_compile=jit)))
        else:
            eval_loops[jit] = loop_lib.make_eval_loop(strategy, step_lib.make_eval_step(
                model, jit_compile=jit, from_logits=from_logits, categorical=categorical))
    program = Program(
        config=config, strategy=strategy, spec=spec, model=model, optimizer=optimizer,
        train_loops=train_loops, eval_loops=eval_loops, steps_per_epoch=steps_per_epoch,
        batch_per_step=batch_per_step, input_shape=input_shape, trained_before=trained_before,
        steps_per_loop=steps_per_loop, protocol=protocol, compiled_by_user=user_compiled, update_note=update_note,
        outputs=outputs, resident=resident, num_train=num_train,
        labels=labels, keras_eval=keras_eval, image_shape=tuple(image_shape), num_classes=num_classes,
        weighted=weighted, streamed=streamed, not_classifier=not_classifier, other_optimizers=other_optimizers,
        jit=None if plan is None else plan.choice, jit_decision=plan, jit_key=jit_key,
    )
    if decide_jit:
        program.resolve_jit()
    return program


def _check_classifier_flags(config: TrainConfig, where: str, why: str) -> None:
    """Refuses, in one line, the flags that only a classifier can honour."""
    for flag, value in (("--target-accuracy", config.target_accuracy), ("--export-savedmodel", config.export_savedmodel),
                        ("--export-tflite", config.export_tflite),
                        ("--label-smoothing", config.label_smoothing), ("--class-weight", config.class_weight),
                        ("--loss", config.loss != "sparse_categorical_crossentropy" and config.loss)):
        if value:
            raise ConfigError(f"{flag}: {where} is not a classifier ({why}); {flag} applies to classifiers only: "
                              "drop it")


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
    elif replicas > 1 and has_synchronized_batchnorm(model):
        reason = "synchronized BatchNormalization cannot run under XLA on several replicas"
    elif config.epochs * steps_per_epoch < AUTO_JIT_MIN_STEPS:
        reason = (f"a run of {config.epochs * steps_per_epoch} steps: timing both would cost more than it saves "
                  f"(under {AUTO_JIT_MIN_STEPS})")
    return autojit.JitDecision(False, reason) if reason else None
